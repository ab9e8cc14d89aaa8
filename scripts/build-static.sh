#!/usr/bin/env bash
# Builds a static (glibc, crt-static) release binary and prints its path.
#
#   scripts/build-static.sh agent        -> .../x86_64-unknown-linux-gnu/release/mpijob-agent
#   scripts/build-static.sh agent-full   -> .../x86_64-unknown-linux-gnu/release/mpijob-agent
#   scripts/build-static.sh controller   -> .../x86_64-unknown-linux-gnu/release/mpijob-controller
#
# `agent` is the agent images carry and pods run: without local mode (the
# `local` feature), which no pod runs and which is 40 % of the binary.
# `agent-full` keeps local mode, for the .deb (scripts/build-deb.sh). Both
# land on the same path, so copy the binary before building the other.
#
# The binary is what Dockerfile.agent and Dockerfile.controller put on
# `scratch`. The path goes to stdout, cargo's output to stderr. The script
# fails if the result is not statically linked.
#
# --target keeps crt-static away from build scripts and proc macros (they
# run on the host and must stay dynamic), as in scripts/bench-worker.sh.
# Cargo's target dir is the shared one (scripts/cargo-env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cargo-env.sh
. scripts/cargo-env.sh

readonly TARGET=x86_64-unknown-linux-gnu

usage() {
    sed -n '2,7s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

[[ $# -eq 1 ]] || usage
features=()
case "$1" in
    agent) pkg=mpijob-agent features=(--no-default-features) ;;
    agent-full) pkg=mpijob-agent ;;
    controller) pkg=mpijob-controller ;;
    *) usage ;;
esac

RUSTFLAGS="${RUSTFLAGS:+${RUSTFLAGS} }-C target-feature=+crt-static" \
    cargo build --release --locked -p "${pkg}" --bin "${pkg}" --target "${TARGET}" "${features[@]}" >&2

bin="${CARGO_TARGET_DIR}/${TARGET}/release/${pkg}"
[[ -x "${bin}" ]] || { echo "build-static: cargo did not produce ${bin}" >&2; exit 1; }

# `file` says "static-pie linked" or "statically linked"; a dynamic binary
# has an interpreter (ld-linux) and NEEDED entries.
desc="$(file -b "${bin}")"
case "${desc}" in
    *"static-pie linked"* | *"statically linked"*) ;;
    *)
        echo "build-static: ${bin} is not static: ${desc}" >&2
        exit 1
        ;;
esac
if ldd "${bin}" 2>&1 | grep -q '=>'; then
    echo "build-static: ${bin} links shared libraries:" >&2
    ldd "${bin}" >&2 || true
    exit 1
fi
printf '%s\n' "${bin}"
