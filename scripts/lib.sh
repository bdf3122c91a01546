# Shared by scripts/demo and scripts/test: set up what kipu needs on Debian.
# shellcheck shell=bash
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${KIPU_VENV:-$ROOT/.venv}"
export DEBIAN_FRONTEND=noninteractive

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "need root (or sudo) to run: $*" >&2; return 1
    fi
}

# apt_need PACKAGE...: install the Debian packages that are missing.
apt_need() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}"
    # No service may start from a package's postinst: the tests start their own.
    local policy=/usr/sbin/policy-rc.d ours=""
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
        ours=1
    fi
    local status=0
    as_root apt-get update -qq || status=$?
    [ "$status" -ne 0 ] || as_root apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || status=$?
    [ -z "$ours" ] || as_root rm -f "$policy"  # never leave services blocked behind us
    return "$status"
}

# venv EXTRA: create the virtualenv and install kipu (with an optional extra).
venv() {
    local extra="${1:-}"
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        apt_need python3-venv
    fi
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
    local spec="$ROOT"
    [ -n "$extra" ] && spec="$ROOT[$extra]"
    "$VENV/bin/python" -m pip install -q -e "$spec" 2>&1 | grep -v '^WARNING: Location' || true
    "$VENV/bin/python" -c 'import agent, collector' # fail here if the install did not work
}
