//! `mpijob-agent worker` against the real OpenSSH sshd: plain ssh in as
//! root and as uid 1000 with host keys pinned, signals, exit codes, zombies.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

fn port_args(port: u16, listen: &str) -> Vec<String> {
    vec![
        "--port".into(),
        port.to_string(),
        "--listen".into(),
        listen.into(),
    ]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn root_runs_hostname_over_plain_ssh_and_a_different_host_key_is_refused() {
    require_tools();
    let tmp = TempDir::new("root-ssh");
    let secret = secret_dir(&tmp, "secret", None);
    let port = free_port();
    let mut a = port_args(port, "127.0.0.1");
    a.extend(["--peers".into(), "127.0.0.*".into()]);
    let launch = Launch {
        sandbox_hostname: Some("mpijob-root-w0".into()),
        ..Default::default()
    };
    let mut agent = Agent::start(&launch, &tmp.path("state"), &secret, &args(&a));
    agent.wait_ready();

    // Plain ssh, no options: port, identity and host key pin come from the
    // client config the agent installed. ~/.ssh is a read-only mount here,
    // so that is the system drop-in.
    let out = agent.run_inside(false, &["ssh", "127.0.0.1", "hostname"]);
    assert!(out.status.success(), "{out:?}\nagent log:\n{}", agent.log());
    assert_eq!(stdout(&out), "mpijob-root-w0\n");
    assert!(
        agent
            .log()
            .contains("config=/etc/ssh/ssh_config.d/50-mpijob.conf"),
        "{}",
        agent.log()
    );
    let hosts = fs::read_to_string(tmp.path("state/known_hosts")).unwrap();
    let public = fs::read_to_string(secret.join("id_ed25519.pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    assert_eq!(hosts, format!("[127.0.0.*]:{port} {}\n", public.join(" ")));

    // Another sshd with another host key where the pin says the job key.
    let other = secret_dir(&tmp, "other", None);
    let b_args = port_args(port, "127.0.0.2");
    let mut impostor = Agent::start(
        &Launch::default(),
        &tmp.path("state-b"),
        &other,
        &args(&b_args),
    );
    impostor.wait_ready();
    let out = agent.run_inside(false, &["ssh", "127.0.0.2", "hostname"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(err.contains("Host key verification failed."), "{err}");
    assert_eq!(stdout(&out), "");

    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(15)).code(), Some(143));
    impostor.signal(Signal::SIGTERM);
    assert_eq!(
        impostor.wait_exit(Duration::from_secs(15)).code(),
        Some(143)
    );
}

#[test]
fn uid_1000_runs_hostname_over_plain_ssh() {
    require_tools();
    let user = test_user();
    let tmp = TempDir::new("user-ssh");
    // Root-owned and group-readable, as a Secret with fsGroup 1000.
    let secret = secret_dir(&tmp, "secret", Some(1000));
    let port = free_port();
    let mut a = port_args(port, "127.0.0.1");
    a.extend(["--peers".into(), "127.0.0.1,localhost".into()]);
    let launch = Launch {
        unprivileged: true,
        sandbox_hostname: Some("mpijob-user-w0".into()),
        ..Default::default()
    };
    let state = tmp.path("state");
    let mut agent = Agent::start(&launch, &state, &secret, &args(&a));
    agent.wait_ready();

    let out = agent.run_inside(true, &["ssh", "127.0.0.1", "id -un; hostname"]);
    assert!(out.status.success(), "{out:?}\nagent log:\n{}", agent.log());
    assert_eq!(stdout(&out), format!("{}\nmpijob-user-w0\n", user.name));

    // The include sits in the user's own ~/.ssh/config.
    let config = user.home.join(".ssh/config");
    let out = agent.run_inside(true, &["cat", &config.display().to_string()]);
    assert!(
        stdout(&out).starts_with(&format!(
            "# Added by mpijob-agent, removed when it exits:\nInclude {}/ssh_config\n",
            state.display()
        )),
        "{out:?}"
    );
    // Keys are copied private to the user.
    for f in ["job_key", "authorized_keys", "known_hosts", "ssh_config"] {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(state.join(f)).unwrap();
        assert_eq!((m.mode() & 0o777, m.uid()), (0o600, 1000), "{f}");
    }

    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(15)).code(), Some(143));
}

fn plain_agent(tmp: &TempDir, extra: &[&str]) -> (Agent, u16) {
    let secret = secret_dir(tmp, "secret", None);
    let port = free_port();
    let a = port_args(port, "127.0.0.1");
    let mut a = args(&a);
    a.extend(extra);
    let agent = Agent::start(&Launch::default(), &tmp.path("state"), &secret, &a);
    (agent, port)
}

#[test]
fn sigterm_stops_sshd_and_exits_143() {
    require_tools();
    let tmp = TempDir::new("sigterm");
    let (mut agent, port) = plain_agent(&tmp, &[]);
    agent.wait_ready();
    let probe = std::process::Command::new(AGENT)
        .args(["probe", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert!(probe.status.success(), "{probe:?}");
    assert!(stdout(&probe).starts_with("SSH-2.0-OpenSSH"), "{probe:?}");
    let sshd = agent.sshd_pid();
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(5)).code(), Some(143));
    assert!(
        !Path::new(&format!("/proc/{sshd}")).exists(),
        "sshd {sshd} survived"
    );
    assert!(agent.log().contains("received SIGTERM: passing it to sshd"));
    // The probe now fails.
    let probe = std::process::Command::new(AGENT)
        .args(["probe", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(1), "{probe:?}");
}

#[test]
fn sshd_killed_by_sigkill_gives_137() {
    require_tools();
    let tmp = TempDir::new("sigkill");
    let (mut agent, _) = plain_agent(&tmp, &[]);
    agent.wait_ready();
    let sshd = agent.sshd_pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sshd), Signal::SIGKILL).unwrap();
    assert_eq!(agent.wait_exit(Duration::from_secs(5)).code(), Some(137));
    assert!(
        agent.log().contains("sshd was killed by SIGKILL"),
        "{}",
        agent.log()
    );
}

