#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is at /usr/bin/chromium for the browser tests
# (sf_pipeline_tests/ui); install it with apt-get if it is missing. Playwright drives this browser
# and never downloads one of its own.
set -euo pipefail
CHROMIUM=${SF_PIPELINE_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ] && "$CHROMIUM" --headless --version >/dev/null 2>&1; then exit 0; fi
fail() {
  echo "Chromium is not at $CHROMIUM and could not be installed ($1)." >&2
  echo "Install Debian's package by hand: apt-get install chromium (the browser tests in sf_pipeline_tests/ui need it)." >&2
  exit 1
}
command -v apt-get >/dev/null || fail "no apt-get on this machine"
if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo -n); else fail "not root and no sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "installing Debian's chromium for the browser tests ..." >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"${SUDO[@]}" apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; fail "apt-get update failed"; }
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-liberation >"$log" 2>&1 \
  || { cat "$log" >&2; fail "apt-get install chromium failed"; }
[ -x "$CHROMIUM" ] && "$CHROMIUM" --headless --version >/dev/null 2>&1 || fail "installed, but $CHROMIUM does not start"
echo "$("$CHROMIUM" --version 2>/dev/null) installed" >&2
