# Sourced by the scripts: one cargo target dir outside the repo, shared by
# every clone on this machine, so a fresh clone does not rebuild the world.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mpijob/target}
