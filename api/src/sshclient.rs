//! The ssh client side of the pod contract: the text that makes plain
//! `ssh <peer>` use the job's port and key, with the peer's host key pinned.
//! The worker agent writes it into its state directory; the controller puts
//! the same text into the job Secret, so it also works where `~/.ssh` is the
//! read-only Secret mount.

use std::path::Path;

use crate::contract::secret_keys;
use crate::sshkey::JobKey;

/// A complete `~/.ssh` for a job, mounted or copied to `dir`: the key pair
/// (`id_ed25519`, `id_ed25519.pub`), `authorized_keys` admitting it, a
/// `known_hosts` pinning it as every peer's host key at `port`, and a
/// client `config` for the peers that points into `dir`. The controller's
/// Secret and `mpijob-agent keygen` both hold exactly these files.
pub fn ssh_dir_files(
    key: &JobKey,
    peers: &[String],
    port: u16,
    dir: &Path,
) -> Vec<(&'static str, String)> {
    let public = format!("{}\n", key.public_openssh());
    let config = ssh_config(
        peers,
        port,
        &dir.join(secret_keys::ID_ED25519),
        &dir.join(secret_keys::KNOWN_HOSTS),
    );
    vec![
        (secret_keys::ID_ED25519, key.private_pem().to_string()),
        (secret_keys::ID_ED25519_PUB, public.clone()),
        (secret_keys::AUTHORIZED_KEYS, public),
        (
            secret_keys::KNOWN_HOSTS,
            known_hosts(peers, port, &key.public_key_only()),
        ),
        (secret_keys::CONFIG, config),
    ]
}

/// The `known_hosts` text pinning the job key (`ssh-ed25519 AAAA…`, no
/// comment) for the peers at `port`.
///
/// ssh looks a host up as `[host]:port` when the port is not 22, and a
/// pattern matches that whole string, so `[*.pi.ns.svc]:2222` pins every
/// peer's port.
pub fn known_hosts(peers: &[String], port: u16, key: &str) -> String {
    let hosts: Vec<String> = peers
        .iter()
        .map(|p| {
            if port == 22 {
                p.clone()
            } else {
                format!("[{p}]:{port}")
            }
        })
        .collect();
    format!("{} {key}\n", hosts.join(","))
}

/// The client config for the job's peers.
pub fn ssh_config(peers: &[String], port: u16, identity: &Path, known_hosts: &Path) -> String {
    format!(
        "# Written by mpijob-agent: the job's peers.\n\
         Host {}\n\
         \x20   Port {port}\n\
         \x20   IdentityFile {}\n\
         \x20   IdentitiesOnly yes\n\
         \x20   UserKnownHostsFile {}\n\
         \x20   GlobalKnownHostsFile /dev/null\n\
         \x20   StrictHostKeyChecking yes\n\
         \x20   CheckHostIP no\n\
         \x20   BatchMode yes\n\
         \x20   LogLevel ERROR\n\
         # Back to all hosts, for whatever follows the Include.\n\
         Host *\n",
        peers.join(" "),
        identity.display(),
        known_hosts.display(),
    )
}

/// `Host <name>` / `HostName <address>` blocks that send ssh for each named
/// host to the address it answered on (hosts given as addresses, or with
/// none, are left out). Appended after [`ssh_config`], where no block sets
/// `HostName`; `HostKeyAlias` keeps the host-key check on the name, which
/// `known_hosts` pins, not on the address.
pub fn pinned_addresses(
    hosts: &[String],
    addresses: &[Option<std::net::IpAddr>],
    port: u16,
) -> String {
    let mut text = String::new();
    for (host, addr) in hosts.iter().zip(addresses) {
        if let (Some(addr), Err(_)) = (addr, host.parse::<std::net::IpAddr>()) {
            if text.is_empty() {
                text.push_str("# Written by mpijob-agent: where each worker answered.\n");
            }
            // An alias is looked up as written, without the port that
            // known_hosts entries carry: write it the way they do.
            let alias = if port == 22 {
                host.clone()
            } else {
                format!("[{host}]:{port}")
            };
            text.push_str(&format!(
                "Host {host}\n    HostName {addr}\n    HostKeyAlias {alias}\n"
            ));
        }
    }
    text
}

