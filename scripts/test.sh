#!/usr/bin/env bash
# Install what netmig's tests need and run every test: lint, types, the whole pytest suite.
#
# System packages (yanglint, yangcli, netconfd, sshd) come from Debian/Ubuntu apt when we are root or have
# passwordless sudo; without them the tests that need those tools are skipped locally, but under CI=true a
# missing tool is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES="libyang2-tools yangcli netconfd openssh-server openssh-client"

install_system_packages() {
    local missing=0 tool
    for tool in yanglint yangcli netconfd /usr/sbin/sshd ssh-keygen; do
        command -v "$tool" >/dev/null 2>&1 || missing=1
    done
    [ "$missing" = 1 ] || return 0
    command -v apt-get >/dev/null 2>&1 || { echo "test.sh: no apt-get; system-tool tests will be skipped" >&2; return 0; }
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
            echo "test.sh: not root and no passwordless sudo; system-tool tests will be skipped" >&2; return 0
        fi
    fi
    echo "test.sh: installing $SYSTEM_PACKAGES" >&2
    # A package's postinst must never start a system sshd on port 22 here.
    local guard=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null; $sudo chmod +x /usr/sbin/policy-rc.d; guard=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q --no-install-recommends $SYSTEM_PACKAGES >/dev/null 2>&1 \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends $SYSTEM_PACKAGES >/dev/null; }
    if [ "$guard" = 1 ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
}

install_system_packages
python3 -m pip install -q -e '.[test]'
python3 -m ruff check .
python3 -m mypy
python3 -m pytest -n 2 -q -p no:cacheprovider "$@"
