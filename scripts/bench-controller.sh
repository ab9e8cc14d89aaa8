#!/usr/bin/env bash
# Controller scale benchmark: 100 MPIJobs x 8 workers created at once
# against the kube-apiserver harness, next to a plain client creating the
# same 900 pods. Prints both times, their ratio, API writes per job and the
# controller's peak memory. BENCH_JOBS and BENCH_WORKERS change the size.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-env.sh

cargo build --release --quiet -p mpijob-controller -p mpijob-tests --bin mpijob-controller --bin bench-controller
if [[ -z ${MPIJOB_CLUSTER_DIR:-} ]]; then
    export MPIJOB_CLUSTER_DIR=/tmp/mpijob-cluster-bench.$$
    trap 'tests/cluster/cluster.sh stop >&2 || true' EXIT
fi
tests/cluster/cluster.sh start >/dev/null
MPIJOB_CONTROLLER_BIN=$CARGO_TARGET_DIR/release/mpijob-controller "$CARGO_TARGET_DIR/release/bench-controller"
