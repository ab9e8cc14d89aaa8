#!/usr/bin/env bash
# The README's first command: run the pi example on this machine.
#
# Installs what is missing (Open MPI, openssh-server, the MPI compiler),
# builds mpijob, compiles examples/pi and runs its manifest with 2 workers.
#
# Local mode (`mpijob-agent local`, one network namespace per worker) is not
# built yet. Until it is, this runs the same program with plain mpirun on
# this one host, after checking the manifest with the same validation the
# controller uses.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-env.sh

scripts/install-deps.sh run

echo "==> building mpijob" >&2
cargo build --release --workspace --quiet
bin=$CARGO_TARGET_DIR/release

echo "==> checking examples/pi/pi.yaml" >&2
"$bin/mpijob-controller" validate -f examples/pi/pi.yaml >&2

# The manifest runs /opt/mpi-examples/pi, as the example image does.
prog=/opt/mpi-examples/pi
echo "==> compiling examples/pi/pi.c to $prog" >&2
mkdir -p "$(dirname "$prog")"
mpicc.openmpi -O2 -o "$prog" examples/pi/pi.c

echo "==> running pi with 2 ranks (local mode is not built yet: plain mpirun on this host)" >&2
extra=()
((EUID == 0)) && extra+=(--allow-run-as-root)
exec mpirun.openmpi "${extra[@]}" --oversubscribe -n 2 "$prog"
