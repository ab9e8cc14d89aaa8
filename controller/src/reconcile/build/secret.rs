//! `<job>-ssh`: the job's key pair.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use mpijob_api::contract::{secret_keys, secret_name};
use mpijob_api::sshkey::JobKey;

use super::JobMeta;

/// An immutable `kubernetes.io/ssh-auth` Secret holding `key`. The key is
/// made once, when the Secret is first created, and never again while the
/// job lives.
pub fn secret(meta: &JobMeta, key: &JobKey) -> Secret {
    let public = format!("{}\n", key.public_openssh.trim_end());
    let data = BTreeMap::from([
        (
            secret_keys::PRIVATE_KEY.to_string(),
            key.private_openssh.clone(),
        ),
        (
            secret_keys::ID_ED25519.to_string(),
            key.private_openssh.clone(),
        ),
        (secret_keys::ID_ED25519_PUB.to_string(), public.clone()),
        (secret_keys::AUTHORIZED_KEYS.to_string(), public),
    ]);
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
    use crate::reconcile::build::fixtures;

    #[test]
    fn the_secret_holds_one_key_pair_under_the_names_ssh_looks_for() {
        let meta = JobMeta::of(&fixtures::job(fixtures::PI)).unwrap();
        let key = mpijob_api::sshkey::generate("t");
        let s = secret(&meta, &key);
        assert_eq!(s.metadata.name.as_deref(), Some("pi-ssh"));
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/ssh-auth"));
        assert_eq!(s.immutable, Some(true));
        let d = s.string_data.unwrap();
        assert_eq!(d["ssh-privatekey"], key.private_openssh);
        assert_eq!(d["id_ed25519"], key.private_openssh);
        assert_eq!(d["id_ed25519.pub"], format!("{}\n", key.public_openssh));
        assert_eq!(d["authorized_keys"], d["id_ed25519.pub"]);
    }
}
