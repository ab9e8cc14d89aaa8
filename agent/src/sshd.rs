//! sshd: its configuration (a pure function of the options), the files it
//! needs in the state directory, and the checks made before it starts.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::errors::io_reason;

/// Everything the generated `sshd_config` depends on.
#[derive(Debug, Clone)]
pub struct ServerConfig<'a> {
    pub port: u16,
    /// `None`: every address, as sshd does by default.
    pub listen: Option<IpAddr>,
    pub host_key: &'a Path,
    pub authorized_keys: &'a Path,
    pub pid_file: &'a Path,
    /// The only user allowed in; `None` when the uid has no name.
    pub user: Option<&'a str>,
    pub root: bool,
    /// Extra `Keyword value` lines from `--sshd-option`, appended last.
    pub extra: &'a [String],
}

/// The `sshd_config` text.
pub fn render(c: &ServerConfig) -> String {
    let mut s = String::from("# Written by mpijob-agent at every start; edits are lost.\n");
    let mut line = |k: &str, v: &str| s.push_str(&format!("{k} {v}\n"));
    line("Port", &c.port.to_string());
    if let Some(addr) = c.listen {
        line("ListenAddress", &addr.to_string());
    }
    // The job key doubles as the host key: peers pin it in known_hosts.
    line("HostKey", &c.host_key.display().to_string());
    line(
        "AuthorizedKeysFile",
        &c.authorized_keys.display().to_string(),
    );
    line("PidFile", &c.pid_file.display().to_string());
    line("PubkeyAuthentication", "yes");
    line("PasswordAuthentication", "no");
    line("KbdInteractiveAuthentication", "no");
    line("UsePAM", "no");
    // Secret mounts are root-owned and group-readable; the copies in the
    // state directory are private anyway.
    line("StrictModes", "no");
    line(
        "PermitRootLogin",
        if c.root { "prohibit-password" } else { "no" },
    );
    if let Some(user) = c.user {
        line("AllowUsers", user);
    }
    line("PrintMotd", "no");
    line("X11Forwarding", "no");
    line("LogLevel", "INFO");
    for extra in c.extra {
        s.push_str(extra.trim());
        s.push('\n');
    }
    s
}

/// The sshd binary, checked: it must exist and be executable. sshd refuses
/// to re-exec itself from a relative path, so the result is absolute.
pub fn check_executable(path: &Path) -> Result<PathBuf> {
    let fix = "install openssh-server or point --sshd-path at sshd";
    let abs = match fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) => bail!("--sshd-path {}: {}; {fix}", path.display(), io_reason(&e)),
    };
    let meta = fs::metadata(&abs)
        .map_err(|e| anyhow::anyhow!("--sshd-path {}: {}; {fix}", path.display(), io_reason(&e)))?;
    let executable = nix::unistd::access(&abs, nix::unistd::AccessFlags::X_OK).is_ok();
    if !meta.is_file() || !executable || meta.permissions().mode() & 0o111 == 0 {
        bail!(
            "--sshd-path {}: not an executable file; {fix}",
            path.display()
        );
    }
    Ok(abs)
}

/// Fail early, with a clear message, when the port is taken: sshd's own
/// complaint would come after it has started.
pub fn check_port(port: u16, listen: Option<IpAddr>) -> Result<()> {
    let addrs: Vec<IpAddr> = match listen {
        Some(addr) => vec![addr],
        None => vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ],
    };
    for addr in addrs {
        let sock = SocketAddr::new(addr, port);
        match TcpListener::bind(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
                "--port {port}: {sock} is already in use; stop what listens there or choose another --port"
            ),
            // No IPv6 here: sshd skips it as well.
            Err(_) if listen.is_none() && addr.is_ipv6() => {}
            Err(e) => bail!(
                "--listen {addr}: cannot listen on {sock}: {}; choose an address of this host for --listen",
                io_reason(&e)
            ),
        }
    }
    Ok(())
}

/// As root, sshd needs its privilege-separation directory.
pub fn ensure_privsep_dir(root: bool) -> Result<()> {
    let dir = Path::new("/run/sshd");
    if root && !dir.exists() {
        fs::create_dir_all(dir)
            .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o755)))
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create sshd's privilege separation directory /run/sshd: {}; create it in the image",
                    io_reason(&e)
                )
            })?;
    }
    Ok(())
}

