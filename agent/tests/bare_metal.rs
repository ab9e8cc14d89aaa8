//! The README's "Bare metal in five minutes", followed word for word on
//! namespaced hosts (network namespaces with their own hostnames and a real
//! dnsmasq), and the Debian package it installs:
//!
//! - `dpkg -i` installs the package `scripts/build-deb.sh` built, and the
//!   commands then run the packaged `/usr/bin/mpijob-agent`;
//! - each other command runs on its host, and its output must show every
//!   line the README shows (`…` stands for any text);
//! - `systemctl enable --now mpijob-agent-worker` runs the installed unit's
//!   `ExecStart` by hand, with the environment of its `EnvironmentFile`
//!   (there is no systemd here);
//! - `scp` is skipped: the namespaced hosts share one file system;
//! - then `systemd-analyze verify` must accept the unit without a word, and
//!   `dpkg -r` / `dpkg -P` must remove every file.
//!
//! The README's paths `/etc/mpijob/job` and `/opt/mpi-examples/pi` are
//! replaced by the test's own, in the commands and back in their output.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::hosts::{self, Host, Net, Proc};
use common::*;

const README: &str = include_str!("../../README.md");
const SECTION: &str = "## Bare metal in five minutes";
const KEY_DIR: &str = "/etc/mpijob/job";
const PI: &str = "/opt/mpi-examples/pi";
const PACKAGE: &str = "mpijob-agent";
const BINARY: &str = "/usr/bin/mpijob-agent";
const UNIT: &str = "/usr/lib/systemd/system/mpijob-agent-worker.service";
const DEFAULTS: &str = "/etc/default/mpijob-agent-worker";

/// One command of the README and the output it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    host: String,
    command: String,
    output: Vec<String>,
}

/// The `host# command` lines of the section's `console` blocks, each with
/// the lines shown below it.
fn steps(readme: &str) -> Vec<Step> {
    let start = readme
        .find(SECTION)
        .expect("README has the bare-metal section");
    let rest = &readme[start + SECTION.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    for line in section.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_console = t == "```console";
            continue;
        }
        if !in_console || t.is_empty() {
            continue;
        }
        match t.split_once("# ") {
            Some((host, command))
                if host.starts_with("node") && host[4..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                steps.push(Step {
                    host: host.into(),
                    command: command.into(),
                    output: Vec::new(),
                })
            }
            _ => steps
                .last_mut()
                .expect("output after a command")
                .output
                .push(t.into()),
        }
    }
    steps
}

/// Whether `line` is what `want` shows, `…` standing for any text.
fn matches(want: &str, line: &str) -> bool {
    let parts: Vec<&str> = want.split('…').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return line == want;
    }
    if !line.starts_with(first) || line.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &line[first.len()..];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Every shown line (but a lone `…`) must match a line of its own in
/// `output`.
fn check_output(step: &Step, output: &str) {
    let mut lines: Vec<&str> = output.lines().map(str::trim).collect();
    for want in step.output.iter().filter(|w| w.as_str() != "…") {
        let at = lines.iter().position(|l| matches(want, l));
        match at {
            Some(i) => {
                lines.remove(i);
            }
            None => panic!(
                "`{}# {}`: the README shows\n  {want}\nbut the output has no such line:\n{output}",
                step.host, step.command
            ),
        }
    }
}

/// The package, installed for this test and purged at the end, pass or
/// fail.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["-P", PACKAGE]).output();
    }
}

/// The .deb `scripts/build-deb.sh` wrote: `$MPIJOB_DEB`, else the newest
/// in `<target dir>/debian`.
fn built_deb() -> PathBuf {
    if let Some(p) = std::env::var_os("MPIJOB_DEB") {
        return p.into();
    }
    // <target>/debug/mpijob-agent
    let target = Path::new(AGENT).parent().unwrap().parent().unwrap();
    let dir = target.join("debian");
    let newest = fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with("mpijob-agent_") && name.ends_with("_amd64.deb")
            })
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
    });
    newest.unwrap_or_else(|| {
        panic!(
            "no mpijob-agent .deb in {}: build it with scripts/build-deb.sh (scripts/test.sh does), or set MPIJOB_DEB",
            dir.display()
        )
    })
}

fn dpkg(args: &[&str]) -> String {
    let out = Command::new("dpkg").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dpkg {args:?}:\n{text}");
    text
}

/// `KEY=VALUE` lines of an environment file; comments and blanks skipped.
fn environment_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The unit's `KEY=` value.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    let values: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect();
    assert_eq!(values.len(), 1, "{key} once in the unit:\n{unit}");
    values[0]
}

