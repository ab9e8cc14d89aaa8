#!/bin/sh
# Local mode's benchmark: wall time of `mpijob-agent local` on the pi
# example with 2 and 8 workers against bare mpirun over sshds started by
# hand in the same namespaces, and set-up / tear-down cost per worker.
# Needs root, iproute2, dnsmasq-base, openssh-server, openmpi-bin and
# libopenmpi-dev. Builds the release agent (cargo bench's profile).
set -eu
cd "$(dirname "$0")/.."
. scripts/cargo-env.sh
cargo bench -p mpijob-agent --bench local