/// The one line to show from a failed `sshd -t`: its first message, without
/// sshd's own program-name prefix.
pub fn first_error_line(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.strip_prefix("sshd: ").unwrap_or(l).to_string())
        .unwrap_or_else(|| "no message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(root: bool, listen: Option<IpAddr>, extra: &[String]) -> String {
        render(&ServerConfig {
            port: 2222,
            listen,
            host_key: Path::new("/run/mpijob/job_key"),
            authorized_keys: Path::new("/run/mpijob/authorized_keys"),
            pid_file: Path::new("/run/mpijob/sshd.pid"),
            user: Some(if root { "root" } else { "mpiuser" }),
            root,
            extra,
        })
    }

    #[test]
    fn root_config() {
        assert_eq!(
            config(true, None, &[]),
            "# Written by mpijob-agent at every start; edits are lost.\n\
             Port 2222\n\
             HostKey /run/mpijob/job_key\n\
             AuthorizedKeysFile /run/mpijob/authorized_keys\n\
             PidFile /run/mpijob/sshd.pid\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             AllowUsers root\n\
             PrintMotd no\n\
             X11Forwarding no\n\
             LogLevel INFO\n"
        );
    }

    #[test]
    fn unprivileged_config_listens_where_told_and_takes_extra_options() {
        let c = config(
            false,
            Some("127.0.0.1".parse().unwrap()),
            &["MaxStartups 100:30:200".into()],
        );
        assert!(c.contains("\nListenAddress 127.0.0.1\n"));
        assert!(c.contains("\nPermitRootLogin no\n"));
        assert!(c.contains("\nAllowUsers mpiuser\n"));
        assert!(c.ends_with("\nMaxStartups 100:30:200\n"));
        let v6 = config(false, Some("::1".parse().unwrap()), &[]);
        assert!(v6.contains("\nListenAddress ::1\n"));
    }

    #[test]
    fn nameless_users_get_no_allow_users() {
        let c = render(&ServerConfig {
            port: 22,
            listen: None,
            host_key: Path::new("/k"),
            authorized_keys: Path::new("/a"),
            pid_file: Path::new("/p"),
            user: None,
            root: false,
            extra: &[],
        });
        assert!(!c.contains("AllowUsers"));
    }

    #[test]
    fn shows_sshds_first_complaint() {
        assert_eq!(
            first_error_line(
                "\n/s/sshd_config: line 17: Bad configuration option: Nope\n\
                 /s/sshd_config: terminating, 1 bad configuration options\n"
            ),
            "/s/sshd_config: line 17: Bad configuration option: Nope"
        );
        assert_eq!(
            first_error_line("sshd: no hostkeys available -- exiting.\n"),
            "no hostkeys available -- exiting."
        );
        assert_eq!(first_error_line(""), "no message");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Each `--sshd-option` (split at line breaks by the command line)
        /// is one line, after every line of the agent's own, whatever it
        /// holds: an option can add itself, never a line before it.
        #[test]
        fn each_extra_option_is_one_last_line(
            extra in prop::collection::vec("[^\r\n]{1,30}", 0..4),
            port in 1u16..,
        ) {
            let extra: Vec<String> = extra.into_iter().filter(|e| !e.trim().is_empty()).collect();
            let c = ServerConfig {
                port,
                listen: None,
                host_key: Path::new("/run/mpijob/job_key"),
                authorized_keys: Path::new("/run/mpijob/authorized_keys"),
                pid_file: Path::new("/run/mpijob/sshd.pid"),
                user: Some("mpiuser"),
                root: false,
                extra: &extra,
            };
            let text = render(&c);
            let base = render(&ServerConfig { extra: &[], ..c.clone() });
            let lines: Vec<&str> = text.lines().collect();
            prop_assert_eq!(lines.len(), base.lines().count() + extra.len());
            prop_assert!(text.starts_with(&base));
            for (line, e) in lines[base.lines().count()..].iter().zip(&extra) {
                prop_assert_eq!(*line, e.trim());
            }
        }
    }
}