#[test]
fn sigterm_becomes_sigkill_after_the_grace_period() {
    require_tools();
    let tmp = TempDir::new("grace");
    // An "sshd" that passes the config check and then ignores SIGTERM.
    let fake = tmp.path("stubborn-sshd");
    let deaf = tmp.path("deaf");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" -t \"*) exit 0;; esac\n\
             trap '' TERM\n: > {}\nexec sleep 30\n",
            deaf.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let fake = fake.display().to_string();
    let (mut agent, _) = plain_agent(&tmp, &["--sshd-path", &fake, "--grace-period", "500ms"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !deaf.exists() {
        assert!(Instant::now() < deadline, "{}", agent.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Instant::now();
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(5)).code(), Some(137));
    // The grace period was given; how soon after it sshd died is a
    // benchmark's question, not a test's (no upper bound on time here).
    let took = sent.elapsed();
    eprintln!("SIGTERM to exit 137: {took:?}");
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(agent.log().contains("sending SIGKILL"), "{}", agent.log());
}

#[test]
fn a_non_empty_finish_file_stops_sshd_and_exits_0() {
    require_tools();
    let tmp = TempDir::new("finish");
    let (mut agent, _) = plain_agent(&tmp, &[]);
    agent.wait_ready();
    let sshd = agent.sshd_pid();
    // The downward API file exists but is empty until the annotation is set.
    let finish = tmp.path("state.finished");
    fs::write(&finish, "").unwrap();
    let exit = common::exit_within(&mut agent.child, Duration::from_millis(600));
    assert_eq!(exit, None, "{}", agent.log());
    fs::write(&finish, "true").unwrap();
    assert_eq!(agent.wait_exit(Duration::from_secs(5)).code(), Some(0));
    assert!(!Path::new(&format!("/proc/{sshd}")).exists());
    assert!(agent.log().contains("the job is finished: stopping sshd"));
}

/// ssh in, leave five orphans behind, and return their pids.
fn make_orphans(agent: &Agent, port: u16) -> Vec<i32> {
    let mut cmd = ssh_with_key(&agent.state.join("job_key"), port, "127.0.0.1");
    cmd.push("for i in 1 2 3 4 5; do sleep 1 </dev/null >/dev/null 2>&1 & echo $!; done".into());
    let out = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}\n{}", agent.log());
    stdout(&out)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

#[test]
fn orphaned_grandchildren_are_adopted_and_reaped() {
    require_tools();
    let tmp = TempDir::new("orphans");
    let (mut agent, port) = plain_agent(&tmp, &[]);
    agent.wait_ready();
    let me = agent.pid();
    let orphans = make_orphans(&agent, port);
    assert_eq!(orphans.len(), 5);
    for &pid in &orphans {
        // The session that started them is gone: the subreaper adopted them.
        let (_, ppid) = stat(pid).expect("the orphan should still sleep");
        assert_eq!(ppid, me, "orphan {pid} was not adopted by the agent");
    }
    // Each sleeps 1 s; once they end, the agent must reap them (a zombie
    // keeps its /proc entry, so "gone" means reaped).
    wait_until("the orphans reaped", Duration::from_secs(30), || {
        orphans.iter().all(|&pid| stat(pid).is_none())
    });
    assert_eq!(zombies_of(me), Vec::<i32>::new());
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(5)).code(), Some(143));
}

