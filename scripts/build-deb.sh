#!/usr/bin/env bash
# Builds the agent's Debian package and prints its path:
#
#   scripts/build-deb.sh   -> .../debian/mpijob-agent_<version>-1_amd64.deb
#
# It holds the static agent with local mode (scripts/build-static.sh agent-full)
# as /usr/bin/mpijob-agent,
# the disabled worker unit mpijob-agent-worker.service, and its settings in
# /etc/default/mpijob-agent-worker (agent/debian/). cargo-deb, at the pinned
# version, is installed on first use. The path goes to stdout, the rest to
# stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cargo-env.sh
. scripts/cargo-env.sh

readonly CARGO_DEB_VERSION=3.8.0
readonly TARGET=x86_64-unknown-linux-gnu

if [[ "$(cargo deb --version 2>/dev/null || true)" != *" ${CARGO_DEB_VERSION}"* ]]; then
    echo "build-deb: installing cargo-deb ${CARGO_DEB_VERSION}" >&2
    # Its own target dir: the project's stays the project's.
    CARGO_TARGET_DIR="${MPIJOB_CACHE:-/var/cache/mpijob}/cargo-deb-build" \
        cargo install --quiet --locked --version "${CARGO_DEB_VERSION}" cargo-deb >&2
fi

scripts/build-static.sh agent-full >/dev/null
out="${CARGO_TARGET_DIR}/debian"
mkdir -p "${out}"
# --no-build: the binary is build-static's (crt-static); cargo-deb maps the
# asset target/release/mpijob-agent to <target dir>/<triple>/release.
cargo deb --quiet --no-build --no-dbgsym --strip -p mpijob-agent --target "${TARGET}" --output "${out}" >&2
ls -t "${out}"/mpijob-agent_*_amd64.deb | head -n 1
