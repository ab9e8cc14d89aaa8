//! Hosts on one machine, from iproute2: a bridge with no address on this
//! host, and per host a network namespace joined to it by a veth pair, with
//! one address in 198.18.0.0/15 on its `eth0`. No forwarding, no NAT, no
//! route out: a host reaches the other hosts of its bridge and nothing else.
//!
//! Local mode builds its hosts with this module, and so does the launcher
//! tests' harness (`agent/tests/common/hosts.rs` includes this file), so
//! this file uses only std, libc and nix.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// iproute2's `ip`.
pub const IP: &str = "/usr/sbin/ip";
/// Where iproute2 keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// One namespaced host: its namespace, the bridge-side end of its veth pair,
/// and its address with the prefix length (`198.18.0.10/16`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub netns: String,
    pub veth: String,
    pub cidr: String,
}

/// The `ip -batch` lines that run in this host's namespace: the address on
/// `eth0`, and `eth0` and `lo` up.
pub fn inside_commands(link: &Link) -> String {
    format!(
        "addr add {} dev eth0\nlink set eth0 up\nlink set lo up\n",
        link.cidr
    )
}

/// The `ip -batch` lines, run on this host, that create `bridge` (when
/// given) and every host's namespace and veth pair, attached to `bridge`.
pub fn outside_commands(bridge: &str, create_bridge: bool, links: &[Link]) -> String {
    let mut s = String::new();
    if create_bridge {
        s += &format!("link add {bridge} type bridge\nlink set {bridge} up\n");
    }
    for l in links {
        s += &format!(
            "netns add {ns}\nlink add {veth} type veth peer name eth0 netns {ns}\n\
             link set {veth} master {bridge} up\n",
            ns = l.netns,
            veth = l.veth
        );
    }
    s
}

/// The `ip -batch` lines that delete the namespaces and the bridge (a
/// namespace's veth pair goes with it).
pub fn delete_commands(bridge: Option<&str>, netns: &[String]) -> String {
    let mut s = String::new();
    for ns in netns {
        s += &format!("netns del {ns}\n");
    }
    if let Some(b) = bridge {
        s += &format!("link del {b}\n");
    }
    s
}

/// [`delete_commands`] as shell commands to show a person:
/// `ip netns del …; ip link del …`.
pub fn delete_command_line(bridge: Option<&str>, netns: &[String]) -> String {
    delete_commands(bridge, netns)
        .lines()
        .map(|l| format!("ip {l}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Start `ip [-n netns] -force -batch -` on `commands`, which go to its
/// stdin, closed again here. `-force` goes on after a failed line, so that
/// a clean-up deletes whatever is left. Whoever owns the process's waits
/// waits for it, then takes [`ip_verdict`].
pub fn ip_start(netns: Option<&str>, commands: &str) -> Result<Child, String> {
    let mut cmd = Command::new(IP);
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        format!("cannot run {IP}: {e}; install iproute2 (apt-get install -y iproute2)")
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(commands.as_bytes());
    }
    Ok(child)
}

/// How an [`ip_start`] went: the error is the command and what `ip` said.
pub fn ip_verdict(netns: Option<&str>, success: bool, stderr: &[u8]) -> Result<(), String> {
    if success {
        Ok(())
    } else {
        Err(format!(
            "ip{} -batch failed: {}",
            netns.map(|n| format!(" -n {n}")).unwrap_or_default(),
            String::from_utf8_lossy(stderr).trim().replace('\n', "; ")
        ))
    }
}

/// The identity (device, inode) of a named network namespace.
pub fn netns_identity(name: &str) -> Option<(u64, u64)> {
    let m = fs::metadata(format!("{NETNS_DIR}/{name}")).ok()?;
    Some((m.dev(), m.ino()))
}

/// Processes, other than this one, in any of these network namespaces: one
/// pass over /proc, however many namespaces.
pub fn pids_in_netns(namespaces: &[(u64, u64)]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted: std::collections::HashSet<(u64, u64)> = namespaces.iter().copied().collect();
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| wanted.contains(&(m.dev(), m.ino())))
        })
        .collect()
}

/// SIGKILL every process in these namespaces until none is left (or
/// `limit` passes); `reap` is called between rounds, so that the caller
/// can collect its own children.
pub fn kill_all_in(namespaces: &[(u64, u64)], limit: Duration, mut reap: impl FnMut()) {
    let deadline = Instant::now() + limit;
    loop {
        let pids = pids_in_netns(namespaces);
        for &pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        reap();
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
