#!/usr/bin/env bash
# The README's first command: run the pi example on this machine.
#
# Installs what is missing (Open MPI, openssh-server, the MPI compiler, and
# for local mode's hosts dnsmasq-base and iproute2), builds mpijob, compiles
# examples/pi and runs its manifest in local mode with 2 workers: each
# worker is a network namespace with its own address and hostname as root,
# a loopback address otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-env.sh

scripts/install-deps.sh run

echo "==> building mpijob" >&2
cargo build --release --quiet -p mpijob-agent
bin=$CARGO_TARGET_DIR/release

# The manifest runs /opt/mpi-examples/pi, as the example image does.
prog=/opt/mpi-examples/pi
echo "==> compiling examples/pi/pi.c to $prog" >&2
mkdir -p "$(dirname "$prog")"
mpicc.openmpi -O2 -o "$prog" examples/pi/pi.c

echo "==> mpijob-agent local -f examples/pi/pi.yaml --workers 2" >&2
exec "$bin/mpijob-agent" local -f examples/pi/pi.yaml --workers 2
