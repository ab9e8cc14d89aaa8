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

# Two clusters, built once and cached outside the repo: the kube-apiserver +
# etcd harness (tests/cluster) for the controller and API tests, and the
# end-to-end cluster (tests/e2e: the same control plane plus a real node,
# containerd, cluster DNS and the project's images). A cluster named by
# MPIJOB_CLUSTER_DIR / MPIJOB_E2E_DIR is reused and left running; otherwise
# a private one is started for this run and stopped at the end, whatever
# happens.
stops=()
images_pid=
images_log="${TMPDIR:-/tmp}/mpijob-images.$$.log"
cleanup() {
    local s
    if [[ -n $images_pid ]]; then
        kill "$images_pid" 2>/dev/null || true
        wait "$images_pid" 2>/dev/null || true
    fi
    rm -f "$images_log"
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

# The end-to-end cluster's images (Debian bases, MPI images, the agent and
# the controller) do not need Kubernetes: on a fresh machine they build in
# the background while the harness's Kubernetes builds, the one mostly
# downloading and the other compiling. Their packages go in first, since
# apt takes one caller at a time. Both are cached: a warm run spends
# seconds here.
step "building the end-to-end cluster's images in the background (cached; log $images_log)"
tests/e2e/images.sh packages
tests/e2e/images.sh build >"$images_log" 2>&1 &
images_pid=$!

step "starting the kube-apiserver harness in $MPIJOB_CLUSTER_DIR (built once, cached)"
tests/cluster/cluster.sh start >/dev/null

# Clippy's checks in a target dir of their own: the tests' build never
# reuses them, and so clippy does not wait for the images' release builds,
# which hold the cargo lock of the shared one.
step "cargo clippy --all-targets -- -D warnings"
CARGO_TARGET_DIR="$CARGO_TARGET_DIR/clippy" cargo clippy --workspace --all-targets --quiet -- -D warnings

step "waiting for the images' build"
if ! wait "$images_pid"; then
    images_pid=
    echo "test: building the end-to-end images failed; the end of its log:" >&2
    tail -n 40 "$images_log" >&2
    exit 1
fi
images_pid=
grep '^\[images.sh\] all images ready' "$images_log" >&2 || true

step "starting the end-to-end cluster in $MPIJOB_E2E_DIR (binaries and images built once, cached)"
tests/e2e/e2e.sh start >/dev/null

step "building the agent's Debian package (scripts/build-deb.sh; cargo-deb installed once)"
MPIJOB_DEB="$(scripts/build-deb.sh)"
export MPIJOB_DEB

# The peer checks (the #[ignore]d tests named peer_*) run the project's
# checks over real users' manifests in ../shared/peers beside the repo;
# every other test uses the project's own fixtures. Without that folder the
# peer checks cannot run: they are named as not run before the tests
# start, and counted in the closing line.
# --no-fail-fast: a failing test binary does not keep the ones after it
# from running; cargo lists every failure at the end.
peer_checks() {
    grep -rh -A2 --include='*.rs' '#\[ignore = "reads ../shared/peers' api controller tests agent |
        grep -o 'fn peer_[a-z0-9_]*' | sed 's/^fn //' | sort || true
}
test_args=()
not_run=""
if [[ -d ../shared/peers ]]; then
    test_args=(-- --include-ignored)
    step "cargo test --no-fail-fast, with the peer checks against ../shared/peers"
else
    mapfile -t peers < <(peer_checks)
    not_run=" (${#peers[@]} peer checks not run: no ../shared/peers beside the repo)"
    step "cargo test --no-fail-fast, without the peer checks: they read ../shared/peers, which is not beside the repo; these ${#peers[@]} do not run:"
    printf '        %s\n' "${peers[@]}" >&2
fi
cargo test --workspace --no-fail-fast "${test_args[@]}"
step "done: every check and test passed${not_run} in $((SECONDS / 60)) min $((SECONDS % 60)) s"