struct Bench {
    net: Net,
    hosts: BTreeMap<String, Host>,
    key_dir: PathBuf,
    pi: PathBuf,
    workers: Vec<Proc>,
}

impl Bench {
    /// README paths to the test's, in a command.
    fn to_test(&self, text: &str) -> String {
        text.replace(KEY_DIR, &self.key_dir.display().to_string())
            .replace(PI, &self.pi.display().to_string())
    }

    /// The test's paths back to the README's, in output.
    fn to_readme(&self, text: &str) -> String {
        let parent = Path::new(KEY_DIR).parent().unwrap();
        text.replace(&self.key_dir.display().to_string(), KEY_DIR)
            .replace(
                &self.key_dir.parent().unwrap().display().to_string(),
                &parent.display().to_string(),
            )
            .replace(&self.pi.display().to_string(), PI)
    }

    fn run(&mut self, step: &Step, deb: &Path) {
        let host = self.hosts[&step.host].clone();
        let words: Vec<&str> = step.command.split_whitespace().collect();
        match words.as_slice() {
            ["dpkg", "-i", file] => {
                assert!(
                    matches("mpijob-agent_…_amd64.deb", file),
                    "the README installs {file}"
                );
                dpkg(&["-i", &deb.display().to_string()]);
                assert!(Path::new(BINARY).exists(), "{BINARY} after dpkg -i");
            }
            ["scp", "-rp", dir, _] => {
                let dir = self.to_test(dir);
                let mode = fs::metadata(&dir).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o700, "{dir} to copy is private");
            }
            ["systemctl", "enable", "--now", unit] => {
                assert_eq!(*unit, "mpijob-agent-worker");
                self.start_worker(&host);
            }
            _ => {
                let mut cmd = self.net.command(&host, "sh");
                cmd.arg("-c")
                    .arg(self.to_test(&step.command))
                    .current_dir(&self.net.tmp.0);
                let mut p = Proc::spawn(cmd);
                let status = p.wait_exit(Duration::from_secs(120));
                let output = self.to_readme(&format!("{}{}", p.stdout(), p.stderr()));
                assert!(
                    status.success(),
                    "`{}# {}` failed ({status}):\n{output}",
                    step.host,
                    step.command
                );
                check_output(step, &output);
                if words.get(1) == Some(&"launcher") {
                    check_ranks(&p.stdout());
                }
            }
        }
    }

    /// The installed unit's ExecStart, with its EnvironmentFile, on `host`.
    fn start_worker(&mut self, host: &Host) {
        let unit = fs::read_to_string(UNIT).expect("the unit is installed");
        let exec = unit_value(&unit, "ExecStart");
        assert!(
            !exec.contains(['$', '%', '"', '\'', ';']),
            "ExecStart is plain words: {exec}"
        );
        let env_file = unit_value(&unit, "EnvironmentFile");
        assert_eq!(env_file, DEFAULTS);
        let mut env = environment_file(&fs::read_to_string(env_file).unwrap());
        assert_eq!(env["MPIJOB_SSH_DIR"], KEY_DIR, "{env_file}");
        assert_eq!(env["MPIJOB_SSH_PORT"], "2222", "{env_file}");
        for v in env.values_mut() {
            *v = self.to_test(v);
        }
        // systemd's RuntimeDirectory=mpijob: one /run/mpijob per host, which
        // the hosts here would share.
        let state = self.net.tmp.path(&format!("run-{}", host.hostname));
        env.insert("MPIJOB_STATE_DIR".into(), state.display().to_string());
        let argv: Vec<&str> = exec.split_whitespace().collect();
        let mut cmd = self.net.command(host, argv[0]);
        cmd.args(&argv[1..]).envs(&env);
        let mut p = Proc::spawn(cmd);
        p.wait_for("ready: sshd accepts connections", Duration::from_secs(10));
        self.workers.push(p);
    }
}

