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
    /// The environment every session gets on top of sshd's own (`SetEnv`):
    /// see [`session_env`].
    pub set_env: &'a [(String, String)],
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
    // One line: sshd keeps the first SetEnv it reads and ignores the rest.
    if !c.set_env.is_empty() && !sets_env(c.extra) {
        line("SetEnv", &set_env_value(c.set_env));
    }
    for extra in c.extra {
        s.push_str(extra.trim());
        s.push('\n');
    }
    s
}

/// The value of a `SetEnv` line: `"K=V" …`, each quoted ([`session_env`]
/// passes no value a quote would break).
pub fn set_env_value(env: &[(String, String)]) -> String {
    let words: Vec<String> = env.iter().map(|(k, v)| format!("\"{k}={v}\"")).collect();
    words.join(" ")
}

/// Where an sshd command line (`sshd … -f FILE …`, program first) says
/// its config is: the index of FILE in it, or `None` and sshd's default.
pub fn config_flag(command: &[String]) -> (Option<usize>, PathBuf) {
    let mut found = (None, PathBuf::from("/etc/ssh/sshd_config"));
    let mut i = 1;
    while i < command.len() {
        let a = &command[i];
        // Flags that take a value, as sshd's getopt string names them.
        if a == "-f" && i + 1 < command.len() {
            found = (Some(i + 1), PathBuf::from(&command[i + 1]));
            i += 1;
        } else if ["-c", "-C", "-E", "-g", "-h", "-k", "-o", "-p", "-u"].contains(&a.as_str()) {
            i += 1;
        }
        i += 1;
    }
    found
}

/// `config` (the text of the file at `path`) with a `SetEnv` line first:
/// sshd keeps the first SetEnv it reads.
pub fn with_set_env(config: &str, path: &Path, env: &[(String, String)]) -> String {
    format!(
        "# Written by mpijob-agent guard: {} with this container's environment for ssh sessions.\nSetEnv {}\n{config}",
        path.display(),
        set_env_value(env)
    )
}

/// The OpenSSH version an `sshd -V` printed: `OpenSSH_9.2, OpenSSL …`.
/// An sshd too old to know `-V` names its version in the usage it prints
/// instead (`OpenSSH_8.2p1 Ubuntu-4ubuntu0.5, …`).
pub fn openssh_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("OpenSSH_")? + "OpenSSH_".len()..];
    let mut numbers = rest.split(|c: char| !c.is_ascii_digit());
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((major, minor))
}

/// The first OpenSSH with sshd_config's `SetEnv`.
pub const SET_ENV_SINCE: (u32, u32) = (8, 7);

/// Say, by name, what of this environment ssh sessions get; values can
/// be secrets and are never shown.
pub fn announce(env: &SessionEnv, whose: &str) {
    // Not every name: Kubernetes adds a few per Service.
    const SHOWN: usize = 12;
    // PATH and LD_LIBRARY_PATH first, then the environment's own order (no
    // sort: its code would be the worker's largest resident cost here).
    let first = ["PATH", "LD_LIBRARY_PATH"];
    let mut names: Vec<&str> = first
        .iter()
        .copied()
        .filter(|f| env.pass.iter().any(|(k, _)| k == f))
        .collect();
    names.extend(
        env.pass
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !first.contains(k)),
    );
    let more = names.len().saturating_sub(SHOWN);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    names.truncate(SHOWN);
    tracing::info!(
        "commands run over ssh get {whose} environment ({} variables: {}{more})",
        env.pass.len(),
        names.join(" ")
    );
    if !env.unwritable.is_empty() {
        tracing::warn!(
            "not passed to ssh sessions, since sshd's config cannot carry their values (a double quote, a backslash or a line break): {}; pass them with mpirun (-x NAME) if the ranks need them",
            env.unwritable.join(" ")
        );
    }
}

/// Whether the `--sshd-option` lines set the sessions' environment
/// themselves; the agent's `SetEnv` then stays out (sshd would keep
/// only the first).
pub fn sets_env(extra: &[String]) -> bool {
    extra.iter().any(|e| {
        e.trim()
            .split(|c: char| c.is_whitespace() || c == '=')
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("SetEnv"))
    })
}

