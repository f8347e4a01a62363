#!/bin/sh
. "${APP_HOME:-/app}/lib.sh"
say "hello, ${1:-world}"
