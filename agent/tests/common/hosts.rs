//! Several real hosts on one machine: network namespaces joined by veth
//! pairs to a bridge, each with its own 198.18.0.0/15 address, hostname
//! (UTS namespace) and resolv.conf, and a real dnsmasq serving the test
//! names. Nothing is routed: the bridge has no address on this host, there
//! is no forwarding and no NAT.
//!
//! Everything a [`Net`] made is removed when it drops, test failure or not.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{venv, venv_env, TempDir, VENV_INTEL};

/// The product's namespace and bridge code (local mode builds its hosts
/// with it too).
#[path = "../../src/local/net.rs"]
pub mod net;

pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";
pub use net::IP;

/// `ip -batch`, waited for by std: the tests have no reaper of their own.
pub fn ip_batch(netns: Option<&str>, commands: &str) -> Result<(), String> {
    let out = net::ip_start(netns, commands)?
        .wait_with_output()
        .map_err(|e| format!("{IP}: {e}"))?;
    net::ip_verdict(netns, out.status.success(), &out.stderr)
}
/// The cluster domain the test DNS serves; the hosts' resolv.conf search
/// it, like a pod's.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Panic unless the tools are here, naming the packages.
pub fn require_net_tools() {
    for (tool, package) in [
        (IP, "iproute2"),
        (DNSMASQ, "dnsmasq-base"),
        ("/usr/bin/unshare", "util-linux"),
        ("/usr/bin/getent", "libc-bin"),
        ("/usr/sbin/sshd", "openssh-server"),
        ("/usr/bin/ssh", "openssh-client"),
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: the launcher tests build hosts from network namespaces and \
             run real DNS and sshd; install it with `apt-get install -y {package}`"
        );
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the launcher tests must run as root: they create network namespaces"
    );
}

/// Run a command, panic with its output unless it succeeds.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    run(Command::new(IP).args(args))
}

/// One host: a network namespace with one address and a hostname.
#[derive(Debug, Clone)]
pub struct Host {
    pub netns: String,
    pub addr: String,
    pub hostname: String,
}

pub struct Net {
    pub tmp: TempDir,
    id: String,
    /// The third octet of this net's /24 in 198.18.0.0/15.
    net: String,
    bridge: String,
    hosts: Vec<Host>,
    dns: Option<Host>,
    dnsmasq: Option<Child>,
    hostsdir: PathBuf,
    next: u32,
}

