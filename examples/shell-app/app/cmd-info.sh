#!/bin/sh
. "${APP_HOME:-/app}/lib.sh"
say "version ${APP_VERSION:-dev} on $(uname -m)"
