//! The job's ssh key pair: one key, used as the client identity and as every
//! worker's host key, so that `known_hosts` can pin it. The controller makes
//! it for the job's Secret and the agent reads it back from the mounted
//! files; both hold it as a [`JobKey`]. Parsing is `ssh-key`'s.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

/// A key pair: the private key file's text and the public key.
#[derive(Clone)]
pub struct JobKey {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----…`, or a PEM key a user mounted.
    private: String,
    public: PublicKey,
}

impl std::fmt::Debug for JobKey {
    // Never print the private key, even by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobKey")
            .field("public", &self.public_openssh())
            .finish_non_exhaustive()
    }
}

impl JobKey {
    /// A key pair from a private key file's text and its public half.
    pub fn new(private: String, public: PublicKey) -> JobKey {
        JobKey { private, public }
    }

    /// The private key file, as ssh reads it. Never log it.
    pub fn private_pem(&self) -> &str {
        &self.private
    }

    /// `ssh-ed25519 AAAA… <comment>`, as in a `.pub` file.
    pub fn public_openssh(&self) -> String {
        self.public
            .to_openssh()
            .expect("a decoded public key encodes")
    }

    /// `ssh-ed25519 AAAA…` without the comment, as `known_hosts` and
    /// `authorized_keys` pin it.
    pub fn public_key_only(&self) -> String {
        PublicKey::new(self.public.key_data().clone(), "")
            .to_openssh()
            .expect("a decoded public key encodes")
    }
}

/// Generate a fresh ed25519 key pair from the operating system's random
/// source. `comment` names the job, e.g. `mpijob:ns/pi`.
pub fn generate(comment: &str) -> JobKey {
    let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
        .expect("ed25519 key generation does not fail");
    key.set_comment(comment);
    let private = key
        .to_openssh(LineEnding::LF)
        .expect("an ed25519 key encodes")
        .to_string();
    JobKey::new(private, key.public_key().clone())
}

/// The public key inside a private key file.
///
/// `Ok(Some)` for an OpenSSH key (encrypted or not: its public half is in
/// the clear), `Ok(None)` for a PEM key (whose public half needs
/// cryptography to derive), `Err` with the reason for anything else, worded
/// to follow the file's name.
pub fn public_of_private(text: &str) -> Result<Option<PublicKey>, &'static str> {
    const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
    const END: &str = "-----END OPENSSH PRIVATE KEY-----";
    let text = text.trim();
    if let Some(rest) = text.strip_prefix(BEGIN) {
        let body = rest.strip_suffix(END).ok_or("is truncated (no END line)")?;
        // OpenSSH takes the base64 at any line width, ssh-key's PEM reader
        // only at 70: unwrap it here and give ssh-key the binary key.
        let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = BASE64.decode(body).map_err(|_| "is corrupt (bad base64)")?;
        return match PrivateKey::from_bytes(&bytes) {
            Ok(key) => Ok(Some(key.public_key().clone())),
            // The check bytes or the public half inside the private section.
            Err(ssh_key::Error::Crypto | ssh_key::Error::PublicKey) => {
                Err("is corrupt (its private section does not check out)")
            }
            Err(_) => Err("is corrupt (bad OpenSSH key header)"),
        };
    }
    let pem = [
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----BEGIN EC PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----",
    ];
    if pem.iter().any(|begin| text.starts_with(begin)) {
        return Ok(None);
    }
    Err("is not an SSH private key (no OpenSSH or PEM header)")
}

/// A public key from a `.pub` file or an `authorized_keys` line without
/// options: its first line that is not blank or a comment.
pub fn parse_public_line(text: &str) -> Option<PublicKey> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    PublicKey::from_openssh(line).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway ed25519 key made by `ssh-keygen -t ed25519 -N ''` for
    /// these tests only.
    const ED25519_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACATrSd+OPTHX7kbiYcFx9RmNeQ7E5Trx5fPaZR0BxUqDAAAAJgiT1kFIk9Z
BQAAAAtzc2gtZWQyNTUxOQAAACATrSd+OPTHX7kbiYcFx9RmNeQ7E5Trx5fPaZR0BxUqDA
AAAED1Y6hkMDDDm17rSawZZkls+3hZu+14amcLdd9/C7IVOBOtJ3449MdfuRuJhwXH1GY1
5DsTlOvHl89plHQHFSoMAAAAEHRlc3RAbXBpam9iLXRlc3QBAgMEBQ==
-----END OPENSSH PRIVATE KEY-----
";
    const ED25519_PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBOtJ3449MdfuRuJhwXH1GY15DsTlOvHl89plHQHFSoM";

    /// The test key's base64, on one line.
    fn test_key_base64() -> String {
        ED25519_PRIVATE
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect()
    }

    /// `base64` between the OpenSSH armour lines, unwrapped.
    fn armoured(base64: &str) -> String {
        format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{base64}\n-----END OPENSSH PRIVATE KEY-----\n"
        )
    }

    #[test]
    fn keys_are_fresh_and_in_openssh_format() {
        let a = generate("mpijob:ns/pi");
        let b = generate("mpijob:ns/pi");
        assert!(a
            .private_pem()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(a.public_openssh().starts_with("ssh-ed25519 AAAA"));
        assert!(a.public_openssh().ends_with(" mpijob:ns/pi"));
        assert_eq!(
            format!("{} mpijob:ns/pi", a.public_key_only()),
            a.public_openssh()
        );
        assert_ne!(a.public_openssh(), b.public_openssh());
        let parsed = PrivateKey::from_openssh(a.private_pem()).unwrap();
        assert_eq!(
            parsed.public_key().to_openssh().unwrap(),
            a.public_openssh()
        );
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }

    #[test]
    fn derives_the_public_key_from_an_openssh_private_key() {
        let public = public_of_private(ED25519_PRIVATE).unwrap().unwrap();
        let key = JobKey::new(ED25519_PRIVATE.into(), public);
        assert_eq!(key.public_key_only(), ED25519_PUBLIC);
        assert_eq!(
            key.public_openssh(),
            format!("{ED25519_PUBLIC} test@mpijob-test")
        );
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn takes_the_base64_at_any_line_width() {
        let one_line = armoured(&test_key_base64());
        let public = public_of_private(&one_line).unwrap().unwrap();
        assert_eq!(
            JobKey::new(one_line, public).public_key_only(),
            ED25519_PUBLIC
        );
    }

    #[test]
    fn pem_keys_need_their_pub_file_and_garbage_is_named() {
        assert_eq!(
            public_of_private(
                "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
            ),
            Ok(None)
        );
        assert_eq!(
            public_of_private("hello"),
            Err("is not an SSH private key (no OpenSSH or PEM header)")
        );
        assert_eq!(
            public_of_private("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n"),
            Err("is truncated (no END line)")
        );
        assert_eq!(
            public_of_private(
                "-----BEGIN OPENSSH PRIVATE KEY-----\naGVsbG8=\n-----END OPENSSH PRIVATE KEY-----"
            ),
            Err("is corrupt (bad OpenSSH key header)")
        );
        assert_eq!(
            public_of_private(
                "-----BEGIN OPENSSH PRIVATE KEY-----\naGVs!!bG8=\n-----END OPENSSH PRIVATE KEY-----"
            ),
            Err("is corrupt (bad base64)")
        );
    }

    #[test]
    fn a_damaged_private_section_is_named() {
        let mut bytes = BASE64.decode(test_key_base64()).unwrap();
        // The first check word, which opens the private section (after the
        // magic, "none", "none", empty KDF options, the key count and the
        // 51-byte public key, each string with its 4-byte length).
        bytes[15 + 8 + 8 + 4 + 4 + 55 + 4] ^= 0xff;
        let damaged = armoured(&BASE64.encode(&bytes));
        assert_eq!(
            public_of_private(&damaged),
            Err("is corrupt (its private section does not check out)")
        );
    }

    #[test]
    fn parses_public_lines() {
        let key = parse_public_line(&format!("# comment\n{ED25519_PUBLIC} me@host\n")).unwrap();
        assert_eq!(key.comment(), "me@host");
        let key = JobKey::new(String::new(), key);
        assert_eq!(key.public_key_only(), ED25519_PUBLIC);
        // The blob must say the same algorithm as the line.
        let lying = ED25519_PUBLIC.replace("ssh-ed25519", "ssh-rsa");
        assert_eq!(parse_public_line(&lying), None);
        assert_eq!(parse_public_line("ssh-ed25519"), None);
    }
}