impl Net {
    /// A bridge and a DNS host running dnsmasq. `search` is the list of
    /// search domains every host's resolv.conf gets.
    pub fn new(tag: &str) -> Net {
        require_net_tools();
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let id = format!("{:x}", ((pid as u64) << 5 | (n as u64 & 31)) & 0xffff_ffff);
        let tmp = TempDir::new(&format!("net-{tag}"));
        let hostsdir = tmp.path("dns-hosts");
        fs::create_dir(&hostsdir).unwrap();
        let mut net = Net {
            tmp,
            net: format!("198.18.{}", (pid as usize * 7 + n) % 250 + 1),
            bridge: format!("m{id}b"),
            id,
            hosts: Vec::new(),
            dns: None,
            dnsmasq: None,
            hostsdir,
            next: 10,
        };
        ip_batch(None, &net::outside_commands(&net.bridge, true, &[])).unwrap();
        let dns = net.make_host("mpijob-dns", 1);
        let mut cmd = net.command(&dns, DNSMASQ);
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
            "--log-facility=-",
        ])
        .arg(format!("--listen-address={}", dns.addr))
        .arg(format!("--hostsdir={}", net.hostsdir.display()))
        .arg(format!(
            "--pid-file={}",
            net.tmp.path("dnsmasq.pid").display()
        ))
        // Answer for the test zones here (NXDOMAIN when absent), ask no one.
        .arg("--local=/svc/")
        .arg(format!("--local=/{CLUSTER_DOMAIN}/"))
        .arg("--no-negcache")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        net.dnsmasq = Some(cmd.spawn().expect("starting dnsmasq"));
        net.dns = Some(dns);
        net.publish("mpijob-dns-ready", "198.18.255.254");
        let probe = net.make_host("mpijob-probe", 2);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new(IP)
                .args(["netns", "exec", &probe.netns, "getent", "hosts"])
                .arg(format!("mpijob-dns-ready.{CLUSTER_DOMAIN}"))
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            assert!(Instant::now() < deadline, "dnsmasq does not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
        net
    }

    /// The address of host number `i` in this net.
    pub fn addr(&self, i: u32) -> String {
        format!("{}.{}", self.net, i)
    }

    fn make_host(&mut self, hostname: &str, i: u32) -> Host {
        let host = Host {
            netns: format!("mj-{}-{i}", self.id),
            addr: self.addr(i),
            hostname: hostname.to_string(),
        };
        let link = net::Link {
            netns: host.netns.clone(),
            veth: format!("m{}h{i}", self.id),
            cidr: format!("{}/24", host.addr),
        };
        // Record it first, so that Drop removes it whatever fails next.
        self.hosts.push(host.clone());
        let outside = net::outside_commands(&self.bridge, false, std::slice::from_ref(&link));
        ip_batch(None, &outside).unwrap();
        ip_batch(Some(&host.netns), &net::inside_commands(&link)).unwrap();
        let n = &host.netns;
        // `ip netns exec` bind-mounts these over /etc.
        let etc = PathBuf::from("/etc/netns").join(n);
        fs::create_dir_all(&etc).unwrap();
        fs::write(
            etc.join("resolv.conf"),
            format!(
                "nameserver {}\nsearch team.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\noptions ndots:5 timeout:1 attempts:2\n",
                self.addr(1)
            ),
        )
        .unwrap();
        host
    }

    /// A new host with this hostname.
    pub fn add_host(&mut self, hostname: &str) -> Host {
        let i = self.next;
        self.next += 1;
        self.make_host(hostname, i)
    }

    /// Give `host` one more address (for many sshds in one namespace).
    pub fn add_address(&mut self, host: &Host) -> String {
        let i = self.next;
        self.next += 1;
        let addr = self.addr(i);
        ip(&[
            "-n",
            &host.netns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        addr
    }

    /// Give `host` `n` more addresses from 198.19.0.0/16, for more hosts
    /// than this net's /24 holds. Every host made so far reaches them
    /// through `host`'s first address, as a node's pods are reached across
    /// a cluster: on the link, 1024 addresses would overflow the others'
    /// neighbour tables (gc_thresh3 is 1024). Each net has its own bridge,
    /// so nets never clash.
    pub fn add_addresses(&mut self, host: &Host, n: usize) -> Vec<String> {
        assert!(n <= 250 * 250, "at most 62500 addresses");
        let addrs: Vec<String> = (0..n)
            .map(|i| format!("198.19.{}.{}", i / 250 + 1, i % 250 + 1))
            .collect();
        let commands: String = addrs
            .iter()
            .map(|a| format!("addr add {a}/32 dev eth0\n"))
            .collect();
        ip_batch(Some(&host.netns), &commands).unwrap();
        for other in self.hosts.iter().filter(|h| h.netns != host.netns) {
            let route = format!("route replace 198.19.0.0/16 via {} dev eth0\n", host.addr);
            ip_batch(Some(&other.netns), &route).unwrap();
        }
        addrs
    }

    /// Make each `name.cluster.local` resolve to its `addr`, in one file.
    pub fn publish_all(&self, file: &str, records: &[(String, String)]) {
        let text: String = records
            .iter()
            .map(|(name, addr)| format!("{addr} {name}.{CLUSTER_DOMAIN}\n"))
            .collect();
        let tmp = self.tmp.path(&format!("{file}.hosts"));
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, self.hostsdir.join(file)).unwrap();
    }

    /// Make `name.cluster.local` resolve to `addr` (dnsmasq watches the
    /// directory and reads new files at once).
    pub fn publish(&self, name: &str, addr: &str) {
        let file = self.hostsdir.join(name);
        let tmp = self.tmp.path(&format!("{name}.hosts"));
        fs::write(&tmp, format!("{addr} {name}.{CLUSTER_DOMAIN}\n")).unwrap();
        fs::rename(&tmp, file).unwrap();
    }

    /// `program` inside `host`: its network namespace and resolv.conf, and
    /// a UTS namespace with its hostname.
    pub fn command(&self, host: &Host, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(IP);
        cmd.args(["netns", "exec", &host.netns, "unshare", "--uts", "--"])
            .args(["sh", "-c", "hostname \"$0\" && exec \"$@\""])
            .arg(&host.hostname)
            .arg(program);
        cmd
    }

    /// Processes in `host`'s network namespace: (pid, command line).
    pub fn processes_in(&self, host: &Host) -> Vec<(i32, String)> {
        net::netns_identity(&host.netns)
            .map(processes_in_netns)
            .unwrap_or_default()
    }

    fn cleanup(&mut self) {
        // Every process in our namespaces, dnsmasq included.
        let ids: Vec<(u64, u64)> = self
            .hosts
            .iter()
            .filter_map(|h| net::netns_identity(&h.netns))
            .collect();
        net::kill_all_in(&ids, Duration::from_secs(1), || {});
        if let Some(mut d) = self.dnsmasq.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let names: Vec<String> = self.hosts.iter().map(|h| h.netns.clone()).collect();
        let _ = ip_batch(None, &net::delete_commands(Some(&self.bridge), &names));
        for host in &self.hosts {
            let _ = fs::remove_dir_all(PathBuf::from("/etc/netns").join(&host.netns));
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Processes, other than this one, whose network namespace is `ns`:
/// (pid, command line).
pub fn processes_in_netns(ns: (u64, u64)) -> Vec<(i32, String)> {
    net::pids_in_netns(&[ns])
        .into_iter()
        .filter_map(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")))
        })
        .collect()
}

/// Run `f` on a thread inside the network namespace `netns`; the rest of
/// this process stays outside. Sockets it opens stay in that namespace.
pub fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let ns = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on an open namespace file changes only this thread.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// A child whose stdout and stderr are collected (and echoed to ours).
pub struct Proc {
    pub child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    pub started: Instant,
}

fn collect<R: Read + Send + 'static>(mut r: R, sink: Arc<Mutex<String>>, echo: bool) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if echo {
                eprint!("{text}");
            }
            sink.lock().unwrap().push_str(&text);
        }
    });
}

