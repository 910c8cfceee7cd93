#!/usr/bin/env bash
# Install the public Salesforce clients that the e2e tests run against devorg (unmodified, from the
# registries), each into its own cached environment, never into the product's .venv:
#   $SF_PIPELINE_CLIENTS (default ~/.cache/sf-pipeline-clients)/<client>/
# Usage: scripts/ensure-clients.sh [cumulusci] [amaxa] [jsforce] [sfdmu]   (no argument: all)
# Idempotent: a client whose pinned version is already installed is not touched. Prints nothing on
# success except while installing; exits non-zero with the installer's output when an install fails.
set -euo pipefail
ROOT=${SF_PIPELINE_CLIENTS:-$HOME/.cache/sf-pipeline-clients}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# Pins. jsforce 3.10.19+ and @salesforce/cli 2.150+ need Node 22; this machine has Node 20.
# sfdmu runs as a plugin of the sf CLI (`sf sfdmu run`), installed with `sf plugins install`.
CUMULUSCI_VERSION=4.10.1
AMAXA_VERSION=0.9.8
JSFORCE_VERSION=3.10.14
SFDMU_VERSION=3.7.19  # the only sfdmu version on the registry here
SF_CLI_VERSION=2.108.6

mkdir -p "$ROOT"

installed() {  # $1 = client dir, $2 = wanted stamp; waits for an install of it running elsewhere
  exec 9>"$1.lock"
  flock 9
  [ -f "$1/.installed" ] && [ "$(cat "$1/.installed")" = "$2" ]
}

run_logged() {  # run a command quietly; show its output only if it fails
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

python_client() {  # $1 = name, $2... = pip requirements
  local name=$1
  shift
  local dir=$ROOT/$name stamp="$*"
  installed "$dir" "$stamp" && return 0
  echo "installing $name ($*) into $dir ..." >&2
  rm -rf "$dir"
  run_logged "$PY" -m venv "$dir"
  run_logged "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  if [ -n "${PREBUILD:-}" ]; then
    # Old sdists (amaxa's PyYAML 5.4.1 has no wheel for Python 3.11) fail to build with Cython 3:
    # build them first without build isolation, against Cython < 3.
    run_logged "$dir/bin/python" -m pip install -q --disable-pip-version-check "Cython<3" wheel "setuptools<70"
    run_logged "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation $PREBUILD
  fi
  run_logged "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
  echo "$stamp" >"$dir/.installed"
}

node_client() {  # $1 = name, $2... = npm packages
  local name=$1
  shift
  local dir=$ROOT/$name stamp="$*"
  installed "$dir" "$stamp" && return 0
  command -v node >/dev/null && command -v npm >/dev/null \
    || { echo "Node.js and npm are not installed: apt-get install nodejs npm" >&2; return 1; }
  echo "installing $name ($*) into $dir ..." >&2
  rm -rf "$dir"
  mkdir -p "$dir"
  echo '{"name": "sf-pipeline-client-'"$name"'", "private": true}' >"$dir/package.json"
  run_logged npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$@"
  echo "$stamp" >"$dir/.installed"
}

sfdmu_client() {  # the sf CLI plus the sfdmu plugin, with the CLI's home inside the client folder
  local dir=$ROOT/sfdmu stamp="@salesforce/cli@$SF_CLI_VERSION sfdmu@$SFDMU_VERSION"
  installed "$dir" "$stamp" && return 0
  command -v node >/dev/null && command -v npm >/dev/null \
    || { echo "Node.js and npm are not installed: apt-get install nodejs npm" >&2; return 1; }
  echo "installing sfdmu ($stamp) into $dir ..." >&2
  rm -rf "$dir"
  mkdir -p "$dir/home/.config/sf"
  # undici 8 (pulled in by today's ranges) needs Node 22's zstd; 7.x runs on Node 20.
  echo '{"name": "sf-pipeline-client-sfdmu", "private": true, "overrides": {"undici": "7.16.0"}}' >"$dir/package.json"
  run_logged npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "@salesforce/cli@$SF_CLI_VERSION"
  # sfdmu is not signed by Salesforce: allow-list it instead of answering the install prompt
  echo '["sfdmu"]' >"$dir/home/.config/sf/unsignedPluginAllowList.json"
  (cd "$dir" && HOME="$dir/home" SF_DISABLE_TELEMETRY=true SF_AUTOUPDATE_DISABLE=true \
    run_logged node_modules/.bin/sf plugins install "sfdmu@$SFDMU_VERSION")
  echo "$stamp" >"$dir/.installed"
}

ensure() {
  case "$1" in
    cumulusci) python_client cumulusci "cumulusci==$CUMULUSCI_VERSION" ;;
    amaxa) PREBUILD="PyYAML==5.4.1" python_client amaxa "amaxa==$AMAXA_VERSION" ;;
    jsforce) node_client jsforce "jsforce@$JSFORCE_VERSION" ;;
    sfdmu) sfdmu_client ;;
    *) echo "unknown client: $1 (known: cumulusci amaxa jsforce sfdmu)" >&2; return 2 ;;
  esac
}

clients=("$@")
[ ${#clients[@]} -eq 0 ] && clients=(cumulusci amaxa jsforce sfdmu)
for c in "${clients[@]}"; do
  ensure "$c"
done
