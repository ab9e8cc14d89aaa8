#!/bin/sh
# Local mode's benchmark: wall time of `mpijob-agent local` on the pi
# example with 2 and 8 workers against bare mpirun over sshds started by
# hand in the same namespaces, and set-up / tear-down cost per worker.
# With a number, hello on that many workers; with `imb`, the Intel MPI
# Benchmarks against Intel mpirun by hand (see agent/benches/local.rs).
# Needs root, iproute2, dnsmasq-base, openssh-server, openmpi-bin and
# libopenmpi-dev. Builds the release agent (cargo bench's profile).
set -eu
cd "$(dirname "$0")/.."
. scripts/cargo-env.sh
# `scripts/bench-local.sh 256`: one run of hello on 256 workers instead
# (set-up time, memory per worker, what the tear-down left).
cargo bench -p mpijob-agent --bench local -- "$@"
