//! `mpijob-agent keygen`: a job's ssh directory for bare-metal hosts, the
//! same files the controller puts in a job's Secret: a fresh key pair,
//! `authorized_keys`, `known_hosts` pinning the key as every host's host
//! key on the job's port, and a client `config` for the hosts. Copied to
//! every host, it is the `--ssh-dir` of the workers and the launcher.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mpijob_api::sshclient;
use mpijob_api::sshkey;

use crate::client;
use crate::errors::io_reason;
use crate::files;
use crate::hostfile;

/// `keygen`'s settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub hosts: Vec<String>,
    pub hostfile: Option<PathBuf>,
    pub port: u16,
    pub out: PathBuf,
    pub force: bool,
}

/// The hosts to pin, from `--hosts` or `--hostfile` (read by `read`).
/// The error is the one line to show.
pub fn hosts(
    o: &Options,
    read: impl FnOnce(&Path) -> Result<Vec<hostfile::HostEntry>, String>,
) -> Result<Vec<String>, String> {
    let hosts = match (o.hosts.is_empty(), &o.hostfile) {
        (false, Some(_)) => {
            return Err("--hosts and --hostfile both given; give one or the other".into())
        }
        (true, None) => {
            return Err(
                "no hosts given: pass --hosts h1,h2,h3 or --hostfile FILE (every host of the job, launcher included if it also runs ranks)"
                    .into(),
            )
        }
        (true, Some(file)) => hostfile::merged(&read(file)?, 1).0,
        (false, None) => {
            let mut seen = std::collections::HashSet::new();
            for h in &o.hosts {
                if !seen.insert(h) {
                    return Err(format!("--hosts: {h} is listed twice; give each host once"));
                }
            }
            o.hosts.clone()
        }
    };
    let flag = if o.hostfile.is_some() {
        "--hostfile"
    } else {
        "--hosts"
    };
    for h in &hosts {
        client::check_peer(h).map_err(|e| format!("{flag}: {e}; give host names or addresses"))?;
    }
    if o.port == 0 {
        return Err("--port 0: give the port the workers' sshd will listen on, e.g. 2222".into());
    }
    Ok(hosts)
}

/// Write the directory; returns the exit code: 0, 2 for bad input (one
/// error line), 1 when the files cannot be written.
pub fn run(o: Options) -> Result<i32> {
    let hosts = match hosts(&o, hostfile::read_given) {
        Ok(hosts) => hosts,
        Err(line) => return Ok(bad_input(&line)),
    };
    let out = prepare_dir(&o.out)?;
    let key = sshkey::generate("mpijob-keygen");
    let files = sshclient::ssh_dir_files(&key, &hosts, o.port, &out);
    let existing: Vec<&str> = files
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| out.join(name).symlink_metadata().is_ok())
        .collect();
    if !existing.is_empty() && !o.force {
        return Ok(bad_input(&format!(
            "--out {}: already holds {}; keep them, choose another --out, or pass --force to replace them (hosts that still hold the old key will refuse the new one)",
            out.display(),
            existing.join(", ")
        )));
    }
    for (name, text) in &files {
        let path = out.join(name);
        files::write_file(&path, text.as_bytes(), 0o600)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), io_reason(&e)))?;
    }
    let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    println!(
        "wrote {} (mode 0700; files 0600): {}",
        out.display(),
        names.join(", ")
    );
    println!(
        "pinned the new key as the host key of {} on port {}",
        hosts.join(", "),
        o.port
    );
    print!("{}", next_steps(&out, &hosts, o.port));
    Ok(0)
}

fn bad_input(line: &str) -> i32 {
    tracing::error!("{line}");
    2
}

/// What to do with the directory: the commands, ready to copy.
pub fn next_steps(out: &Path, hosts: &[String], port: u16) -> String {
    let dir = out.display();
    let parent = out.parent().unwrap_or(Path::new("/")).display();
    let first = hosts.first().map(String::as_str).unwrap_or("h1");
    format!(
        "next:\n\
         \x20 1. copy {dir} to the same path on every host (it holds the private key), e.g.\n\
         \x20      ssh {first} mkdir -p -m 0700 {parent} && scp -rp {dir} {first}:{parent}/\n\
         \x20 2. on each worker host:\n\
         \x20      mpijob-agent worker --ssh-dir {dir} --port {port}\n\
         \x20 3. on the launcher host:\n\
         \x20      mpijob-agent launcher --hosts {} --ssh-dir {dir} --port {port} -- ./your-mpi-program\n\
         \x20    or, for this machine's user, plain ssh: ssh -F {dir}/config {first}\n",
        hosts.join(",")
    )
}

