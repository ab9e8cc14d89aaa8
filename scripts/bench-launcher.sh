#!/bin/sh
# The launcher's benchmark: reaction time (last sshd accepting -> mpirun
# start, median of 20), the hello job's wall time on 4 namespaced workers
# against bare mpirun, and the wait for 64 workers that are all up.
# Needs root, iproute2, dnsmasq-base, openssh-server, openmpi-bin and
# libopenmpi-dev. Builds the static release agent, like bench-worker.sh.
set -eu
cd "$(dirname "$0")/.."
. scripts/cargo-env.sh
# --target keeps crt-static away from build scripts and proc macros.
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo bench -p mpijob-agent --bench launcher --target x86_64-unknown-linux-gnu
