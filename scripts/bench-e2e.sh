#!/usr/bin/env bash
# End-to-end benchmark on the real single-node cluster (tests/e2e): the pi
# example through the operator (kubectl apply -> MPIJob Succeeded) next to
# the same two worker pods and a launcher written by hand with sshd and
# mpirun (kubectl apply -> launcher Succeeded), and the Kubeflow pi
# (examples/kubeflow/pi.yaml on the Kubeflow-style Open MPI 4 image,
# kubectl apply -> Succeeded). Prints the medians, their ratios and the
# launcher's reaction time. BENCH_ROUNDS sets the rounds (5).
# Needs root. Uses a running e2e cluster named by MPIJOB_E2E_DIR, or starts
# (and stops) a private one.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-env.sh

cargo build --release --quiet -p mpijob-tests --bin bench-e2e
if [[ -z ${MPIJOB_E2E_DIR:-} ]]; then
    export MPIJOB_E2E_DIR=/tmp/mpijob-e2e-bench.$$
    trap 'tests/e2e/e2e.sh stop >&2 || true' EXIT
fi
start=$(date +%s%N)
tests/e2e/e2e.sh start >/dev/null
echo "e2e cluster start: $(( ($(date +%s%N) - start) / 1000000 )) ms (0 when it was already up)"
"$CARGO_TARGET_DIR/release/bench-e2e"
