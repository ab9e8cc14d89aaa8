//! What a local run will make, decided before anything is made: the hosts
//! with their names and addresses, the DNS files and the agents' flags.
//! Pure, apart from picking a random run id (and, without root, a free
//! port).

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mpijob_api::contract::MpiImplementation;
use mpijob_api::{contract, kubeflow, MPIJob};

use super::net::{Link, IP};

/// Open MPI's setting for [`Plan::yield_when_idle`], through the
/// environment: a `--mca` in the manifest still wins over it.
pub const YIELD_WHEN_IDLE: &str = "OMPI_MCA_mpi_yield_when_idle";

/// dnsmasq, from Debian's dnsmasq-base.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// As root: the hosts' network, on a bridge of their own.
pub const NET_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
pub const NET_PREFIX: u8 = 15;
/// The cluster domain the local DNS serves, as a cluster's does.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// Worker `i` gets the address `base + FIRST_WORKER + i`.
const FIRST_WORKER: u32 = 10;
const DNS_OFFSET: u32 = 1;
const LAUNCHER_OFFSET: u32 = 2;
/// A local job stops quickly: sshd and mpirun get this long after SIGTERM.
const WORKER_GRACE_PERIOD: Duration = Duration::from_secs(1);
const LAUNCHER_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// One host of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub hostname: String,
    /// The DNS name the launcher dials (workers) or the pod's (launcher).
    pub fqdn: Option<String>,
    pub addr: Ipv4Addr,
    /// As root: its network namespace and its veth pair's outside end.
    pub netns: Option<String>,
    pub veth: Option<String>,
    pub worker: Option<u32>,
    pub launcher: bool,
}

/// A Kubeflow MPIJob's launcher, run as its pod would run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kubeflow {
    pub implementation: MpiImplementation,
    pub slots_per_worker: u32,
    /// The launcher is a worker too: its host runs sshd and comes first in
    /// the hostfile.
    pub run_launcher_as_worker: bool,
}

/// What a run needs from a manifest of either API.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub replicas: u32,
    pub sshd_path: String,
    /// The MPI container's image, only to say that it is not used.
    pub image: Option<String>,
    /// T9k: the MPI program; Kubeflow: the launcher's own command.
    pub cmd: Vec<String>,
    pub mpi_home: Option<String>,
    pub mca: Vec<String>,
    pub extra_args: Vec<String>,
    pub processes_per_worker: Option<i32>,
    pub debug: bool,
    pub kubeflow: Option<Kubeflow>,
}