/// A peer pattern must be one word that ssh and known_hosts both accept,
/// and that no program can take for an option: host name characters and
/// the `*` and `?` wildcards only, not starting with `-`.
pub fn check_peer(peer: &str) -> Result<(), String> {
    if peer.is_empty() {
        return Err("empty pattern".into());
    }
    if peer.starts_with('-') {
        return Err(format!("{peer:?} starts with '-'"));
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*' | '?');
    if let Some(c) = peer.chars().find(|c| !allowed(*c)) {
        return Err(format!("{peer:?} contains {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn named_workers_are_pinned_to_the_address_that_answered() {
        let hosts = vec![
            "pi-worker-0.pi.ns.svc".to_string(),
            "10.0.0.9".into(),
            "pi-worker-1.pi.ns.svc".into(),
        ];
        let addrs = vec![
            Some("198.19.0.5".parse().unwrap()),
            Some("10.0.0.9".parse().unwrap()),
            None,
        ];
        assert_eq!(
            pinned_addresses(&hosts, &addrs, 2222),
            "# Written by mpijob-agent: where each worker answered.\nHost pi-worker-0.pi.ns.svc\n    HostName 198.19.0.5\n    HostKeyAlias [pi-worker-0.pi.ns.svc]:2222\n"
        );
        assert_eq!(pinned_addresses(&hosts[1..2], &addrs[1..2], 2222), "");
    }

    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjRrSRvLjhcy3rbT9Yf1o2GZJHkX7wB2dkwV7W1o3mN";

    #[test]
    fn known_hosts_pins_the_job_key_on_the_peers_port() {
        let peers = vec!["*.pi.team-a.svc".to_string(), "pi-worker-*".to_string()];
        assert_eq!(
            known_hosts(&peers, 2222, KEY),
            format!("[*.pi.team-a.svc]:2222,[pi-worker-*]:2222 {KEY}\n")
        );
        assert_eq!(
            known_hosts(&peers[..1], 22, KEY),
            format!("*.pi.team-a.svc {KEY}\n")
        );
    }

    #[test]
    fn client_config_sets_port_identity_and_strict_checking() {
        let c = ssh_config(
            &["*.pi.ns.svc".into(), "10.0.0.*".into()],
            2222,
            Path::new("/run/mpijob/job_key"),
            Path::new("/run/mpijob/known_hosts"),
        );
        assert_eq!(
            c,
            "# Written by mpijob-agent: the job's peers.\n\
             Host *.pi.ns.svc 10.0.0.*\n    Port 2222\n\
             \x20   IdentityFile /run/mpijob/job_key\n    IdentitiesOnly yes\n\
             \x20   UserKnownHostsFile /run/mpijob/known_hosts\n\
             \x20   GlobalKnownHostsFile /dev/null\n\
             \x20   StrictHostKeyChecking yes\n    CheckHostIP no\n\
             \x20   BatchMode yes\n    LogLevel ERROR\n\
             # Back to all hosts, for whatever follows the Include.\n\
             Host *\n"
        );
    }

    #[test]
    fn peer_patterns_are_single_words() {
        assert!(check_peer("*.pi.ns.svc").is_ok());
        assert!(check_peer("127.0.0.1").is_ok());
        assert!(check_peer("pi-worker-?.pi.ns.svc").is_ok());
        assert_eq!(
            check_peer("!bad?.x"),
            Err("\"!bad?.x\" contains '!'".into())
        );
        assert_eq!(
            check_peer("-oProxyCommand=x"),
            Err("\"-oProxyCommand=x\" starts with '-'".into())
        );
        assert_eq!(check_peer("a;b"), Err("\"a;b\" contains ';'".into()));
        assert_eq!(check_peer(""), Err("empty pattern".into()));
        assert_eq!(check_peer("a b"), Err("\"a b\" contains ' '".into()));
        assert_eq!(check_peer("[a]"), Err("\"[a]\" contains '['".into()));
    }
}
