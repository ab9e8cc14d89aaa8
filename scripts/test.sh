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

step() { printf '\n==> %s\n' "$*" >&2; }

step "installing test dependencies"
scripts/install-deps.sh test

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# The real kube-apiserver + etcd harness. A cluster named by
# MPIJOB_CLUSTER_DIR is reused and left running; otherwise a private one is
# started for this run and stopped at the end, whatever happens.
if [[ -z ${MPIJOB_CLUSTER_DIR:-} ]]; then
    export MPIJOB_CLUSTER_DIR=/tmp/mpijob-cluster-test.$$
    trap 'tests/cluster/cluster.sh stop >&2 || true' EXIT
fi
step "starting the kube-apiserver harness in $MPIJOB_CLUSTER_DIR (built once, cached)"
tests/cluster/cluster.sh start >/dev/null

step "cargo test"
cargo test --workspace
