#!/bin/sh
# The worker's benchmark: builds the static release agent, then prints the
# median start-to-SSH-banner time next to bare `sshd -D` (20 runs each),
# the agent's RSS while sshd runs, and the stripped binary's size.
# Needs openssh-server and openssh-client. Run as root to match a container.
set -eu
cd "$(dirname "$0")/.."
. scripts/cargo-env.sh
# --target keeps crt-static away from build scripts and proc macros.
# --no-default-features: the agent as images carry it, without local mode
# (scripts/build-static.sh agent).
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo bench -p mpijob-agent --bench worker --target x86_64-unknown-linux-gnu --no-default-features
