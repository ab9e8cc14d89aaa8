//! mpirun: which implementation it is, the argv and environment it runs
//! with, and what its output says about a failure. All pure; the launcher
//! does the I/O.
//!
//! The argv is `mpirun <hostfile> [--allow-run-as-root] [--mca k v]...
//! <extraMPIArgs>... <cmd> <args>...`, never a shell line. Everything the
//! agent adds beyond that goes into the environment, where a user's own
//! `--mca` on the command line still wins.

use std::path::Path;

/// The MPI implementations the launcher knows; the pod contract names them.
pub use mpijob_api::contract::MpiImplementation as Implementation;

/// The implementation, from `mpirun --version` (stdout and stderr).
///
/// Open MPI 4 prints `mpirun (Open MPI) 4.1.4` or, from Debian's
/// `mpirun.openmpi`, `mpirun.openmpi (OpenRTE) 4.1.4`; Open MPI 5 prints
/// `mpirun (Open MPI) 5.0.3`. MPICH prints `HYDRA build details:`. Intel
/// MPI's mpirun is also Hydra, so it is recognised first, by
/// `Intel(R) MPI Library`.
pub fn detect(version: &str) -> Option<Implementation> {
    if version.contains("Intel(R) MPI Library") {
        Some(Implementation::Intel)
    } else if version.contains("(Open MPI)") || version.contains("(OpenRTE)") {
        Some(Implementation::OpenMpi)
    } else if version.contains("HYDRA build details") || version.contains("MPICH Version") {
        Some(Implementation::Mpich)
    } else {
        None
    }
}

/// The error when `--mpi-implementation` names one MPI and mpirun's
/// `--version` says it is another: what was asked, what was found, where,
/// and the two ways out.
pub fn mismatch(asked: Implementation, found: Implementation, mpirun: &Path) -> String {
    format!(
        "--mpi-implementation {}: but {} is {}'s mpirun (its --version says so); point --mpi-home, or PATH, at {}'s, or give --mpi-implementation {}",
        asked.flag_value(),
        mpirun.display(),
        found.name(),
        asked.name(),
        found.flag_value()
    )
}

/// [`mismatch`] for a Kubeflow job, in its manifest's words.
pub fn kubeflow_mismatch(asked: Implementation, found: Implementation, mpirun: &Path) -> String {
    let name = mpijob_api::kubeflow::resolve::implementation_name;
    format!(
        "spec.mpiImplementation: {}, but the launcher's command runs {}, which is {}'s mpirun (its --version says so); set mpiImplementation: {}, or run {}'s mpirun",
        name(asked),
        mpirun.display(),
        found.name(),
        name(found),
        asked.name()
    )
}

/// Everything the argv and environment depend on.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub mpirun: &'a Path,
    pub implementation: Implementation,
    pub hostfile: &'a Path,
    /// The slots of each host in the hostfile, in its order.
    pub slots: &'a [u32],
    /// MPCA parameters, already validated (one line, no leading '-').
    pub mca: &'a [(String, String)],
    pub extra_args: &'a [String],
    /// CMD and ARGS, not empty.
    pub cmd: &'a [String],
    pub root: bool,
    /// The agent's ssh client config for the workers (`ssh -F` reads it).
    pub ssh_config: &'a Path,
    /// An executable that runs `ssh -F <ssh_config> "$@"`, for Hydra,
    /// which takes a launcher executable but no arguments for it.
    pub ssh_wrapper: &'a Path,
    /// This machine's address as the workers reach it. Hydra's proxies
    /// call back to mpiexec by the launcher's hostname, which a worker
    /// pod cannot resolve (a pod's short hostname is in no DNS zone), so
    /// Hydra gets this address with `-localhost`.
    pub callback_host: Option<&'a str>,
    /// The network interface that holds `callback_host`. Intel's Hydra
    /// ignores `-localhost` for its bootstrap proxies, which call back by
    /// the launcher's hostname unless told the interface.
    pub callback_iface: Option<&'a str>,
    /// `cmd` is a Kubeflow launcher's own command: run it as it is, with
    /// mpi-operator's variables ([`kubeflow`]).
    pub kubeflow: bool,
}

/// The slots every host has, when they all have the same.
pub fn equal_slots(slots: &[u32]) -> Option<u32> {
    let (first, rest) = slots.split_first()?;
    rest.iter().all(|s| s == first).then_some(*first)
}

/// The interface, of `(name, address)` pairs as the system lists them,
/// that holds `addr`.
pub fn interface_with(interfaces: &[(String, std::net::IpAddr)], addr: &str) -> Option<String> {
    let addr: std::net::IpAddr = addr.parse().ok()?;
    interfaces
        .iter()
        .find(|(_, a)| *a == addr)
        .map(|(name, _)| name.clone())
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub argv: Vec<String>,
    /// Set on top of the agent's own environment.
    pub env: Vec<(String, String)>,
}

