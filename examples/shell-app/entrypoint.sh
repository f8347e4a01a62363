#!/bin/sh
# shell-app: dispatch to the command scripts under $APP_HOME.
set -eu
cmd="${1:-greet}"
[ $# -gt 0 ] && shift
script="${APP_HOME:-/app}/cmd-${cmd}.sh"
if [ ! -f "$script" ]; then
    echo "shell-app: unknown command '$cmd' (try: greet, info)" >&2
    exit 2
fi
exec sh "$script" "$@"