#[test]
fn as_pid_1_it_reaps_orphans_and_passes_sigterm_on() {
    require_tools();
    let tmp = TempDir::new("pid1");
    let secret = secret_dir(&tmp, "secret", None);
    let port = free_port();
    let a = port_args(port, "127.0.0.1");
    let launch = Launch {
        pid1: true,
        ..Default::default()
    };
    let mut agent = Agent::start(&launch, &tmp.path("state"), &secret, &args(&a));
    agent.wait_ready();
    let init = agent.pid();
    assert!(
        fs::read_to_string(format!("/proc/{init}/status"))
            .unwrap()
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")),
        "the agent is not PID 1 of its namespace"
    );
    // Pids printed inside the namespace mean nothing here: count the
    // agent's sleeping children instead.
    make_orphans(&agent, port);
    let sleepers = || {
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| {
                stat(pid).is_some_and(|(_, ppid)| ppid == init)
                    && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
            })
            .count()
    };
    // A forked shell turns into `sleep` only at its exec: give it a moment.
    let deadline = Instant::now() + Duration::from_millis(800);
    while sleepers() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sleepers(), 5);
    wait_until("the orphans reaped", Duration::from_secs(30), || {
        sleepers() == 0 && zombies_of(init).is_empty()
    });
    agent.signal(Signal::SIGTERM);
    // unshare --fork exits with the code of its child, the agent.
    assert_eq!(agent.wait_exit(Duration::from_secs(5)).code(), Some(143));
}

