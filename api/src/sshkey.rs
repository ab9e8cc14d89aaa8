//! The job's ssh key pair: one ed25519 key, used as the client identity and
//! as every worker's host key, so that `known_hosts` can pin it.

use ssh_key::{Algorithm, LineEnding, PrivateKey};

/// A key pair in OpenSSH formats.
#[derive(Clone)]
pub struct JobKey {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----…`, unencrypted.
    pub private_openssh: String,
    /// `ssh-ed25519 AAAA… <comment>`.
    pub public_openssh: String,
}

impl std::fmt::Debug for JobKey {
    // Never print the private key, even by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobKey")
            .field("public_openssh", &self.public_openssh)
            .finish_non_exhaustive()
    }
}

/// Generate a fresh ed25519 key pair from the operating system's random
/// source. `comment` names the job, e.g. `mpijob:ns/pi`.
pub fn generate(comment: &str) -> JobKey {
    let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
        .expect("ed25519 key generation does not fail");
    key.set_comment(comment);
    JobKey {
        private_openssh: key
            .to_openssh(LineEnding::LF)
            .expect("an ed25519 key encodes")
            .to_string(),
        public_openssh: key
            .public_key()
            .to_openssh()
            .expect("an ed25519 public key encodes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_and_in_openssh_format() {
        let a = generate("mpijob:ns/pi");
        let b = generate("mpijob:ns/pi");
        assert!(a
            .private_openssh
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(a.public_openssh.starts_with("ssh-ed25519 AAAA"));
        assert!(a.public_openssh.ends_with(" mpijob:ns/pi"));
        assert_ne!(a.public_openssh, b.public_openssh);
        let parsed = PrivateKey::from_openssh(&a.private_openssh).unwrap();
        assert_eq!(parsed.public_key().to_openssh().unwrap(), a.public_openssh);
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }
}
