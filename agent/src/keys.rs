//! The job's key pair: which file to use, and its public half.
//!
//! The public key is read from the private key's OpenSSH header, which is
//! never encrypted, so no cryptography is needed and no key material beyond
//! the public blob is ever parsed.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use mpijob_api::contract::secret_keys;

/// Private key file names, in order of preference. `ssh-privatekey` is the
/// name a `kubernetes.io/ssh-auth` Secret requires.
pub const KEY_NAMES: [&str; 4] = [
    secret_keys::ID_ED25519,
    "id_ecdsa",
    "id_rsa",
    secret_keys::PRIVATE_KEY,
];

/// A public key as `authorized_keys` and `known_hosts` spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// The base64 of the key blob.
    pub blob: String,
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm, self.blob)
    }
}

/// The job key, read from the ssh directory.
pub struct JobKey {
    /// The file it came from.
    pub path: PathBuf,
    /// The private key file's bytes. Never logged.
    pub private: Vec<u8>,
    pub public: PublicKey,
    /// `authorized_keys` from the ssh directory, or one derived from
    /// `public`.
    pub authorized_keys: String,
}

impl fmt::Debug for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobKey")
            .field("path", &self.path)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The first of [`KEY_NAMES`] for which `exists` says yes.
pub fn select(exists: impl Fn(&str) -> bool) -> Option<&'static str> {
    KEY_NAMES.into_iter().find(|name| exists(name))
}