/// What of the agent's environment reaches the commands run over ssh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionEnv {
    /// Passed with sshd's `SetEnv`, in the environment's order.
    pub pass: Vec<(String, String)>,
    /// Names held back because sshd's config cannot carry their value (a
    /// double quote, a backslash, a control character, or not UTF-8).
    pub unwritable: Vec<String>,
}

/// Variables sshd sets for each session itself, for the user who logs in.
const SESSION_OWN: &[&str] = &["HOME", "USER", "LOGNAME", "SHELL", "MAIL", "TERM"];
/// A shell's or a process manager's state about this very process: it
/// would be false in the session.
const PROCESS_OWN: &[&str] = &[
    "PWD",
    "OLDPWD",
    "SHLVL",
    "_",
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "MANAGERPID",
    "SYSTEMD_EXEC_PID",
];

/// The environment rule: a command run over ssh on a worker gets the
/// environment the agent started with, that is, the container's (the
/// image's `ENV` and the pod's `env`), or on a host the shell's that
/// started the agent. So `PATH`, `LD_LIBRARY_PATH` and an MPI's own
/// variables reach every daemon and rank, as `docker exec` would see
/// them. Held back:
///
/// - what sshd sets for the user who logs in: `HOME`, `USER`, `LOGNAME`,
///   `SHELL`, `MAIL`, `TERM`, and every `SSH_*` (the agent forwarding
///   socket, the connection);
/// - what names this process's own state: `MPIJOB_*` (the agent's
///   settings), `PWD`, `OLDPWD`, `SHLVL`, `_`, systemd's `NOTIFY_SOCKET`,
///   `LISTEN_*`, `WATCHDOG_*`, `INVOCATION_ID`, `JOURNAL_STREAM`,
///   `MANAGERPID`, `SYSTEMD_EXEC_PID`, and `XDG_SESSION_*`;
/// - names that are not shell names, and values sshd's config cannot
///   carry (see [`SessionEnv::unwritable`]).
pub fn session_env<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> SessionEnv
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    let mut env = SessionEnv::default();
    for (k, v) in vars {
        let (Some(k), v) = (k.as_ref().to_str(), v.as_ref().to_str()) else {
            continue;
        };
        let shell_name = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let held = !shell_name
            || SESSION_OWN.contains(&k)
            || PROCESS_OWN.contains(&k)
            || ["SSH_", "MPIJOB_", "XDG_SESSION_"]
                .iter()
                .any(|p| k.starts_with(p));
        if held {
            continue;
        }
        match v {
            Some(v) if !v.chars().any(|c| c == '"' || c == '\\' || c.is_control()) => {
                env.pass.push((k.to_string(), v.to_string()));
            }
            _ => env.unwritable.push(k.to_string()),
        }
    }
    env
}