/// The environment rule: a command run over ssh gets the environment the
/// agent started with (the container's), PATH and LD_LIBRARY_PATH first of
/// all, but not what sshd sets for the session itself, nor the agent's
/// own settings, nor a value sshd's config cannot carry (named in the log).
/// The log names the variables, never their values.
#[test]
fn commands_over_ssh_get_the_containers_environment() {
    require_tools();
    let tmp = TempDir::new("session-env");
    let secret = secret_dir(&tmp, "secret", None);
    let port = free_port();
    let a = port_args(port, "127.0.0.1");
    let path = "/opt/image-mpi/bin:/usr/local/bin:/usr/bin:/bin";
    let env = [
        ("PATH", path),
        ("LD_LIBRARY_PATH", "/opt/image-mpi/lib"),
        (
            "IMAGE_NOTE",
            "set by the image's ENV, with 'spaces' and $signs #",
        ),
        ("HOME", "/nowhere"),
        ("SSH_AUTH_SOCK", "/tmp/agent.sock"),
        ("MPIJOB_EXTRA_SETTING", "agent-only"),
        ("QUOTED", "say \"hi\""),
    ];
    let launch = Launch {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let mut agent = Agent::start(&launch, &tmp.path("state"), &secret, &args(&a));
    agent.wait_ready();
    let mut ssh = ssh_with_key(&tmp.path("state/job_key"), port, "127.0.0.1");
    ssh.push(
        "printf '%s|' \"$PATH\" \"$LD_LIBRARY_PATH\" \"$IMAGE_NOTE\" \"$HOME\" \
         \"${SSH_AUTH_SOCK-unset}\" \"${MPIJOB_EXTRA_SETTING-unset}\" \"${QUOTED-unset}\""
            .into(),
    );
    let out = std::process::Command::new(&ssh[0])
        .args(&ssh[1..])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}\n{}", agent.log());
    let got = stdout(&out);
    let got: Vec<&str> = got.split('|').collect();
    // A login shell's rc file may put more in front of PATH; ours is whole.
    assert!(got[0].ends_with(path), "{got:?}");
    assert_eq!(
        got[1..7],
        [
            "/opt/image-mpi/lib",
            "set by the image's ENV, with 'spaces' and $signs #",
            "/root",
            "unset",
            "unset",
            "unset",
        ]
    );
    let log = agent.log();
    assert!(
        log.contains("commands run over ssh get this container's environment (")
            && log.contains(": PATH LD_LIBRARY_PATH "),
        "{log}"
    );
    assert!(
        log.contains("not passed to ssh sessions, since sshd's config cannot carry their values")
            && log.contains(": QUOTED;"),
        "{log}"
    );
    assert!(
        !log.contains("with 'spaces'") && !log.contains("say \\\"hi"),
        "{log}"
    );
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(15)).code(), Some(143));
}

/// OpenSSH before 8.7 has no SetEnv: its `sshd -t` refuses the line. The
/// worker then starts sshd without it and says what that costs. The old
/// sshd is played by a wrapper that refuses any config with SetEnv, as
/// such an sshd does, and runs the real one otherwise.
#[test]
fn an_sshd_without_set_env_still_starts_and_the_log_says_what_is_lost() {
    require_tools();
    let tmp = TempDir::new("old-sshd");
    let old = tmp.path("old-sshd");
    fs::write(
        &old,
        format!(
            "#!/bin/sh\n# OpenSSH 8.2 refuses SetEnv.\nfor a; do case $prev in -f) conf=$a;; esac; prev=$a; done\n\
             if grep -q '^SetEnv ' \"$conf\"; then\n  echo \"$conf: line 16: Bad configuration option: SetEnv\" >&2\n  \
             echo \"$conf: terminating, 1 bad configuration options\" >&2\n  exit 255\nfi\nexec {SSHD} \"$@\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).unwrap();
    let secret = secret_dir(&tmp, "secret", None);
    let port = free_port();
    let mut a = port_args(port, "127.0.0.1");
    let old_arg = old.display().to_string();
    a.extend(["--sshd-path".into(), old_arg]);
    let mut agent = Agent::start(&Launch::default(), &tmp.path("state"), &secret, &args(&a));
    agent.wait_ready();
    let mut ssh = ssh_with_key(&tmp.path("state/job_key"), port, "127.0.0.1");
    ssh.push("echo ok".into());
    let out = std::process::Command::new(&ssh[0])
        .args(&ssh[1..])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "ok\n", "{out:?}\n{}", agent.log());
    let log = agent.log();
    assert!(
        log.contains("is older than OpenSSH 8.7 and has no SetEnv")
            && log.contains("-x PATH -x LD_LIBRARY_PATH"),
        "{log}"
    );
    let config = fs::read_to_string(tmp.path("state/sshd_config")).unwrap();
    assert!(!config.contains("SetEnv"), "{config}");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(15)).code(), Some(143));
}