/// The argv and environment of mpirun. `preset` says whether the
/// environment already sets a variable: the agent then leaves that one to
/// the user (for the ssh agent and tree spawn; the hostfile is always the
/// agent's).
pub fn assemble(p: &Plan, preset: impl Fn(&str) -> bool) -> Invocation {
    if p.kubeflow {
        return kubeflow(p, preset);
    }
    let hostfile = p.hostfile.display().to_string();
    let mut argv = vec![p.mpirun.display().to_string()];
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str, keep_users: bool| {
        if !(keep_users && preset(k)) {
            env.push((k.to_string(), v.to_string()));
        }
    };
    match p.implementation {
        Implementation::OpenMpi => {
            argv.extend(["--hostfile".into(), hostfile.clone()]);
            if p.root {
                argv.push("--allow-run-as-root".into());
                set("OMPI_ALLOW_RUN_AS_ROOT", "1", false);
                set("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", false);
            }
            for (k, v) in p.mca {
                argv.extend(["--mca".into(), k.clone(), v.clone()]);
            }
            // Open MPI 4 reads OMPI_MCA_*, Open MPI 5 (PRRTE) PRTE_MCA_*:
            // with only one family set, the other version runs every rank
            // on the launcher.
            set("OMPI_MCA_orte_default_hostfile", &hostfile, false);
            set("PRTE_MCA_prte_default_hostfile", &hostfile, false);
            // Keep `pi-worker-0.pi.ns.svc` whole: the short name does not
            // resolve from the launcher.
            set("OMPI_MCA_orte_keep_fqdn_hostnames", "1", false);
            set("PRTE_MCA_prte_keep_fqdn_hostnames", "1", false);
            // ssh with the job's key, port and pinned host key. The config
            // path exists only here, so every daemon is started from here
            // (no tree spawn).
            let agent = format!("ssh -F {}", p.ssh_config.display());
            set("OMPI_MCA_plm_rsh_agent", &agent, true);
            set("PRTE_MCA_plm_ssh_agent", &agent, true);
            set("OMPI_MCA_plm_rsh_no_tree_spawn", "1", true);
            set("PRTE_MCA_plm_ssh_no_tree_spawn", "1", true);
        }
        Implementation::Mpich | Implementation::Intel => {
            // Hydra, under MPICH's or Intel's names for its variables.
            let (host_file, bootstrap, bootstrap_exec) = match p.implementation {
                Implementation::Mpich => {
                    ("HYDRA_HOST_FILE", "HYDRA_LAUNCHER", "HYDRA_LAUNCHER_EXEC")
                }
                _ => (
                    "I_MPI_HYDRA_HOST_FILE",
                    "I_MPI_HYDRA_BOOTSTRAP",
                    "I_MPI_HYDRA_BOOTSTRAP_EXEC",
                ),
            };
            // Intel's Hydra reads no counts from `-f` or its host file
            // variable: it places I_MPI_PERHOST ranks on each host, all of
            // its cores by default. Equal slots are that number; unequal
            // ones need `-machinefile`, which honours `host:N`.
            let equal = equal_slots(p.slots);
            let file_flag = match (p.implementation, equal) {
                (Implementation::Intel, None) => "-machinefile",
                _ => "-f",
            };
            argv.extend([file_flag.into(), hostfile.clone()]);
            if let Some(host) = p.callback_host {
                argv.extend(["-localhost".into(), host.to_string()]);
            }
            set(host_file, &hostfile, false);
            if let (Implementation::Intel, Some(n)) = (p.implementation, equal) {
                set("I_MPI_PERHOST", &n.to_string(), true);
            }
            if let (Implementation::Intel, Some(iface)) = (p.implementation, p.callback_iface) {
                set("I_MPI_HYDRA_IFACE", iface, true);
            }
            set(bootstrap, "ssh", true);
            set(bootstrap_exec, &p.ssh_wrapper.display().to_string(), true);
        }
    }
    argv.extend(p.extra_args.iter().cloned());
    argv.extend(p.cmd.iter().cloned());
    Invocation { argv, env }
}

