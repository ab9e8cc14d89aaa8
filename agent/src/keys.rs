//! The job's key pair: which file to use, and its public half.
//!
//! Parsing is `ssh-key`'s, through [`mpijob_api::sshkey`], whose
//! [`JobKey`] the controller also makes. An OpenSSH key's public half is
//! read from its header, which is never encrypted; a PEM key needs its
//! `.pub` file next to it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use mpijob_api::contract::secret_keys;
use mpijob_api::sshkey::{self, JobKey};

/// Private key file names, in order of preference. `ssh-privatekey` is the
/// name a `kubernetes.io/ssh-auth` Secret requires.
pub const KEY_NAMES: [&str; 4] = [
    secret_keys::ID_ED25519,
    "id_ecdsa",
    "id_rsa",
    secret_keys::PRIVATE_KEY,
];

/// The job key as mounted in the ssh directory.
#[derive(Debug)]
pub struct MountedKey {
    /// The private key file it came from.
    pub path: PathBuf,
    pub key: JobKey,
    /// `authorized_keys` from the ssh directory, or one derived from the
    /// key.
    pub authorized_keys: String,
}

/// The first of [`KEY_NAMES`] for which `exists` says yes.
pub fn select(exists: impl Fn(&str) -> bool) -> Option<&'static str> {
    KEY_NAMES.into_iter().find(|name| exists(name))
}

/// Read the job key from `dir` (the `--ssh-dir`).
pub fn load(dir: &Path) -> Result<MountedKey> {
    let Some(name) = select(|name| dir.join(name).exists()) else {
        bail!(
            "--ssh-dir {}: no private key found (looked for {}); mount the job's key Secret there or pass --ssh-dir",
            dir.display(),
            KEY_NAMES.join(", ")
        );
    };
    let path = dir.join(name);
    let text = String::from_utf8_lossy(&read(&path, dir, name)?).into_owned();
    let derived = match sshkey::public_of_private(&text) {
        Ok(public) => public,
        Err(e) => bail!(
            "--ssh-dir {}: {name} {e}; put the job's private key there (OpenSSH or PEM format)",
            dir.display()
        ),
    };
    let pub_name = format!("{name}.pub");
    let pub_path = dir.join(&pub_name);
    let public = match derived {
        Some(public) => public,
        None if pub_path.exists() => {
            let line = read(&pub_path, dir, &pub_name)?;
            match sshkey::parse_public_line(&String::from_utf8_lossy(&line)) {
                Some(public) => public,
                None => bail!(
                    "--ssh-dir {}: {pub_name} is not an SSH public key; regenerate it with ssh-keygen -y -f {name}",
                    dir.display()
                ),
            }
        }
        None => bail!(
            "--ssh-dir {}: {name} is a PEM key and {pub_name} is missing; add {pub_name} (ssh-keygen -y -f {name}) or convert the key to OpenSSH format",
            dir.display()
        ),
    };
    let key = JobKey::new(text, public);
    let ak_path = dir.join(secret_keys::AUTHORIZED_KEYS);
    let authorized_keys = if ak_path.exists() {
        let bytes = read(&ak_path, dir, secret_keys::AUTHORIZED_KEYS)?;
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        authorized_keys_line(&key)
    };
    Ok(MountedKey {
        path,
        key,
        authorized_keys,
    })
}

fn read(path: &Path, dir: &Path, name: &str) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "--ssh-dir {}: cannot read {name}: {}; make it readable by uid {} (for a Secret: defaultMode 0440 and the pod's fsGroup)",
            dir.display(),
            crate::errors::io_reason(&e),
            nix::unistd::getuid()
        )
    })
}

/// The `authorized_keys` line for the job key.
pub fn authorized_keys_line(key: &JobKey) -> String {
    format!("{} mpijob\n", key.public_key_only())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_ed25519_then_ecdsa_then_rsa_then_secret_name() {
        assert_eq!(select(|_| true), Some("id_ed25519"));
        assert_eq!(select(|n| n != "id_ed25519"), Some("id_ecdsa"));
        assert_eq!(
            select(|n| n == "id_rsa" || n == "ssh-privatekey"),
            Some("id_rsa")
        );
        assert_eq!(select(|n| n == "ssh-privatekey"), Some("ssh-privatekey"));
        assert_eq!(select(|n| n == "authorized_keys"), None);
    }

    #[test]
    fn the_derived_authorized_keys_line_names_mpijob() {
        let key = sshkey::generate("mpijob:ns/pi");
        assert_eq!(
            authorized_keys_line(&key),
            format!("{} mpijob\n", key.public_key_only())
        );
    }
}
