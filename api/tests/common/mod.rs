//! What the API's integration tests share.

use std::path::PathBuf;

/// A file under `../shared/` beside the repo (e.g. `peers/t9k/minigo-4gpu.yaml`);
/// panics, saying what is missing, without it.
pub fn shared(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: this test needs ../shared beside the repo",
            path.display()
        )
    })
}