/// A Kubeflow launcher's own command, unchanged, with what its pod would
/// have: mpi-operator's variables for the implementation, pointed at this
/// hostfile; and, for what mpi-operator leaves to the image's
/// `/etc/ssh/ssh_config` (port, key, host keys), the agent's ssh client
/// config, as the launcher gives it to mpirun. No `--allow-run-as-root`
/// and no `-localhost`: the command says what it says, as in its pod.
fn kubeflow(p: &Plan, preset: impl Fn(&str) -> bool) -> Invocation {
    let hostfile = p.hostfile.display().to_string();
    let slots = equal_slots(p.slots).unwrap_or(1);
    let mut env: Vec<(String, String)> =
        mpijob_api::kubeflow::contract::launcher_variables(p.implementation, slots, &hostfile)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    let mut set = |k: &str, v: &str| {
        if !preset(k) {
            env.push((k.to_string(), v.to_string()));
        }
    };
    let wrapper = p.ssh_wrapper.display().to_string();
    match p.implementation {
        Implementation::OpenMpi => {
            let agent = format!("ssh -F {}", p.ssh_config.display());
            set("OMPI_MCA_plm_rsh_agent", &agent);
            set("PRTE_MCA_plm_ssh_agent", &agent);
            set("OMPI_MCA_plm_rsh_no_tree_spawn", "1");
            set("PRTE_MCA_plm_ssh_no_tree_spawn", "1");
        }
        Implementation::Mpich => {
            set("HYDRA_LAUNCHER", "ssh");
            set("HYDRA_LAUNCHER_EXEC", &wrapper);
        }
        Implementation::Intel => {
            set("I_MPI_HYDRA_BOOTSTRAP", "ssh");
            set("I_MPI_HYDRA_BOOTSTRAP_EXEC", &wrapper);
            if let Some(iface) = p.callback_iface {
                set("I_MPI_HYDRA_IFACE", iface);
            }
        }
    }
    Invocation {
        argv: p.cmd.to_vec(),
        env,
    }
}

impl Invocation {
    /// The invocation as one line for a person to paste into a POSIX
    /// shell: `env K=V … mpirun …`, every word quoted where it needs it.
    /// Shown to users only (debug mode); never run through a shell.
    pub fn shell_line(&self) -> String {
        let env = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)));
        let words: Vec<String> = env
            .chain(self.argv.iter().map(|a| shell_quote(a)))
            .collect();
        if self.env.is_empty() {
            words.join(" ")
        } else {
            format!("env {}", words.join(" "))
        }
    }
}

/// `word` as a POSIX shell reads it back: as it is when it holds only
/// characters no shell treats specially, else in single quotes.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./,:=@%+^".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The Hydra launcher wrapper script: ssh with the agent's client config.
/// The path is the agent's own state directory, checked to need no quoting.
pub fn ssh_wrapper_script(ssh_config: &Path) -> String {
    format!(
        "#!/bin/sh\n# Written by mpijob-agent: ssh to the job's workers with its key and pinned host key.\nexec ssh -F '{}' \"$@\"\n",
        ssh_config.display()
    )
}

/// What mpirun's output said about the first failing process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    pub rank: Option<u32>,
    pub host: Option<String>,
    pub exit_code: Option<i32>,
    /// e.g. `9 (Killed)`.
    pub signal: Option<String>,
    /// Intel MPI: a worker's bootstrap proxy could not resolve the name it
    /// calls the launcher back by: (the worker, the name).
    pub unresolved_launcher: Option<(String, String)>,
    /// A proxy's `getaddrinfo` failed, on this worker.
    lookup_failed_on: Option<String>,
}

