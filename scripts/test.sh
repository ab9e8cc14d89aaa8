#!/usr/bin/env bash
# The README's second command: run every check and every test.
#
# Installs what the tests need, starts the real kube-apiserver + etcd test
# harness (built once, cached outside the repo), then runs rustfmt, clippy
# and the whole test suite against it. Stops the harness on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-env.sh

if ((EUID != 0)); then
    echo "test: run as root: the tests install packages, start sshd and create network namespaces" >&2
    exit 1
fi

# Each step says when it starts, in seconds since the script began, so a
# slow run shows where its time went (the budget: 45 min cold, 12 warm).
step() { printf '\n==> [%4d s] %s\n' "${SECONDS}" "$*" >&2; }

step "installing test dependencies"
scripts/install-deps.sh test

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# Two clusters, built once and cached outside the repo: the kube-apiserver +
# etcd harness (tests/cluster) for the controller and API tests, and the
# end-to-end cluster (tests/e2e: the same control plane plus a real node,
# containerd, cluster DNS and the project's images). A cluster named by
# MPIJOB_CLUSTER_DIR / MPIJOB_E2E_DIR is reused and left running; otherwise
# a private one is started for this run and stopped at the end, whatever
# happens.
stops=()
cleanup() {
    local s
    for s in "${stops[@]}"; do
        $s >&2 || true
    done
}
trap cleanup EXIT
if [[ -z ${MPIJOB_CLUSTER_DIR:-} ]]; then
    export MPIJOB_CLUSTER_DIR=/tmp/mpijob-cluster-test.$$
    stops+=("tests/cluster/cluster.sh stop")
fi
if [[ -z ${MPIJOB_E2E_DIR:-} ]]; then
    export MPIJOB_E2E_DIR=/tmp/mpijob-e2e-test.$$
    stops+=("tests/e2e/e2e.sh stop")
fi
step "starting the kube-apiserver harness in $MPIJOB_CLUSTER_DIR (built once, cached)"
tests/cluster/cluster.sh start >/dev/null

step "starting the end-to-end cluster in $MPIJOB_E2E_DIR (binaries and images built once, cached)"
tests/e2e/e2e.sh start >/dev/null

step "building the agent's Debian package (scripts/build-deb.sh; cargo-deb installed once)"
MPIJOB_DEB="$(scripts/build-deb.sh)"
export MPIJOB_DEB

step "cargo test"
cargo test --workspace
step "done: every check and test passed in $((SECONDS / 60)) min $((SECONDS % 60)) s"