impl Proc {
    pub fn spawn(cmd: Command) -> Proc {
        Proc::start(cmd, true)
    }

    /// Without echoing its output (for benchmarks).
    pub fn spawn_quiet(cmd: Command) -> Proc {
        Proc::start(cmd, false)
    }

    fn start(mut cmd: Command, echo: bool) -> Proc {
        cmd.env("RUST_LOG", "info")
            .env_remove("MPIJOB_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let (stdout, stderr) = (Arc::default(), Arc::default());
        collect(child.stdout.take().unwrap(), Arc::clone(&stdout), echo);
        collect(child.stderr.take().unwrap(), Arc::clone(&stderr), echo);
        Proc {
            child,
            stdout,
            stderr,
            started,
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until stderr contains `needle`; panic after `limit` or exit.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.stderr().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("exited with {status} before {needle:?}:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} after {limit:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let stderr = self.stderr.clone();
        super::wait_child(&mut self.child, limit, || stderr.lock().unwrap().clone())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An MPI installation as `--mpi-home` sees it: `bin/` with the Debian
/// binaries of one implementation under their generic names, or, for
/// `intel`, the venv with Intel MPI from PyPI (run it with
/// [`mpi_env`]).
pub fn mpi_home(tmp: &TempDir, which: &str) -> PathBuf {
    if which == "intel" {
        return venv(VENV_INTEL);
    }
    let home = tmp.path(which);
    let bin = home.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let links: &[(&str, &str)] = match which {
        "openmpi" => &[
            ("mpirun", "/usr/bin/mpirun.openmpi"),
            ("mpicc", "/usr/bin/mpicc.openmpi"),
            ("orted", "/usr/bin/orted"),
        ],
        "mpich" => &[
            ("mpirun", "/usr/bin/mpirun.mpich"),
            ("mpicc", "/usr/bin/mpicc.mpich"),
            ("hydra_pmi_proxy", "/usr/bin/hydra_pmi_proxy"),
        ],
        _ => panic!("unknown MPI {which}"),
    };
    for (name, target) in links {
        assert!(
            Path::new(target).exists(),
            "{target} is missing: install openmpi-bin libopenmpi-dev mpich libmpich-dev"
        );
        std::os::unix::fs::symlink(target, bin.join(name)).unwrap();
    }
    home
}

/// The environment MPI `which` (as [`mpi_home`] names it) runs with: none
/// for Debian's, the venv's for Intel MPI.
pub fn mpi_env(which: &str) -> Vec<(String, String)> {
    match which {
        "intel" => venv_env(&venv(VENV_INTEL)),
        _ => Vec::new(),
    }
}

/// The test MPI program: each rank prints its rank and `gethostname()`;
/// `fail` makes the last rank exit 3 after a barrier, `abort` makes it
/// call `MPI_Abort(3)`, `sleep` makes every rank sleep.
pub const HELLO_C: &str = r#"
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    printf("rank %d of %d on %s\n", rank, size, host);
    fflush(stdout);
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "fail") == 0) {
        /* Every rank is past MPI_Init before the last one leaves. */
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == size - 1) {
            exit(3);
        }
        /* No collective after it: MPICH 4.0's Hydra leaves ranks spinning
           in one whose peer has exited, instead of cleaning up. */
        MPI_Finalize();
        return 0;
    }
    if (strcmp(mode, "abort") == 0) {
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == size - 1) {
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
        sleep(600);
    }
    if (strcmp(mode, "sleep") == 0) {
        sleep(600);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return 0;
}
"#;

/// Compile [`HELLO_C`] with `home`'s mpicc into `tmp`.
pub fn compile_hello(tmp: &TempDir, home: &Path, name: &str) -> PathBuf {
    let src = tmp.path("hello.c");
    fs::write(&src, HELLO_C).unwrap();
    let out = tmp.path(name);
    let which = if home.join("bin/impi_info").exists() {
        "intel"
    } else {
        ""
    };
    run(Command::new(home.join("bin/mpicc"))
        .envs(mpi_env(which))
        .arg("-o")
        .arg(&out)
        .arg(&src));
    out
}