impl Failure {
    /// Read one line of mpirun's output; the first value of each kind wins.
    pub fn observe(&mut self, line: &str) {
        self.observe_callback(line);
        let line = line.trim().trim_start_matches('=').trim();
        let number = |s: &str| -> Option<i64> {
            let digits: String = s
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '-')
                .collect();
            digits.parse().ok()
        };
        // Open MPI 4: `Process name: [[5216,1],1]`; 5: `[prterun-h-1@1,1]`.
        if let Some(rest) = line.strip_prefix("Process name:") {
            let rank = rest
                .trim()
                .trim_end_matches(']')
                .rsplit(',')
                .next()
                .and_then(number);
            self.set_rank(rank);
        } else if let Some(rest) = line.strip_prefix("Exit code:") {
            self.set_code(number(rest));
        } else if let Some(rest) = line.strip_prefix("EXIT CODE:") {
            // MPICH: `=   EXIT CODE: 3`.
            self.set_code(number(rest));
        } else if let Some(rest) = line.strip_prefix("Local host:") {
            self.set_host(rest.trim());
        } else if let Some(rest) = line.strip_prefix("KILLED BY SIGNAL:") {
            if self.signal.is_none() {
                self.signal = Some(rest.trim().to_string());
            }
        }
        // Open MPI: `mpirun noticed that process rank 2 with PID 77 on node
        // pi-worker-1 exited on signal 9 (Killed).`
        if let Some(i) = line.find("noticed that process rank ") {
            let rest = &line[i + "noticed that process rank ".len()..];
            self.set_rank(number(rest));
            if let Some(j) = rest.find(" on node ") {
                let host = rest[j + " on node ".len()..].split_whitespace().next();
                self.set_host(host.unwrap_or(""));
            }
            if let Some(j) = rest.find("exited on signal ") {
                if self.signal.is_none() {
                    let sig = rest[j + "exited on signal ".len()..].trim_end_matches('.');
                    self.signal = Some(sig.to_string());
                }
            }
        }
        // Open MPI: `MPI_ABORT was invoked on rank 2 in communicator ...`;
        // MPICH: `Abort(3) on node 2 (rank 2 in comm 0): ...`.
        for marker in ["MPI_ABORT was invoked on rank ", "(rank "] {
            if let Some(i) = line.find(marker) {
                self.set_rank(number(&line[i + marker.len()..]));
            }
        }
        if let Some(rest) = line.strip_prefix("Abort(") {
            self.set_code(number(rest));
        }
        if let Some(i) = line.find("with errorcode ") {
            self.set_code(number(&line[i + "with errorcode ".len()..]));
        }
        // MPICH: `=   RANK 2 PID 77 RUNNING AT pi-worker-1` (MPICH 4) or
        // `=   PID 77 RUNNING AT pi-worker-1`.
        let mpich_line = line.starts_with("RANK ") || line.starts_with("PID ");
        if let Some(i) = line.find("RUNNING AT ").filter(|_| mpich_line) {
            if let Some(rest) = line.strip_prefix("RANK ") {
                self.set_rank(number(rest));
            }
            let host = line[i + "RUNNING AT ".len()..].split_whitespace().next();
            self.set_host(host.unwrap_or(""));
        }
    }

    /// Intel's Hydra: `[bstrap:0:0@w0] HYD_sock_connect (…): getaddrinfo
    /// returned error -2 (Name or service not known)`, then `[bstrap:0:0@w0]
    /// main (…): unable to connect to server L at port 45907 …`.
    fn observe_callback(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("[bstrap:") else {
            return;
        };
        let Some((tag, message)) = rest.split_once("] ") else {
            return;
        };
        let worker = tag.rsplit('@').next().unwrap_or(tag).to_string();
        if message.contains("getaddrinfo returned error") {
            self.lookup_failed_on.get_or_insert(worker);
        } else if let Some(i) = message.find("unable to connect to server ") {
            let server = message[i + "unable to connect to server ".len()..]
                .split_whitespace()
                .next()
                .unwrap_or_default();
            if self.lookup_failed_on.as_deref() == Some(worker.as_str())
                && self.unresolved_launcher.is_none()
            {
                self.unresolved_launcher = Some((worker, server.to_string()));
            }
        }
    }

    fn set_rank(&mut self, rank: Option<i64>) {
        if self.rank.is_none() {
            self.rank = rank.and_then(|r| u32::try_from(r).ok());
        }
    }

    fn set_code(&mut self, code: Option<i64>) {
        if self.exit_code.is_none() {
            self.exit_code = code.and_then(|c| i32::try_from(c).ok());
        }
    }

    fn set_host(&mut self, host: &str) {
        if self.host.is_none() && !host.is_empty() {
            self.host = Some(host.to_string());
        }
    }

    /// e.g. `rank 2 on pi-worker-1 exited with code 3`; `None` when the
    /// output named nothing.
    pub fn describe(&self) -> Option<String> {
        if let Some((worker, name)) = &self.unresolved_launcher {
            return Some(format!(
                "Intel MPI's proxy on {worker} cannot resolve {name}, the launcher's name it calls back to: make that name resolve on the workers, or set I_MPI_HYDRA_IFACE to the launcher's network interface toward them"
            ));
        }
        let who = match (self.rank, &self.host) {
            (Some(r), Some(h)) => format!("rank {r} on {h}"),
            (Some(r), None) => format!("rank {r}"),
            (None, Some(h)) => format!("a process on {h}"),
            (None, None) if self.exit_code.is_some() || self.signal.is_some() => {
                "a process".to_string()
            }
            (None, None) => return None,
        };
        let how = match (&self.signal, self.exit_code) {
            (Some(sig), _) => format!(" was killed by signal {sig}"),
            (None, Some(code)) => format!(" exited with code {code}"),
            (None, None) => " failed".to_string(),
        };
        Some(format!("{who}{how}"))
    }
}

