#!/usr/bin/env bash
# Install the Debian packages mpijob needs, only those that are missing.
#
#   scripts/install-deps.sh run    what the local pi job needs
#   scripts/install-deps.sh test   that, plus what the test suite needs
#
# The kube-apiserver test harness installs its own packages
# (tests/cluster/cluster.sh build).
set -euo pipefail

what=${1:-run}
pkgs=(openssh-server openssh-client openmpi-bin libopenmpi-dev gcc libc6-dev dnsmasq-base iproute2)
if [[ $what == test ]]; then
    # systemd: systemd-analyze verifies the worker unit; dpkg installs the
    # agent's package.
    pkgs+=(mpich libmpich-dev procps util-linux passwd hostname mount systemd dpkg)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
if ((EUID != 0)); then
    echo "install-deps: missing Debian packages: ${missing[*]}" >&2
    echo "install-deps: run as root (sudo $0 $what) or install them with apt-get" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
# Installing openssh-server must not start a system sshd: the project runs
# its own. Debian's invoke-rc.d honours policy-rc.d exit 101 ("not allowed").
guard=
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    guard=1
fi
trap '[[ -n $guard ]] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