/// Read the job key from `dir` (the `--ssh-dir`).
pub fn load(dir: &Path) -> Result<JobKey> {
    let Some(name) = select(|name| dir.join(name).exists()) else {
        bail!(
            "--ssh-dir {}: no private key found (looked for {}); mount the job's key Secret there or pass --ssh-dir",
            dir.display(),
            KEY_NAMES.join(", ")
        );
    };
    let path = dir.join(name);
    let private = read(&path, dir, name)?;
    let text = String::from_utf8_lossy(&private);
    let derived = match parse_private(&text) {
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
            match parse_public_line(&String::from_utf8_lossy(&line)) {
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
    let ak_path = dir.join(secret_keys::AUTHORIZED_KEYS);
    let authorized_keys = if ak_path.exists() {
        let bytes = read(&ak_path, dir, secret_keys::AUTHORIZED_KEYS)?;
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        authorized_keys_line(&public)
    };
    Ok(JobKey {
        path,
        private,
        public,
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
pub fn authorized_keys_line(public: &PublicKey) -> String {
    format!("{public} mpijob\n")
}

/// The public key inside a private key file.
///
/// `Ok(Some)` for an OpenSSH key, `Ok(None)` for a PEM key (whose public half
/// needs cryptography to derive), `Err` with the reason for anything else.
pub fn parse_private(text: &str) -> Result<Option<PublicKey>, String> {
    const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
    const END: &str = "-----END OPENSSH PRIVATE KEY-----";
    let text = text.trim();
    if let Some(rest) = text.strip_prefix(BEGIN) {
        let body = rest.strip_suffix(END).ok_or("is truncated (no END line)")?;
        let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = BASE64.decode(body).map_err(|_| "is corrupt (bad base64)")?;
        return openssh_public_blob(&bytes)
            .map(|blob| {
                Some(PublicKey {
                    algorithm: blob.0,
                    blob: BASE64.encode(blob.1),
                })
            })
            .ok_or_else(|| "is corrupt (bad OpenSSH key header)".to_string());
    }
    let pem = [
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----BEGIN EC PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----",
    ];
    if pem.iter().any(|begin| text.starts_with(begin)) {
        return Ok(None);
    }
    Err("is not an SSH private key (no OpenSSH or PEM header)".into())
}

/// The first public key of an `openssh-key-v1` structure: its algorithm name
/// and its blob.
fn openssh_public_blob(bytes: &[u8]) -> Option<(String, &[u8])> {
    let mut rest = bytes.strip_prefix(b"openssh-key-v1\0")?;
    for _ in 0..3 {
        // cipher name, KDF name, KDF options
        take_string(&mut rest)?;
    }
    let count = take_u32(&mut rest)?;
    if count < 1 {
        return None;
    }
    let blob = take_string(&mut rest)?;
    let mut inner = blob;
    let algorithm = std::str::from_utf8(take_string(&mut inner)?).ok()?;
    if algorithm.is_empty() || !algorithm.is_ascii() {
        return None;
    }
    Some((algorithm.to_string(), blob))
}

fn take_u32(rest: &mut &[u8]) -> Option<u32> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(u32::from_be_bytes(*head))
}

fn take_string<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = take_u32(rest)? as usize;
    if rest.len() < len {
        return None;
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Some(head)
}

/// A public key from a `.pub` file or an `authorized_keys` line without
/// options.
pub fn parse_public_line(text: &str) -> Option<PublicKey> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let mut words = line.split_whitespace();
    let algorithm = words.next()?;
    let blob = words.next()?;
    let bytes = BASE64.decode(blob).ok()?;
    let mut rest = bytes.as_slice();
    if take_string(&mut rest)? != algorithm.as_bytes() {
        return None;
    }
    Some(PublicKey {
        algorithm: algorithm.into(),
        blob: blob.into(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A throwaway ed25519 key made by `ssh-keygen -t ed25519 -N ''` for
    /// these tests only.
    pub const ED25519_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACATrSd+OPTHX7kbiYcFx9RmNeQ7E5Trx5fPaZR0BxUqDAAAAJgiT1kFIk9Z
BQAAAAtzc2gtZWQyNTUxOQAAACATrSd+OPTHX7kbiYcFx9RmNeQ7E5Trx5fPaZR0BxUqDA
AAAED1Y6hkMDDDm17rSawZZkls+3hZu+14amcLdd9/C7IVOBOtJ3449MdfuRuJhwXH1GY1
5DsTlOvHl89plHQHFSoMAAAAEHRlc3RAbXBpam9iLXRlc3QBAgMEBQ==
-----END OPENSSH PRIVATE KEY-----
";
    pub const ED25519_PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBOtJ3449MdfuRuJhwXH1GY15DsTlOvHl89plHQHFSoM";

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
    fn derives_the_public_key_from_an_openssh_private_key() {
        let public = parse_private(ED25519_PRIVATE).unwrap().unwrap();
        assert_eq!(public.to_string(), ED25519_PUBLIC);
        assert_eq!(
            authorized_keys_line(&public),
            format!("{ED25519_PUBLIC} mpijob\n")
        );
    }

    #[test]
    fn pem_keys_need_their_pub_file_and_garbage_is_named() {
        assert_eq!(
            parse_private("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"),
            Ok(None)
        );
        assert_eq!(
            parse_private("hello"),
            Err("is not an SSH private key (no OpenSSH or PEM header)".into())
        );
        assert_eq!(
            parse_private("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n"),
            Err("is truncated (no END line)".into())
        );
        assert_eq!(
            parse_private(
                "-----BEGIN OPENSSH PRIVATE KEY-----\naGVsbG8=\n-----END OPENSSH PRIVATE KEY-----"
            ),
            Err("is corrupt (bad OpenSSH key header)".into())
        );
    }

    #[test]
    fn parses_public_lines() {
        let key = parse_public_line(&format!("# comment\n{ED25519_PUBLIC} me@host\n")).unwrap();
        assert_eq!(key.to_string(), ED25519_PUBLIC);
        // The blob must say the same algorithm as the line.
        let lying = ED25519_PUBLIC.replace("ssh-ed25519", "ssh-rsa");
        assert_eq!(parse_public_line(&lying), None);
        assert_eq!(parse_public_line("ssh-ed25519"), None);
    }
}
