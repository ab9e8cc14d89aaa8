//! `<job>-ssh`: the job's key pair.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use mpijob_api::contract::{self, secret_keys, secret_name};
use mpijob_api::sshclient;
use mpijob_api::sshkey::JobKey;

use crate::core::meta::JobMeta;

/// An immutable `kubernetes.io/ssh-auth` Secret holding `key`. The key is
/// made once, when the Secret is first created, and never again while the
/// job lives. Mounted at `ssh_dir`, it is also a complete `~/.ssh`: a client
/// config for the job's peers and a `known_hosts` pinning the job key.
pub fn secret(meta: &JobMeta, key: &JobKey, ssh_dir: &str) -> Secret {
    let peers = contract::peer_patterns(&meta.name, &meta.namespace);
    let files =
        sshclient::ssh_dir_files(key, &peers, contract::DEFAULT_SSH_PORT, Path::new(ssh_dir));
    let mut data: BTreeMap<String, String> = files
        .into_iter()
        .map(|(name, text)| (name.to_string(), text))
        .collect();
    data.insert(
        secret_keys::PRIVATE_KEY.to_string(),
        key.private_pem().to_string(),
    );
    Secret {
        metadata: meta.child(secret_name(&meta.name), BTreeMap::new()),
        type_: Some("kubernetes.io/ssh-auth".to_string()),
        immutable: Some(true),
        string_data: Some(data),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::t9k::build::fixtures;

    #[test]
    fn the_secret_holds_one_key_pair_under_the_names_ssh_looks_for() {
        let meta = JobMeta::of(
            &fixtures::job(fixtures::PI),
            mpijob_api::contract::labels::JOB_NAME,
        )
        .unwrap();
        let key = mpijob_api::sshkey::generate("t");
        let s = secret(&meta, &key, "/home/u/.ssh");
        assert_eq!(s.metadata.name.as_deref(), Some("pi-ssh"));
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/ssh-auth"));
        assert_eq!(s.immutable, Some(true));
        let d = s.string_data.unwrap();
        assert_eq!(d["ssh-privatekey"], key.private_pem());
        assert_eq!(d["id_ed25519"], key.private_pem());
        assert_eq!(d["id_ed25519.pub"], format!("{}\n", key.public_openssh()));
        assert_eq!(d["authorized_keys"], d["id_ed25519.pub"]);
        let public = key.public_openssh();
        let key_only: Vec<&str> = public.split_whitespace().take(2).collect();
        assert_eq!(
            d["known_hosts"],
            format!(
                "[*.pi.team.svc]:2222,[*.pi.team.svc.*]:2222,[pi-worker-*]:2222,[pi-launcher]:2222 {}\n",
                key_only.join(" ")
            )
        );
        let config = &d["config"];
        assert!(config.contains("Host *.pi.team.svc *.pi.team.svc.* pi-worker-* pi-launcher\n"));
        assert!(config.contains("IdentityFile /home/u/.ssh/id_ed25519\n"));
        assert!(config.contains("UserKnownHostsFile /home/u/.ssh/known_hosts\n"));
        assert!(config.contains("StrictHostKeyChecking yes\n"));
    }
}