/// pi's `rank r of 4 on host H` lines: two ranks on each worker, in the
/// hostfile's order.
fn check_ranks(stdout: &str) {
    let mut ranks: Vec<&str> = stdout.lines().filter(|l| l.starts_with("rank ")).collect();
    ranks.sort();
    assert_eq!(
        ranks,
        [
            "rank 0 of 4 on host node2",
            "rank 1 of 4 on host node2",
            "rank 2 of 4 on host node3",
            "rank 3 of 4 on host node3",
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains("pi is approximately 3.14159265"),
        "{stdout}"
    );
}

#[test]
fn the_readme_steps_run_a_job_on_three_hosts_from_the_debian_package() {
    require_tools();
    let deb = built_deb();
    let steps = steps(README);
    assert!(steps.len() >= 6, "{steps:#?}");
    let _ = Command::new("dpkg").args(["-P", PACKAGE]).output();
    assert!(
        !Path::new(BINARY).exists(),
        "{BINARY} is there before dpkg -i"
    );
    let _installed = Installed;

    let mut net = Net::new("bare");
    let mut names: Vec<String> = steps.iter().map(|s| s.host.clone()).collect();
    names.extend(["node2".to_string(), "node3".to_string()]);
    names.sort();
    names.dedup();
    let mut hosts_by_name = BTreeMap::new();
    for name in names {
        let h = net.add_host(&name);
        net.publish(&name, &h.addr);
        hosts_by_name.insert(name, h);
    }
    let pi = net.tmp.path("pi");
    hosts::run(
        Command::new("/usr/bin/mpicc")
            .arg("-o")
            .arg(&pi)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/pi/pi.c")),
    );
    let key_dir = net.tmp.path("etc-mpijob/job");
    let mut bench = Bench {
        net,
        hosts: hosts_by_name,
        key_dir,
        pi,
        workers: Vec::new(),
    };
    for step in &steps {
        eprintln!("--- {}# {}", step.host, step.command);
        bench.run(step, &deb);
    }
    assert_eq!(bench.workers.len(), 2, "two workers started");

    // What keygen wrote: private, and plain ssh with it checks host keys.
    let dir = bench.key_dir.clone();
    for name in [
        "id_ed25519",
        "id_ed25519.pub",
        "authorized_keys",
        "known_hosts",
        "config",
    ] {
        let mode = fs::metadata(dir.join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let node1 = bench.hosts["node1"].clone();
    let mut ssh = bench.net.command(&node1, "ssh");
    ssh.arg("-F")
        .arg(dir.join("config"))
        .args(["node3", "hostname"]);
    let mut p = Proc::spawn(ssh);
    assert!(
        p.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        p.stderr()
    );
    assert_eq!(p.stdout(), "node3\n");

    // The workers stop cleanly on SIGTERM, as systemctl stop sends it:
    // 128+15, which the unit counts as success.
    let unit = fs::read_to_string(UNIT).unwrap();
    assert_eq!(unit_value(&unit, "SuccessExitStatus"), "143");
    for w in &mut bench.workers {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(w.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = w.wait_exit(Duration::from_secs(15));
        assert_eq!(status.code(), Some(143), "{}", w.stderr());
        assert!(
            w.stderr().contains("sshd exited with code 0"),
            "{}",
            w.stderr()
        );
    }

    // systemd-analyze prints a warning for a bad line and still exits 0.
    let out = Command::new("systemd-analyze")
        .args(["verify", UNIT])
        .output()
        .expect("systemd-analyze (package systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.is_empty(),
        "systemd-analyze verify {UNIT}:\n{said}"
    );

    let files = dpkg(&["-L", PACKAGE]);
    for f in [BINARY, UNIT, DEFAULTS] {
        assert!(
            files.lines().any(|l| l == f),
            "{f} in the package:\n{files}"
        );
    }
    dpkg(&["-r", PACKAGE]);
    assert!(!Path::new(BINARY).exists() && !Path::new(UNIT).exists());
    assert!(Path::new(DEFAULTS).exists(), "-r keeps the conffile");
    dpkg(&["-P", PACKAGE]);
    let left: Vec<&str> = files.lines().filter(|f| Path::new(f).is_file()).collect();
    assert!(left.is_empty(), "left after dpkg -P: {left:?}");
}

#[test]
fn the_readme_section_parses_into_steps() {
    let steps = steps(README);
    let commands: Vec<String> = steps
        .iter()
        .map(|s| format!("{}# {}", s.host, s.command))
        .collect();
    assert!(
        commands.iter().any(|c| c.starts_with("node1# dpkg -i ")),
        "{commands:?}"
    );
    assert!(commands
        .iter()
        .any(|c| c.starts_with("node1# mpijob-agent keygen ")));
    assert!(commands.contains(&"node2# systemctl enable --now mpijob-agent-worker".into()));
    assert!(commands
        .iter()
        .any(|c| c.starts_with("node1# mpijob-agent launcher ")));
    assert!(matches("wrote … (mode …", "wrote /x (mode 0700)"));
    assert!(matches("a…", "abc") && !matches("a…c", "ab") && matches("…", ""));
    assert!(!matches("exact", "exactly"));
}