/// Whether sshd refused the config for its `SetEnv` line: OpenSSH before
/// 8.7 does not know the keyword.
pub fn set_env_unknown(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("bad configuration option") && r.contains("setenv")
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
            set_env: &[],
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
            set_env: &[],
        });
        assert!(!c.contains("AllowUsers"));
    }

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_image_environment_is_passed_and_the_sessions_own_is_not() {
        let env = session_env(vars(&[
            ("PATH", "/opt/venv/bin:/usr/bin:/bin"),
            ("LD_LIBRARY_PATH", "/opt/venv/lib"),
            ("I_MPI_ROOT", "/opt/venv"),
            ("HOME", "/root"),
            ("USER", "root"),
            ("SSH_AUTH_SOCK", "/tmp/agent.1"),
            ("SSH_CONNECTION", "1 2 3 4"),
            ("MPIJOB_SSH_DIR", "/etc/mpijob/ssh"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("SHLVL", "2"),
            ("XDG_SESSION_ID", "3"),
            ("WITH SPACE", "x"),
            ("1ABC", "x"),
            ("MESSAGE", "say \"hi\""),
            ("BACKSLASH", "a\\b"),
            ("NEWLINE", "a\nb"),
            ("SPACES", "a b 'c' $d #e"),
            ("EMPTY", ""),
        ]));
        assert_eq!(
            env.pass,
            vars(&[
                ("PATH", "/opt/venv/bin:/usr/bin:/bin"),
                ("LD_LIBRARY_PATH", "/opt/venv/lib"),
                ("I_MPI_ROOT", "/opt/venv"),
                ("SPACES", "a b 'c' $d #e"),
                ("EMPTY", ""),
            ])
        );
        assert_eq!(env.unwritable, ["MESSAGE", "BACKSLASH", "NEWLINE"]);
    }

    #[test]
    fn the_environment_is_one_set_env_line_unless_an_option_sets_its_own() {
        let set_env = vars(&[("A", "1"), ("PATH", "/v/bin:/bin"), ("S", "x y")]);
        let c = |extra: &[String]| {
            render(&ServerConfig {
                port: 22,
                listen: None,
                host_key: Path::new("/k"),
                authorized_keys: Path::new("/a"),
                pid_file: Path::new("/p"),
                user: None,
                root: true,
                extra,
                set_env: &set_env,
            })
        };
        let text = c(&[]);
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("SetEnv "))
                .collect::<Vec<_>>(),
            ["SetEnv \"A=1\" \"PATH=/v/bin:/bin\" \"S=x y\""]
        );
        for own in ["SetEnv FOO=1", "setenv=FOO=1", "  SETENV FOO=1"] {
            let text = c(&[own.to_string()]);
            assert_eq!(
                text.matches("etEnv").count()
                    + text.matches("ETENV").count()
                    + text.matches("etenv").count(),
                1,
                "{text}"
            );
            assert!(text.ends_with(&format!("{}\n", own.trim())));
        }
        assert!(!sets_env(&["SetEnvironment x".into(), "X SetEnv".into()]));
    }

    #[test]
    fn reads_the_openssh_version_from_either_answer_to_dash_v() {
        assert_eq!(
            openssh_version("OpenSSH_9.2, OpenSSL 3.0.19 27 Jan 2026\n"),
            Some((9, 2))
        );
        assert_eq!(
            openssh_version(
                "unknown option -- V\nOpenSSH_8.2p1 Ubuntu-4ubuntu0.5, OpenSSL 1.1.1f  31 Mar 2020\nusage: sshd [-46DdeiqTt]\n"
            ),
            Some((8, 2))
        );
        assert_eq!(
            openssh_version("OpenSSH_10.0p2 Debian-7, OpenSSL 3.5.1"),
            Some((10, 0))
        );
        assert_eq!(openssh_version("dropbear v2022.83"), None);
        assert!((8, 2) < SET_ENV_SINCE && (8, 7) >= SET_ENV_SINCE && (10, 0) > SET_ENV_SINCE);
    }

    #[test]
    fn finds_the_config_of_an_sshd_command_line() {
        let c = |v: &[&str]| config_flag(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            c(&["/usr/sbin/sshd", "-De"]),
            (None, PathBuf::from("/etc/ssh/sshd_config"))
        );
        assert_eq!(
            c(&["/usr/sbin/sshd", "-De", "-f", "/home/mpiuser/.sshd_config"]),
            (Some(3), PathBuf::from("/home/mpiuser/.sshd_config"))
        );
        // A value that looks like -f is another flag's.
        assert_eq!(
            c(&["sshd", "-o", "-f", "-p", "2222"]),
            (None, PathBuf::from("/etc/ssh/sshd_config"))
        );
        let text = with_set_env(
            "Port 2222\n",
            Path::new("/c"),
            &[("PATH".into(), "/v/bin:/bin".into())],
        );
        assert_eq!(
            text.lines().skip(1).collect::<Vec<_>>(),
            ["SetEnv \"PATH=/v/bin:/bin\"", "Port 2222"]
        );
    }

    #[test]
    fn an_old_sshd_refusing_set_env_is_recognised() {
        assert!(set_env_unknown(
            "/run/mpijob/sshd_config: line 16: Bad configuration option: SetEnv"
        ));
        assert!(!set_env_unknown(
            "/run/mpijob/sshd_config: line 17: Bad configuration option: Nope"
        ));
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
                set_env: &[],
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