/// The termination message: the exit code and, when the output named one,
/// the failing rank and host.
pub fn summary(code: i32, signal: Option<&str>, failure: &Failure) -> String {
    let mut s = match signal {
        Some(sig) => format!("launcher: stopped by {sig}; exit code {code}"),
        None if code == 0 => "launcher: mpirun succeeded; exit code 0".to_string(),
        None => format!("launcher: mpirun failed; exit code {code}"),
    };
    // After a stop signal the ranks' ends are the signal's doing, not news.
    if code != 0 && signal.is_none() {
        if let Some(d) = failure.describe() {
            s.push_str(&format!("; {d}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn detects_each_implementation() {
        assert_eq!(
            detect("mpirun (Open MPI) 4.1.4\n\nReport bugs to http://www.open-mpi.org/community/help/\n"),
            Some(Implementation::OpenMpi)
        );
        assert_eq!(
            detect("mpirun.openmpi (OpenRTE) 4.1.4\n"),
            Some(Implementation::OpenMpi)
        );
        assert_eq!(
            detect("mpirun (Open MPI) 5.0.3\n"),
            Some(Implementation::OpenMpi)
        );
        assert_eq!(
            detect("HYDRA build details:\n    Version:        4.0.2\n"),
            Some(Implementation::Mpich)
        );
        assert_eq!(
            detect("Intel(R) MPI Library for Linux* OS, Version 2021.10\nHYDRA build details:\n"),
            Some(Implementation::Intel)
        );
        assert_eq!(detect("mpirun: command not found"), None);
    }

    fn plan<'a>(
        implementation: Implementation,
        mca: &'a [(String, String)],
        extra: &'a [String],
        cmd: &'a [String],
        root: bool,
    ) -> Plan<'a> {
        Plan {
            mpirun: Path::new("/opt/mpi/bin/mpirun"),
            implementation,
            hostfile: Path::new("/run/mpijob/launcher/hostfile"),
            slots: &[2, 2],
            mca,
            extra_args: extra,
            cmd,
            root,
            ssh_config: Path::new("/run/mpijob/launcher/ssh_config"),
            ssh_wrapper: Path::new("/run/mpijob/launcher/ssh"),
            callback_host: None,
            callback_iface: None,
            kubeflow: false,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn open_mpi_argv_and_env() {
        let mca = vec![
            ("btl".to_string(), "^openib".to_string()),
            ("pml".to_string(), "ob1".to_string()),
        ];
        let extra = strings(&["-N", "1", "--bind-to", "none"]);
        let cmd = strings(&["python", "train.py", "--epochs", "3"]);
        let inv = assemble(
            &plan(Implementation::OpenMpi, &mca, &extra, &cmd, true),
            |_| false,
        );
        assert_eq!(
            inv.argv,
            strings(&[
                "/opt/mpi/bin/mpirun",
                "--hostfile",
                "/run/mpijob/launcher/hostfile",
                "--allow-run-as-root",
                "--mca",
                "btl",
                "^openib",
                "--mca",
                "pml",
                "ob1",
                "-N",
                "1",
                "--bind-to",
                "none",
                "python",
                "train.py",
                "--epochs",
                "3"
            ])
        );
        let env: Vec<(&str, &str)> = inv
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            vec![
                ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
                ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
                (
                    "OMPI_MCA_orte_default_hostfile",
                    "/run/mpijob/launcher/hostfile"
                ),
                (
                    "PRTE_MCA_prte_default_hostfile",
                    "/run/mpijob/launcher/hostfile"
                ),
                ("OMPI_MCA_orte_keep_fqdn_hostnames", "1"),
                ("PRTE_MCA_prte_keep_fqdn_hostnames", "1"),
                (
                    "OMPI_MCA_plm_rsh_agent",
                    "ssh -F /run/mpijob/launcher/ssh_config"
                ),
                (
                    "PRTE_MCA_plm_ssh_agent",
                    "ssh -F /run/mpijob/launcher/ssh_config"
                ),
                ("OMPI_MCA_plm_rsh_no_tree_spawn", "1"),
                ("PRTE_MCA_plm_ssh_no_tree_spawn", "1"),
            ]
        );
    }

    #[test]
    fn not_root_no_run_as_root_and_users_own_agent_wins() {
        let cmd = strings(&["./hello"]);
        let inv = assemble(&plan(Implementation::OpenMpi, &[], &[], &cmd, false), |k| {
            k == "OMPI_MCA_plm_rsh_agent"
        });
        assert_eq!(
            inv.argv,
            strings(&[
                "/opt/mpi/bin/mpirun",
                "--hostfile",
                "/run/mpijob/launcher/hostfile",
                "./hello"
            ])
        );
        assert!(inv
            .env
            .iter()
            .all(|(k, _)| !k.contains("ALLOW_RUN_AS_ROOT")));
        assert!(inv.env.iter().all(|(k, _)| k != "OMPI_MCA_plm_rsh_agent"));
        assert!(inv.env.iter().any(|(k, _)| k == "PRTE_MCA_plm_ssh_agent"));
    }

    #[test]
    fn hydra_is_told_the_address_its_proxies_call_back_to() {
        let cmd = strings(&["./hello"]);
        for implementation in [Implementation::Mpich, Implementation::Intel] {
            let mut p = plan(implementation, &[], &[], &cmd, true);
            p.callback_host = Some("198.18.0.2");
            let inv = assemble(&p, |_| false);
            assert_eq!(
                inv.argv,
                strings(&[
                    "/opt/mpi/bin/mpirun",
                    "-f",
                    "/run/mpijob/launcher/hostfile",
                    "-localhost",
                    "198.18.0.2",
                    "./hello"
                ])
            );
        }
        // Open MPI's daemons call back by address already.
        let mut p = plan(Implementation::OpenMpi, &[], &[], &cmd, true);
        p.callback_host = Some("198.18.0.2");
        assert!(!assemble(&p, |_| false)
            .argv
            .contains(&"-localhost".to_string()));
    }

    #[test]
    fn hydra_gets_host_colon_file_and_the_ssh_wrapper_but_no_mca() {
        let mca = vec![("btl".to_string(), "tcp".to_string())];
        let cmd = strings(&["./hello", "a b"]);
        let inv = assemble(&plan(Implementation::Mpich, &mca, &[], &cmd, true), |_| {
            false
        });
        assert_eq!(
            inv.argv,
            strings(&[
                "/opt/mpi/bin/mpirun",
                "-f",
                "/run/mpijob/launcher/hostfile",
                "./hello",
                "a b"
            ])
        );
        assert_eq!(
            inv.env,
            vec![
                (
                    "HYDRA_HOST_FILE".to_string(),
                    "/run/mpijob/launcher/hostfile".to_string()
                ),
                ("HYDRA_LAUNCHER".to_string(), "ssh".to_string()),
                (
                    "HYDRA_LAUNCHER_EXEC".to_string(),
                    "/run/mpijob/launcher/ssh".to_string()
                ),
            ]
        );
        let intel = assemble(&plan(Implementation::Intel, &[], &[], &cmd, true), |_| {
            false
        });
        let keys: Vec<&str> = intel.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "I_MPI_HYDRA_HOST_FILE",
                "I_MPI_PERHOST",
                "I_MPI_HYDRA_BOOTSTRAP",
                "I_MPI_HYDRA_BOOTSTRAP_EXEC"
            ]
        );
    }

    #[test]
    fn intel_places_each_hosts_slots() {
        let cmd = strings(&["./hello"]);
        let env_of = |inv: &Invocation, k: &str| {
            inv.env
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        };
        // Equal slots: I_MPI_PERHOST, which Intel's `-f` needs.
        let inv = assemble(&plan(Implementation::Intel, &[], &[], &cmd, true), |_| {
            false
        });
        assert_eq!(inv.argv[1], "-f");
        assert_eq!(env_of(&inv, "I_MPI_PERHOST").as_deref(), Some("2"));
        // The user's own I_MPI_PERHOST wins.
        let inv = assemble(&plan(Implementation::Intel, &[], &[], &cmd, true), |k| {
            k == "I_MPI_PERHOST"
        });
        assert_eq!(env_of(&inv, "I_MPI_PERHOST"), None);
        // Unequal slots: `-machinefile`, which reads `host:N`.
        let mut p = plan(Implementation::Intel, &[], &[], &cmd, true);
        p.slots = &[1, 3];
        let inv = assemble(&p, |_| false);
        assert_eq!(
            inv.argv[1..3],
            strings(&["-machinefile", "/run/mpijob/launcher/hostfile"])
        );
        assert_eq!(env_of(&inv, "I_MPI_PERHOST"), None);
        // The interface its bootstrap proxies call back on; the user's wins.
        let mut p = plan(Implementation::Intel, &[], &[], &cmd, true);
        p.callback_host = Some("10.1.2.3");
        p.callback_iface = Some("eth0");
        assert_eq!(
            env_of(&assemble(&p, |_| false), "I_MPI_HYDRA_IFACE").as_deref(),
            Some("eth0")
        );
        assert_eq!(
            env_of(
                &assemble(&p, |k| k == "I_MPI_HYDRA_IFACE"),
                "I_MPI_HYDRA_IFACE"
            ),
            None
        );
        let interfaces = [
            ("lo".to_string(), "127.0.0.1".parse().unwrap()),
            ("eth0".to_string(), "10.1.2.3".parse().unwrap()),
        ];
        assert_eq!(
            interface_with(&interfaces, "10.1.2.3").as_deref(),
            Some("eth0")
        );
        assert_eq!(interface_with(&interfaces, "10.9.9.9"), None);
        // MPICH reads the counts from `-f` itself.
        let mut p = plan(Implementation::Mpich, &[], &[], &cmd, true);
        p.slots = &[1, 3];
        let inv = assemble(&p, |_| false);
        assert_eq!(inv.argv[1], "-f");
        assert_eq!(env_of(&inv, "I_MPI_PERHOST"), None);
    }

    #[test]
    fn a_kubeflow_command_runs_as_it_is_with_mpi_operators_variables() {
        let cmd = strings(&["mpirun", "-n", "4", "/home/mpiuser/pi"]);
        let mut p = plan(Implementation::OpenMpi, &[], &[], &cmd, true);
        p.kubeflow = true;
        let inv = assemble(&p, |_| false);
        assert_eq!(inv.argv, cmd, "no hostfile flag, no --allow-run-as-root");
        let env: Vec<(&str, &str)> = inv
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert!(env.contains(&(
            "OMPI_MCA_orte_default_hostfile",
            "/run/mpijob/launcher/hostfile"
        )));
        assert!(env.contains(&(
            "PRTE_MCA_prte_default_hostfile",
            "/run/mpijob/launcher/hostfile"
        )));
        assert!(env.contains(&("OMPI_MCA_orte_set_default_slots", "2")));
        assert!(env.contains(&(
            "OMPI_MCA_plm_rsh_agent",
            "ssh -F /run/mpijob/launcher/ssh_config"
        )));
        assert!(env.iter().all(|(k, _)| !k.contains("ALLOW_RUN_AS_ROOT")));
        for (implementation, keys) in [
            (
                Implementation::Mpich,
                &[
                    "HYDRA_HOST_FILE",
                    "HYDRA_LAUNCH_EXTRA_ARGS",
                    "HYDRA_LAUNCHER",
                    "HYDRA_LAUNCHER_EXEC",
                ][..],
            ),
            (
                Implementation::Intel,
                &[
                    "I_MPI_HYDRA_HOST_FILE",
                    "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS",
                    "I_MPI_PERHOST",
                    "I_MPI_HYDRA_BOOTSTRAP",
                    "I_MPI_HYDRA_BOOTSTRAP_EXEC",
                ][..],
            ),
        ] {
            let mut p = plan(implementation, &[], &[], &cmd, true);
            p.kubeflow = true;
            p.callback_host = Some("10.0.0.2");
            let inv = assemble(&p, |_| false);
            assert_eq!(inv.argv, cmd);
            let got: Vec<&str> = inv.env.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(got, keys);
        }
    }

    #[test]
    fn the_shell_line_quotes_what_a_shell_would_change() {
        let inv = Invocation {
            argv: strings(&[
                "/usr/bin/mpirun",
                "--mca",
                "btl",
                "^openib",
                "python",
                "a b",
                "it's",
                "",
            ]),
            env: vec![(
                "OMPI_MCA_plm_rsh_agent".into(),
                "ssh -F /run/l/ssh_config".into(),
            )],
        };
        assert_eq!(
            inv.shell_line(),
            "env OMPI_MCA_plm_rsh_agent='ssh -F /run/l/ssh_config' /usr/bin/mpirun --mca btl ^openib python 'a b' 'it'\\''s' ''"
        );
        // Read back by a real shell, word for word.
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "printf '%s|' {}",
                    inv.shell_line().trim_start_matches("env ")
                ),
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "OMPI_MCA_plm_rsh_agent=ssh -F /run/l/ssh_config|/usr/bin/mpirun|--mca|btl|^openib|python|a b|it's||"
        );
    }

    #[test]
    fn wrapper_script_passes_arguments_through() {
        assert_eq!(
            ssh_wrapper_script(&PathBuf::from("/run/mpijob/launcher/ssh_config")),
            "#!/bin/sh\n# Written by mpijob-agent: ssh to the job's workers with its key and pinned host key.\n\
             exec ssh -F '/run/mpijob/launcher/ssh_config' \"$@\"\n"
        );
    }

    fn read(text: &str) -> Failure {
        let mut f = Failure::default();
        for line in text.lines() {
            f.observe(line);
        }
        f
    }

    #[test]
    fn reads_open_mpi_4_nonzero_exit() {
        let f = read(
            "--------------------------------------------------------------------------\n\
             mpirun.openmpi detected that one or more processes exited with non-zero status, thus causing\n\
             the job to be terminated. The first process to do so was:\n\n\
             \x20 Process name: [[5216,1],2]\n\
             \x20 Exit code:    3\n\
             --------------------------------------------------------------------------\n",
        );
        assert_eq!(f.rank, Some(2));
        assert_eq!(f.exit_code, Some(3));
        assert_eq!(f.describe().unwrap(), "rank 2 exited with code 3");
        assert_eq!(
            summary(3, None, &f),
            "launcher: mpirun failed; exit code 3; rank 2 exited with code 3"
        );
    }

    #[test]
    fn reads_open_mpi_signals_and_open_mpi_5_names() {
        let f = read(
            "mpirun noticed that process rank 4 with PID 0 on node pi-worker-2.pi.ns.svc exited on signal 9 (Killed).\n",
        );
        assert_eq!(
            f.describe().unwrap(),
            "rank 4 on pi-worker-2.pi.ns.svc was killed by signal 9 (Killed)"
        );
        let f = read("  Process name: [prterun-pi-launcher-77@1,5]\n  Exit code:    1\n");
        assert_eq!(f.describe().unwrap(), "rank 5 exited with code 1");
        let f = read(
            "MPI_ABORT was invoked on rank 1 in communicator MPI_COMM_WORLD\nwith errorcode 7.\n",
        );
        assert_eq!(f.describe().unwrap(), "rank 1 exited with code 7");
        let f = read("Abort(3) on node 5 (rank 5 in comm 0): application called MPI_Abort(MPI_COMM_WORLD, 3) - process 5\n");
        assert_eq!(f.describe().unwrap(), "rank 5 exited with code 3");
    }

    #[test]
    fn reads_mpich_bad_termination() {
        let f = read(
            "===================================================================================\n\
             =   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\n\
             =   RANK 3 PID 4242 RUNNING AT pi-worker-1.pi.ns.svc\n\
             =   EXIT CODE: 3\n\
             =   CLEANING UP REMAINING PROCESSES\n",
        );
        assert_eq!(
            f.describe().unwrap(),
            "rank 3 on pi-worker-1.pi.ns.svc exited with code 3"
        );
        let f = read("=   PID 4242 RUNNING AT pi-worker-0\n=   KILLED BY SIGNAL: 9 (Killed)\n");
        assert_eq!(
            f.describe().unwrap(),
            "a process on pi-worker-0 was killed by signal 9 (Killed)"
        );
    }

    #[test]
    fn reads_intel_proxies_that_cannot_resolve_the_launcher() {
        let f = read(
            "[mpiexec@ipi-launcher] Error setting up the bootstrap proxies\n\
             [bstrap:0:0@ipi-worker-0] HYD_sock_connect (../../../../../src/pm/i_hydra/libhydra/sock/hydra_sock_intel.c:209): getaddrinfo returned error -2 (Name or service not known)\n\
             [bstrap:0:0@ipi-worker-0] main (../../../../../src/pm/i_hydra/libhydra/bstrap/src/hydra_bstrap_proxy.c:532): unable to connect to server ipi-launcher at port 45907 (check for firewalls!)\n\
             [bstrap:0:1@ipi-worker-1] main (../../../../../src/pm/i_hydra/libhydra/bstrap/src/hydra_bstrap_proxy.c:532): unable to connect to server ipi-launcher at port 45907 (check for firewalls!)\n",
        );
        assert_eq!(
            summary(255, None, &f),
            "launcher: mpirun failed; exit code 255; Intel MPI's proxy on ipi-worker-0 cannot resolve ipi-launcher, the launcher's name it calls back to: make that name resolve on the workers, or set I_MPI_HYDRA_IFACE to the launcher's network interface toward them"
        );
        // A refused connection, with no failed lookup, is not that.
        let f = read("[bstrap:0:0@w0] main (x.c:1): unable to connect to server l at port 1 (check for firewalls!)\n");
        assert_eq!(f.describe(), None);
    }

    #[test]
    fn summaries() {
        let none = Failure::default();
        assert_eq!(none.describe(), None);
        assert_eq!(
            summary(0, None, &none),
            "launcher: mpirun succeeded; exit code 0"
        );
        assert_eq!(
            summary(143, Some("SIGTERM"), &none),
            "launcher: stopped by SIGTERM; exit code 143"
        );
        let mut killed = Failure::default();
        killed.observe("=   PID 77 RUNNING AT pi-worker-1");
        killed.observe("=   EXIT CODE: 15");
        assert_eq!(
            summary(143, Some("SIGTERM"), &killed),
            "launcher: stopped by SIGTERM; exit code 143"
        );
        // Debug output that merely mentions the words is not a failure.
        let mut noise = Failure::default();
        noise.observe("[h:1] plm:base:receive RUNNING AT ../plm_base_receive.c:352");
        assert_eq!(noise.describe(), None);
        assert_eq!(
            summary(1, None, &none),
            "launcher: mpirun failed; exit code 1"
        );
    }
}