impl Source {
    /// A T9k MPIJob, checked.
    pub fn t9k(job: &MPIJob) -> Source {
        let spec = &job.spec;
        Source {
            name: job.metadata.name.clone(),
            namespace: job.metadata.namespace.clone(),
            replicas: u32::try_from(spec.worker().replicas).unwrap_or(1).max(1),
            sshd_path: spec.ssh.sshd_path.clone(),
            // The MPI container's image (named, else the first).
            image: spec
                .worker()
                .template
                .0
                .pointer("/spec/containers")
                .and_then(|c| c.as_array())
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c["name"] == contract::MPI_CONTAINER)
                        .or(cs.first())
                })
                .and_then(|c| c["image"].as_str())
                .map(str::to_string),
            cmd: spec.worker().cmd.clone(),
            mpi_home: spec.mpi_home.clone(),
            mca: contract::LauncherArgs::mca_entries(&spec.mca),
            extra_args: spec.worker().extra_mpi_args.clone(),
            processes_per_worker: spec.worker().processes_per_worker,
            debug: mpijob_api::t9k::defaults::debug_enabled(spec),
            kubeflow: None,
        }
    }

    /// A Kubeflow MPIJob, checked: the launcher runs its first container's
    /// own command, which the template must give (the image's entrypoint
    /// is not known here).
    pub fn kubeflow(job: &kubeflow::MPIJob, r: &kubeflow::Resolved) -> Result<Source, String> {
        let path = "spec.mpiReplicaSpecs.Launcher.template.spec.containers[0]";
        let container = r
            .launcher
            .template
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .ok_or_else(|| format!("{path}: the launcher has no container; give one"))?;
        let mut cmd = container.command.clone().unwrap_or_default();
        cmd.extend(container.args.clone().unwrap_or_default());
        if cmd.is_empty() {
            return Err(format!(
                "{path}.command: not set, so the launcher runs its image's entrypoint, which local mode cannot know; give the command, e.g. command: [mpirun, -n, \"2\", /opt/mpi-examples/pi]"
            ));
        }
        let worker_image = r
            .worker
            .as_ref()
            .and_then(|w| w.template.spec.as_ref()?.containers.first()?.image.clone());
        Ok(Source {
            name: job.metadata.name.clone(),
            namespace: job.metadata.namespace.clone(),
            replicas: r.workers().max(1),
            sshd_path: contract::DEFAULT_SSHD_PATH.to_string(),
            image: worker_image.or_else(|| container.image.clone()),
            cmd,
            mpi_home: None,
            mca: Vec::new(),
            extra_args: Vec::new(),
            processes_per_worker: None,
            debug: false,
            kubeflow: Some(Kubeflow {
                implementation: r.mpi_implementation,
                slots_per_worker: r.slots_per_worker,
                run_launcher_as_worker: r.run_launcher_as_worker,
            }),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub job: String,
    pub namespace: String,
    pub workers: u32,
    pub root: bool,
    pub cmd: Vec<String>,
    /// The MPI container's image, only to say that it is not used.
    pub image: Option<String>,
    pub mpi_home: Option<String>,
    /// `KEY=VALUE`, as the launcher takes them.
    pub mca: Vec<String>,
    pub extra_args: Vec<String>,
    /// The pre-2023 schema's `worker.processesPerWorker`.
    pub processes_per_worker: Option<i32>,
    /// `runMode.debug`: the launcher holds instead of running mpirun.
    pub debug: bool,
    /// A Kubeflow MPIJob: the launcher runs its own command.
    pub kubeflow: Option<Kubeflow>,
    pub sshd_path: PathBuf,
    pub port: u16,
    /// A short random id: it names the namespaces, the bridge and the
    /// directory, so that runs side by side do not meet.
    pub id: String,
    pub dir: PathBuf,
    pub bridge: String,
    /// Workers 0..n, then the launcher, then (as root) the DNS server.
    pub hosts: Vec<Host>,
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

impl Plan {
    /// The plan for `job`; the error is the one line to show (bad input).
    pub fn new(job: &Source, workers: Option<u32>, root: bool) -> Result<Plan, String> {
        let rand = random_u64();
        let id = format!("{:06x}", rand & 0xff_ffff);
        // Without root: 127.a.b.0/24, a random one, so that runs side by
        // side do not share addresses.
        let base = if root {
            NET_BASE
        } else {
            Ipv4Addr::new(
                127,
                ((rand >> 24) % 254 + 1) as u8,
                ((rand >> 32) % 256) as u8,
                0,
            )
        };
        let port = if root { contract::DEFAULT_SSH_PORT } else { 0 };
        let dir = std::env::temp_dir().join(format!("mpijob-local-{id}"));
        Plan::build(job, workers, root, id, base, port, dir)
    }

    /// [`Plan::new`] with the random parts given.
    pub fn build(
        job: &Source,
        workers: Option<u32>,
        root: bool,
        id: String,
        base: Ipv4Addr,
        port: u16,
        dir: PathBuf,
    ) -> Result<Plan, String> {
        let name = job
            .name
            .clone()
            .ok_or("metadata.name: the manifest names no job; give metadata.name")?;
        let namespace = job
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let workers = match workers {
            Some(0) => {
                return Err(
                    "--workers 0: a job needs at least one worker; give --workers 1 or more".into(),
                )
            }
            Some(n) => n,
            None => job.replicas,
        };
        if !root && workers > 240 {
            return Err(format!(
                "--workers {workers}: without root, local mode has 240 loopback addresses; run as root or give fewer workers"
            ));
        }
        let mut sshd_path = PathBuf::from(&job.sshd_path);
        if !sshd_path.exists() && job.sshd_path != contract::DEFAULT_SSHD_PATH {
            sshd_path = PathBuf::from(contract::DEFAULT_SSHD_PATH);
        }
        let image = job.image.clone();
        let ns_prefix = format!("mpijob-{id}");
        let mut hosts = Vec::new();
        for i in 0..workers {
            let hostname = contract::worker_name(&name, i);
            hosts.push(Host {
                fqdn: Some(contract::worker_host(&name, &namespace, i)),
                addr: offset(base, FIRST_WORKER + i),
                netns: root.then(|| format!("{ns_prefix}-w{i}")),
                veth: root.then(|| format!("mj{id}w{i}")),
                worker: Some(i),
                launcher: false,
                hostname,
            });
        }
        let launcher = contract::launcher_name(&name);
        hosts.push(Host {
            fqdn: Some(format!(
                "{launcher}.{}.{namespace}.svc",
                contract::service_name(&name)
            )),
            hostname: launcher,
            addr: offset(base, LAUNCHER_OFFSET),
            netns: root.then(|| format!("{ns_prefix}-launcher")),
            veth: root.then(|| format!("mj{id}l")),
            // Under runLauncherAsWorker its host runs a worker agent too.
            worker: job
                .kubeflow
                .filter(|k| k.run_launcher_as_worker)
                .map(|_| workers),
            launcher: true,
        });
        if root {
            hosts.push(Host {
                hostname: "mpijob-dns".into(),
                fqdn: None,
                addr: offset(base, DNS_OFFSET),
                netns: Some(format!("{ns_prefix}-dns")),
                veth: Some(format!("mj{id}d")),
                worker: None,
                launcher: false,
            });
        }
        let mut plan = Plan {
            job: name,
            namespace,
            workers,
            root,
            cmd: job.cmd.clone(),
            image,
            mpi_home: job.mpi_home.clone(),
            mca: job.mca.clone(),
            extra_args: job.extra_args.clone(),
            processes_per_worker: job.processes_per_worker,
            debug: job.debug,
            kubeflow: job.kubeflow,
            sshd_path,
            port,
            bridge: format!("mjl-{id}"),
            id,
            dir,
            hosts,
        };
        if plan.port == 0 {
            plan.port = plan.free_port();
        }
        Ok(plan)
    }

    /// Without root: a port free on every worker address (2222 if it is).
    fn free_port(&self) -> u16 {
        let free = |port: u16| {
            self.hosts
                .iter()
                .filter(|h| h.worker.is_some())
                .all(|h| TcpListener::bind((h.addr, port)).is_ok())
        };
        if free(contract::DEFAULT_SSH_PORT) {
            return contract::DEFAULT_SSH_PORT;
        }
        for _ in 0..100 {
            let port = TcpListener::bind((self.hosts[0].addr, 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or(0);
            if port != 0 && free(port) {
                return port;
            }
        }
        contract::DEFAULT_SSH_PORT
    }

    /// Every tool present, or one line naming the missing one and its
    /// package.
    pub fn check_tools(&self) -> Result<(), String> {
        let mut tools: Vec<(&Path, &str)> = vec![(self.sshd_path.as_path(), "openssh-server")];
        if self.root {
            tools.push((Path::new(IP), "iproute2"));
            tools.push((Path::new(DNSMASQ), "dnsmasq-base"));
        }
        for (tool, package) in tools {
            if !tool.exists() {
                return Err(format!(
                    "{} is missing: local mode needs it; install it with `apt-get install -y {package}` (or run scripts/install-deps.sh run)",
                    tool.display()
                ));
            }
        }
        for file in ["/etc/hosts", "/etc/resolv.conf"] {
            if self.root && !Path::new(file).exists() {
                return Err(format!(
                    "{file} is missing: local mode binds each host's own {file} over it; create an empty one"
                ));
            }
        }
        Ok(())
    }

    pub fn worker(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// The hosts that run sshd: the workers, and the launcher under
    /// Kubeflow's runLauncherAsWorker.
    pub fn sshd_hosts(&self) -> u32 {
        self.hosts.iter().filter(|h| h.worker.is_some()).count() as u32
    }

    pub fn launcher_index(&self) -> usize {
        self.workers as usize
    }

    pub fn dns_index(&self) -> usize {
        self.workers as usize + 1
    }

    pub fn netns_prefix(&self) -> String {
        format!("mpijob-{}", self.id)
    }

    /// `198.18.0.1-198.18.0.12`, for the progress line.
    pub fn address_range(&self) -> String {
        let min = self.hosts.iter().map(|h| h.addr).min().unwrap();
        let max = self.hosts.iter().map(|h| h.addr).max().unwrap();
        format!("{min}-{max}")
    }

    pub fn links(&self) -> Vec<Link> {
        self.hosts
            .iter()
            .filter_map(|h| {
                Some(Link {
                    netns: h.netns.clone()?,
                    veth: h.veth.clone()?,
                    cidr: format!("{}/{NET_PREFIX}", h.addr),
                })
            })
            .collect()
    }

    /// The search domains of a pod in the job's namespace, with the job's
    /// own subdomain first, so that bare hostnames resolve as well.
    pub fn search(&self) -> String {
        let ns = &self.namespace;
        format!(
            "{}.{ns}.svc.{CLUSTER_DOMAIN} {ns}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}",
            contract::service_name(&self.job)
        )
    }

    /// Every host's resolv.conf, as root.
    pub fn resolv_conf(&self) -> String {
        format!(
            "nameserver {}\nsearch {}\noptions ndots:5 timeout:1 attempts:2\n",
            offset(NET_BASE, DNS_OFFSET),
            self.search()
        )
    }

    /// What the DNS server serves: each name under the cluster domain and
    /// as `<...>.svc`.
    pub fn dns_hosts(&self) -> String {
        self.hosts
            .iter()
            .filter_map(|h| {
                let fqdn = h.fqdn.as_ref()?;
                Some(format!("{} {fqdn}.{CLUSTER_DOMAIN} {fqdn}\n", h.addr))
            })
            .collect()
    }

    /// A host's /etc/hosts. As root, like a pod's: localhost and itself.
    /// Without root there is no DNS server: every host of the job.
    pub fn hosts_file(&self, host: &Host) -> String {
        let mut s =
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        let line = |h: &Host| match &h.fqdn {
            Some(f) => format!("{}\t{f}.{CLUSTER_DOMAIN} {f} {}\n", h.addr, h.hostname),
            None => format!("{}\t{}\n", h.addr, h.hostname),
        };
        if self.root {
            s += &line(host);
        } else {
            for h in &self.hosts {
                s += &line(h);
            }
        }
        s
    }

    pub fn dnsmasq_args(&self, hosts: &Path) -> Vec<String> {
        let dns = &self.hosts[self.dns_index()];
        vec![
            "--keep-in-foreground".into(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--bind-interfaces".into(),
            "--user=root".into(),
            "--log-facility=-".into(),
            format!("--listen-address={}", dns.addr),
            format!("--addn-hosts={}", hosts.display()),
            format!("--pid-file={}", self.dir.join("dnsmasq.pid").display()),
            // Answer for the job's zones here (NXDOMAIN when absent); there
            // is no upstream server to ask.
            "--local=/svc/".into(),
            format!("--local=/{CLUSTER_DOMAIN}/"),
            "--no-negcache".into(),
        ]
    }

    /// The ranks the job runs: workers × slots.
    pub fn ranks(&self) -> u64 {
        u64::from(self.sshd_hosts()) * u64::from(self.slots())
    }

    /// The slots of each host in the hostfile: what the T9k job asks of
    /// mpirun, or Kubeflow's slotsPerWorker.
    pub fn slots(&self) -> u32 {
        match self.kubeflow {
            Some(k) => k.slots_per_worker,
            None => mpijob_api::slots::of_valid(
                &self.extra_args,
                self.workers,
                self.processes_per_worker,
            ),
        }
    }

    /// Whether Open MPI's ranks should yield while they wait for messages:
    /// when there are more ranks than `cores`. An Open MPI rank spins
    /// unless it knows its host is oversubscribed, and local mode's hosts
    /// all share this machine's cores, which it cannot see; the spinning
    /// ranks then starve the ones with work to do (256 hello ranks on 2
    /// cores: 572 s spinning, 137 s yielding).
    pub fn yield_when_idle(&self, cores: usize) -> bool {
        self.ranks() > cores as u64
    }

    /// The launcher agent's arguments, as the controller gives them in a
    /// cluster, with this run's key, state and summary files. The slots
    /// per worker come from what the job asks of mpirun, as in a cluster.
    pub fn launcher_args(
        &self,
        ssh_dir: &Path,
        state_dir: &Path,
        termination_log: &Path,
        timeout: Duration,
    ) -> contract::LauncherArgs {
        let base = contract::LauncherArgs {
            job: Some(self.job.clone()),
            namespace: Some(self.namespace.clone()),
            workers: Some(self.workers),
            slots: self.slots(),
            port: self.port,
            ssh_dir: ssh_dir.to_path_buf(),
            state_dir: Some(state_dir.to_path_buf()),
            termination_log: termination_log.to_path_buf(),
            timeout,
            grace_period: LAUNCHER_GRACE_PERIOD,
            mpi_home: self.mpi_home.as_ref().map(PathBuf::from),
            mca: self.mca.clone(),
            extra_mpi_args: self.extra_args.clone(),
            hold: self.debug,
            cmd: self.cmd.clone(),
            ..contract::LauncherArgs::default()
        };
        let Some(k) = self.kubeflow else {
            return base;
        };
        // mpi-operator's hostfile: the launcher first when it is a worker,
        // each host by the name the Service gives it.
        let hosts = self
            .hosts
            .iter()
            .filter(|h| h.worker.is_some())
            .map(|h| h.fqdn.clone().expect("sshd hosts have a DNS name"));
        let mut hosts: Vec<String> = hosts.collect();
        hosts.rotate_right(usize::from(k.run_launcher_as_worker));
        contract::LauncherArgs {
            hosts,
            job: None,
            namespace: None,
            workers: None,
            mpi_implementation: Some(k.implementation),
            kubeflow: true,
            ..base
        }
    }

    /// A worker agent's arguments. Without root every worker listens on
    /// its own loopback address.
    pub fn worker_args(
        &self,
        host: &Host,
        ssh_dir: &Path,
        state_dir: &Path,
        finish_file: &Path,
    ) -> contract::WorkerArgs {
        contract::WorkerArgs {
            ssh_dir: ssh_dir.to_path_buf(),
            sshd_path: self.sshd_path.clone(),
            port: self.port,
            listen: (!self.root).then_some(IpAddr::V4(host.addr)),
            state_dir: Some(state_dir.to_path_buf()),
            finish_file: finish_file.to_path_buf(),
            grace_period: WORKER_GRACE_PERIOD,
            // The workers share the caller's memory cgroup (a login
            // session, say): an OOM kill there is not theirs to report.
            oom_watch: false,
            ..contract::WorkerArgs::default()
        }
    }
}

/// The address after `base` by `n`.
fn offset(base: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PI: &str = "apiVersion: batch.tensorstack.dev/v1beta1
kind: MPIJob
metadata:
  name: pi
spec:
  mca:
    btl: ^openib
  worker:
    replicas: 2
    extraMPIArgs: [-N, '1']
    cmd: [/opt/mpi-examples/pi, '1000']
    template:
      spec:
        containers:
          - name: mpi-worker
            image: mpijob/openmpi:latest
";

    fn plan(root: bool, workers: Option<u32>) -> Plan {
        let job = mpijob_api::manifest::parse(PI).unwrap();
        let base = if root {
            NET_BASE
        } else {
            Ipv4Addr::new(127, 9, 8, 0)
        };
        Plan::build(
            &Source::t9k(&job),
            workers,
            root,
            "ab12cd".into(),
            base,
            2222,
            "/tmp/mpijob-local-ab12cd".into(),
        )
        .unwrap()
    }

    #[test]
    fn as_root_each_host_has_a_namespace_and_an_address() {
        let p = plan(true, None);
        assert_eq!(p.workers, 2);
        assert_eq!(p.image.as_deref(), Some("mpijob/openmpi:latest"));
        let names: Vec<_> = p.hosts.iter().map(|h| h.hostname.as_str()).collect();
        assert_eq!(
            names,
            ["pi-worker-0", "pi-worker-1", "pi-launcher", "mpijob-dns"]
        );
        let links = p.links();
        assert_eq!(links[1].netns, "mpijob-ab12cd-w1");
        assert_eq!(links[1].veth, "mjab12cdw1");
        assert_eq!(links[1].cidr, "198.18.0.11/15");
        assert_eq!(links[2].netns, "mpijob-ab12cd-launcher");
        assert_eq!(links[3].cidr, "198.18.0.1/15");
        assert!(links.iter().all(|l| l.veth.len() <= 15));
        assert_eq!(p.bridge, "mjl-ab12cd");
        assert_eq!(
            p.resolv_conf(),
            "nameserver 198.18.0.1\nsearch pi.default.svc.cluster.local default.svc.cluster.local \
             svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:2\n"
        );
        assert_eq!(
            p.dns_hosts(),
            "198.18.0.10 pi-worker-0.pi.default.svc.cluster.local pi-worker-0.pi.default.svc\n\
             198.18.0.11 pi-worker-1.pi.default.svc.cluster.local pi-worker-1.pi.default.svc\n\
             198.18.0.2 pi-launcher.pi.default.svc.cluster.local pi-launcher.pi.default.svc\n"
        );
        assert!(p
            .hosts_file(&p.hosts[1])
            .ends_with("198.18.0.11\tpi-worker-1.pi.default.svc.cluster.local pi-worker-1.pi.default.svc pi-worker-1\n"));
    }

    #[test]
    fn ranks_yield_only_when_they_outnumber_the_cores() {
        let mut p = plan(true, Some(8));
        assert_eq!(p.ranks(), 8);
        assert!(p.yield_when_idle(2));
        assert!(!p.yield_when_idle(8));
        p.extra_args = vec!["-N".into(), "4".into()];
        assert_eq!(p.ranks(), 32);
        assert!(p.yield_when_idle(16));
    }

    #[test]
    fn workers_flag_overrides_replicas() {
        let p = plan(true, Some(8));
        assert_eq!(p.workers, 8);
        assert_eq!(p.hosts[7].addr, Ipv4Addr::new(198, 18, 0, 17));
        let job = mpijob_api::manifest::parse(PI).unwrap();
        let err = Plan::build(
            &Source::t9k(&job),
            Some(0),
            true,
            "x".into(),
            NET_BASE,
            2222,
            "/tmp/x".into(),
        )
        .unwrap_err();
        assert!(err.starts_with("--workers 0"), "{err}");
    }

    #[test]
    fn without_root_hosts_are_loopback_addresses_named_in_etc_hosts() {
        let p = plan(false, None);
        assert_eq!(p.hosts.len(), 3);
        assert!(p.links().is_empty());
        assert_eq!(p.hosts[0].addr, Ipv4Addr::new(127, 9, 8, 10));
        let hosts = p.hosts_file(&p.hosts[0]);
        assert!(hosts.contains("127.9.8.11\tpi-worker-1.pi.default.svc.cluster.local pi-worker-1.pi.default.svc pi-worker-1\n"), "{hosts}");
        assert!(hosts.contains("127.9.8.2\tpi-launcher."), "{hosts}");
    }

    #[test]
    fn launcher_gets_the_manifest_s_mpi_settings() {
        let p = plan(true, None);
        let a = p.launcher_args(
            Path::new("/t/ssh"),
            Path::new("/t/launcher"),
            Path::new("/t/log"),
            Duration::from_secs(60),
        );
        assert_eq!(
            a.to_argv().join(" "),
            "launcher --port 2222 --job pi --namespace default --workers 2 --slots 1 \
             --ssh-dir=/t/ssh --state-dir=/t/launcher --termination-log=/t/log --timeout 60s \
             --grace-period 5s --mca=btl=^openib --extra-mpi-args=-N --extra-mpi-args=1 \
             -- /opt/mpi-examples/pi 1000"
        );
    }

    #[test]
    fn ip_batches_build_and_remove_the_hosts() {
        use crate::local::net::{delete_commands, inside_commands, outside_commands};
        let p = plan(true, Some(1));
        let links = p.links();
        assert_eq!(
            outside_commands(&p.bridge, true, &links[..1]),
            "link add mjl-ab12cd type bridge\nlink set mjl-ab12cd up\n\
             netns add mpijob-ab12cd-w0\n\
             link add mjab12cdw0 type veth peer name eth0 netns mpijob-ab12cd-w0\n\
             link set mjab12cdw0 master mjl-ab12cd up\n"
        );
        assert_eq!(
            inside_commands(&links[0]),
            "addr add 198.18.0.10/15 dev eth0\nlink set eth0 up\nlink set lo up\n"
        );
        assert_eq!(
            delete_commands(Some(&p.bridge), &["mpijob-ab12cd-w0".into()]),
            "netns del mpijob-ab12cd-w0\nlink del mjl-ab12cd\n"
        );
    }
}
