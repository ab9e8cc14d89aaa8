//! Finding the running harness: its kubeconfig, a client, and its kubectl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The harness's state directory, as `tests/cluster/cluster.sh` uses it.
pub fn state_dir() -> PathBuf {
    std::env::var_os("MPIJOB_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/mpijob-cluster"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A running harness: where its kubeconfig and kubectl are.
#[derive(Clone, Debug)]
pub struct Harness {
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
}

impl Harness {
    /// The API-server harness of `tests/cluster/cluster.sh` (no node).
    pub fn get() -> Harness {
        Self::at(
            &state_dir(),
            "bash tests/cluster/cluster.sh start",
            "the kube-apiserver test harness",
        )
    }

    /// The harness whose state is in `dir`; `start` is the command that
    /// starts it, for the panic message when it is not running.
    pub fn at(dir: &Path, start: &str, what: &str) -> Harness {
        let kubeconfig = dir.join("kubeconfig");
        let kubectl = dir.join("bin/kubectl");
        if !kubeconfig.is_file() || !kubectl.is_file() {
            panic!(
                "{what} is not running (no {} or {}).\n\
                 Start it with:\n    {start}\n\
                 or run every test with scripts/test.sh, which starts it.",
                kubeconfig.display(),
                kubectl.display()
            );
        }
        Harness {
            kubeconfig,
            kubectl,
        }
    }

    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.kubeconfig.display()));
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("the harness kubeconfig is usable");
        Client::try_from(config).expect("a client from the harness kubeconfig")
    }

    /// Run the harness's kubectl (the same version as the API server).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(repo_root())
            .output()
            .expect("kubectl runs")
    }

    /// Run kubectl and return its stdout, panicking with its stderr on
    /// failure.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
    }
}
