# shared helpers of shell-app
say() { printf 'shell-app: %s\n' "$*"; }