/// Make `out` (and its parents) as a private directory of ours, and return
/// its absolute path, which the client config names.
fn prepare_dir(out: &Path) -> Result<PathBuf> {
    let out = if out.is_absolute() {
        out.to_path_buf()
    } else {
        std::env::current_dir()
            .context("finding the current directory")?
            .join(out)
    };
    match fs::symlink_metadata(&out) {
        Ok(m) if !m.is_dir() => bail!(
            "--out {}: exists and is not a directory; choose a directory",
            out.display()
        ),
        Ok(m) => {
            if m.uid() != nix::unistd::getuid().as_raw() {
                bail!(
                    "--out {}: owned by uid {}, not by this user; choose a directory of your own",
                    out.display(),
                    m.uid()
                );
            }
            if m.mode() & 0o077 != 0 {
                fs::set_permissions(&out, fs::Permissions::from_mode(0o700)).map_err(|e| {
                    anyhow::anyhow!(
                        "--out {}: cannot make it 0700: {}",
                        out.display(),
                        io_reason(&e)
                    )
                })?;
            }
        }
        Err(_) => {
            if let Some(parent) = out.parent() {
                fs::create_dir_all(parent).map_err(|e| {
                    anyhow::anyhow!(
                        "--out {}: cannot create {}: {}",
                        out.display(),
                        parent.display(),
                        io_reason(&e)
                    )
                })?;
            }
            files::create_private_dir(&out).map_err(|e| {
                anyhow::anyhow!(
                    "--out {}: cannot create it: {}",
                    out.display(),
                    io_reason(&e)
                )
            })?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            hosts: vec!["h1".into(), "10.0.0.2".into()],
            hostfile: None,
            port: 2222,
            out: "/tmp/x".into(),
            force: false,
        }
    }

    fn no_file(p: &Path) -> Result<Vec<hostfile::HostEntry>, String> {
        panic!("{} read without --hostfile", p.display())
    }

    #[test]
    fn hosts_come_from_the_flag_or_the_hostfile() {
        assert_eq!(hosts(&opts(), no_file).unwrap(), ["h1", "10.0.0.2"]);
        let mut o = opts();
        o.hosts = Vec::new();
        o.hostfile = Some("hosts".into());
        let read = |_: &Path| hostfile::parse("n1 slots=2\nn2:4\nn1\n");
        assert_eq!(hosts(&o, read).unwrap(), ["n1", "n2"]);
    }

    #[test]
    fn bad_hosts_are_named() {
        let mut o = opts();
        o.hosts.push("h1".into());
        assert_eq!(
            hosts(&o, no_file).unwrap_err(),
            "--hosts: h1 is listed twice; give each host once"
        );
        o.hosts = vec!["-oProxyCommand=x".into()];
        assert_eq!(
            hosts(&o, no_file).unwrap_err(),
            "--hosts: \"-oProxyCommand=x\" starts with '-'; give host names or addresses"
        );
        o.hosts = vec!["h1 h2".into()];
        assert!(hosts(&o, no_file).unwrap_err().contains("contains ' '"));
        o.hosts = Vec::new();
        assert!(hosts(&o, no_file)
            .unwrap_err()
            .starts_with("no hosts given"));
        o.hosts = vec!["h1".into()];
        o.hostfile = Some("f".into());
        assert_eq!(
            hosts(&o, no_file).unwrap_err(),
            "--hosts and --hostfile both given; give one or the other"
        );
        let mut o = opts();
        o.port = 0;
        assert!(hosts(&o, no_file).unwrap_err().starts_with("--port 0"));
    }

    #[test]
    fn next_steps_name_the_directory_the_hosts_and_the_port() {
        let text = next_steps(
            Path::new("/etc/mpijob/job"),
            &["n1".into(), "n2".into()],
            2222,
        );
        assert!(
            text.contains("scp -rp /etc/mpijob/job n1:/etc/mpijob/"),
            "{text}"
        );
        assert!(text.contains("mpijob-agent worker --ssh-dir /etc/mpijob/job --port 2222"));
        assert!(text.contains(
            "mpijob-agent launcher --hosts n1,n2 --ssh-dir /etc/mpijob/job --port 2222 -- "
        ));
    }
}
