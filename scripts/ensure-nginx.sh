#!/usr/bin/env bash
# Make sure Debian's nginx is at /usr/sbin/nginx for the deployment tests (sf_pipeline_tests/deploy): they
# start the reverse proxy of deploy/docker-compose.yaml, with its own config file (deploy/nginx/), in front of
# real Dagster webservers. Installs it with apt-get if it is missing; the tests run it as a plain process
# (no service is enabled or started).
set -euo pipefail
NGINX=${SF_PIPELINE_NGINX:-/usr/sbin/nginx}
if [ -x "$NGINX" ] && "$NGINX" -v >/dev/null 2>&1; then exit 0; fi
fail() {
  echo "nginx is not at $NGINX and could not be installed ($1)." >&2
  echo "Install Debian's package by hand: apt-get install nginx-light (the proxy tests in sf_pipeline_tests/deploy need it)." >&2
  exit 1
}
command -v apt-get >/dev/null || fail "no apt-get on this machine"
if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo -n); else fail "not root and no sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "installing Debian's nginx for the reverse-proxy tests ..." >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"${SUDO[@]}" apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; fail "apt-get update failed"; }
# The package must not start a system nginx on port 80 (the tests start their own): policy-rc.d answers 101
# ("action forbidden") to the package's start request; one already there (Docker images have it) is kept.
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  "${SUDO[@]}" sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  made_policy=1
fi
status=0
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends nginx-light >"$log" 2>&1 || status=$?
[ "$made_policy" -eq 0 ] || "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d
[ "$status" -eq 0 ] || { cat "$log" >&2; fail "apt-get install nginx-light failed"; }
[ -x "$NGINX" ] && "$NGINX" -v >/dev/null 2>&1 || fail "installed, but $NGINX does not run"
echo "$("$NGINX" -v 2>&1) installed" >&2
