//! What the API's integration tests share.

use std::path::PathBuf;

/// One of the project's own manifests under `tests/fixtures/manifests/`
/// (e.g. `t9k/seed-slots-gpus.yaml`).
pub fn fixture(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/manifests")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A real user's manifest under `../shared/peers/` beside the repo (e.g.
/// `t9k/minigo-4gpu.yaml`), for the `peer_` checks; panics, saying what is
/// missing, without it.
pub fn peer(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/peers")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: this test needs ../shared beside the repo",
            path.display()
        )
    })
}
