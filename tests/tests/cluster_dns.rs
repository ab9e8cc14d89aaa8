//! The cluster-DNS stand-in (src/bin/cluster-dns.rs) against the real API
//! server: Endpoints and Services become names within a second, removed
//! addresses stop resolving, unknown names get NXDOMAIN and nothing is
//! forwarded; it keeps retrying a broken watch, exits when dnsmasq dies,
//! stops dnsmasq on SIGTERM, and dnsmasq does not outlive it when killed.
//!
//! Needs root (dnsmasq binds port 53 on a 127.53.x.y address) and dnsmasq
//! (Debian package dnsmasq-base); fails, never skips, without them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use mpijob_tests::cluster_dns::wire::{self, Response};
use mpijob_tests::{Harness, TestNamespace};
use serde_json::json;

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
const DOMAIN: &str = "cluster.local";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running stand-in, stopped (SIGTERM, then SIGKILL) when dropped.
struct StandIn {
    child: Option<Child>,
    dir: PathBuf,
    server: SocketAddr,
}

impl StandIn {
    /// Start the stand-in with this kubeconfig on a fresh loopback address,
    /// and wait until it answers.
    fn start(kubeconfig: &Path) -> StandIn {
        assert!(
            Path::new(DNSMASQ).is_file(),
            "{DNSMASQ} is missing: the cluster-DNS stand-in needs it (apt-get install dnsmasq-base)"
        );
        // 127.53.x.y, distinct per process and per stand-in.
        let k = std::process::id()
            .wrapping_mul(8)
            .wrapping_add(COUNTER.fetch_add(1, Ordering::SeqCst));
        let listen = Ipv4Addr::new(127, 53, (k >> 8) as u8, k as u8);
        let dir =
            std::env::temp_dir().join(format!("cluster-dns-test-{}-{}", std::process::id(), k));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cluster-dns"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--hosts-file")
            .arg(dir.join("hosts"))
            .arg("--pid-file")
            .arg(dir.join("pid"))
            .args(["--domain", DOMAIN, "--dnsmasq", DNSMASQ])
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting cluster-dns");
        let mut s = StandIn {
            child: Some(child),
            dir,
            server: SocketAddr::new(IpAddr::V4(listen), 53),
        };
        let start = Instant::now();
        loop {
            if let Some(status) = s.child().try_wait().unwrap() {
                panic!("cluster-dns exited at start-up ({status}):\n{}", s.log());
            }
            // It says when dnsmasq answers; then so must dnsmasq.
            if s.log().contains("cluster-dns: dnsmasq (pid") {
                let probe = format!("probe.{DOMAIN}");
                s.query(&probe, wire::TYPE_A);
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "cluster-dns does not answer on {} after 15 s:\n{}",
                s.server,
                s.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// One query, answered within 500 ms, or a panic showing the log.
    fn query(&self, name: &str, qtype: wire::RecordType) -> Response {
        wire::query(self.server, name, qtype, Duration::from_millis(500)).unwrap_or_else(|e| {
            panic!(
                "no answer from cluster-dns on {} for {name}: {e}\n{}",
                self.server,
                self.log()
            )
        })
    }

    /// Query `name` until `ok` holds, for at most `within`; returns the time
    /// it took.
    async fn until(
        &self,
        name: &str,
        within: Duration,
        what: &str,
        ok: impl Fn(&Response) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let r = self.query(name, wire::TYPE_A);
            if ok(&r) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{name}: not {what} after {within:?}, last answer {r:?}\nhosts file:\n{}\nlog:\n{}",
                std::fs::read_to_string(self.dir.join("hosts")).unwrap_or_default(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The pid of the dnsmasq child.
    fn dnsmasq_pid(&mut self) -> u32 {
        let pid = self.child().id();
        let mut children = String::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let path = task.unwrap().path().join("children");
            children += &std::fs::read_to_string(path).unwrap_or_default();
            children.push(' ');
        }
        let kids: Vec<u32> = children
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(
            kids.len(),
            1,
            "cluster-dns should have one child, dnsmasq: {kids:?}"
        );
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", kids[0])).unwrap();
        assert_eq!(comm.trim(), "dnsmasq");
        kids[0]
    }

    /// Wait for the stand-in to exit by itself.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < within,
                "cluster-dns still runs after {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, and wait for the exit.
    fn terminate(&mut self) -> ExitStatus {
        signal(self.child().id(), libc::SIGTERM);
        self.wait_exit(Duration::from_secs(5))
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGTERM);
            for _ in 0..500 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("cluster-dns log ({}):\n{}", self.dir.display(), self.log());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a process this test started and has not reaped.
    assert_eq!(
        unsafe { libc::kill(pid as libc::pid_t, sig) },
        0,
        "kill {pid}"
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.sort();
    v
}

#[tokio::test]
async fn serves_endpoints_and_services_and_nothing_else() {
    let h = Harness::get();
    let client = h.client().await;
    let ns = TestNamespace::new(&client, &h, "dns").await;
    let mut dns = StandIn::start(&h.kubeconfig);
    let n = &ns.name;
    let (a, b) = (ip("198.18.5.10"), ip("198.18.5.11"));
    let name_a = format!("a.svc.{n}.svc.{DOMAIN}");
    let name_b = format!("b.svc.{n}.svc.{DOMAIN}");
    let name_svc = format!("svc.{n}.svc.{DOMAIN}");

    // Once the first lists are in, the API server's own Service resolves.
    let kubernetes = format!("kubernetes.default.svc.{DOMAIN}");
    let synced = dns
        .until(&kubernetes, Duration::from_secs(5), "resolvable", |r| {
            r.addrs.len() == 1
        })
        .await;
    eprintln!("start-up -> first lists served: {synced:?}");
    // Nothing yet.
    let r = dns.query(&name_a, wire::TYPE_A);
    assert_eq!(
        r.rcode,
        wire::NXDOMAIN,
        "{name_a} before its Endpoints: {r:?}"
    );

    // A headless Service without a selector, and its Endpoints by hand.
    let services: Api<Service> = Api::namespaced(client.clone(), n);
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "svc"},
        "spec": {"clusterIP": "None", "ports": [{"name": "ssh", "port": 22}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), n);
    let ep: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "svc"},
        "subsets": [{
            "addresses": [{"ip": "198.18.5.10", "hostname": "a"}],
            "notReadyAddresses": [{"ip": "198.18.5.11", "hostname": "b"}],
            "ports": [{"name": "ssh", "port": 22}]
        }]
    }))
    .unwrap();
    let created = Instant::now();
    endpoints.create(&PostParams::default(), &ep).await.unwrap();
    let api_time = created.elapsed();
    // Within a second of the Endpoints' creation (it takes some 25 ms).
    dns.until(&name_a, Duration::from_secs(1), "resolvable", |r| {
        r.addrs == [a]
    })
    .await;
    eprintln!(
        "Endpoints create -> {name_a} resolvable: {:?} (create call {api_time:?})",
        created.elapsed()
    );
    // The not-ready address has its name too; the headless name has both.
    let r = dns.query(&name_b, wire::TYPE_A);
    assert_eq!(
        (r.rcode, r.addrs.clone()),
        (wire::NOERROR, vec![b]),
        "{name_b}: {r:?}"
    );
    let r = dns.query(&name_svc, wire::TYPE_A);
    assert_eq!(sorted(r.addrs.clone()), vec![a, b], "{name_svc}: {r:?}");
    // No IPv6 address: an empty answer, not an error (getaddrinfo asks both).
    let r = dns.query(&name_a, wire::TYPE_AAAA);
    assert_eq!(
        (r.rcode, r.addrs.len()),
        (wire::NOERROR, 0),
        "{name_a} AAAA: {r:?}"
    );

    // b's address goes: its name stops resolving.
    let patched = Instant::now();
    endpoints
        .patch(
            "svc",
            &PatchParams::default(),
            &Patch::Merge(json!({"subsets": [{
                "addresses": [{"ip": "198.18.5.10", "hostname": "a"}],
                "ports": [{"name": "ssh", "port": 22}]
            }]})),
        )
        .await
        .unwrap();
    dns.until(&name_b, Duration::from_secs(3), "NXDOMAIN", |r| {
        r.rcode == wire::NXDOMAIN
    })
    .await;
    eprintln!(
        "Endpoints patch -> {name_b} NXDOMAIN: {:?}",
        patched.elapsed()
    );
    assert_eq!(dns.query(&name_a, wire::TYPE_A).addrs, [a]);
    assert_eq!(dns.query(&name_svc, wire::TYPE_A).addrs, [a]);

    // A Service with a cluster IP: its name is that IP.
    let web: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap();
    let web = services.create(&PostParams::default(), &web).await.unwrap();
    let cluster_ip = ip(web
        .spec
        .unwrap()
        .cluster_ip
        .as_deref()
        .expect("a cluster IP"));
    let name_web = format!("web.{n}.svc.{DOMAIN}");
    dns.until(&name_web, Duration::from_secs(2), "its cluster IP", |r| {
        r.addrs == [cluster_ip]
    })
    .await;

    // Deleting the Endpoints removes every name it gave.
    endpoints
        .delete("svc", &DeleteParams::default())
        .await
        .unwrap();
    dns.until(&name_a, Duration::from_secs(3), "NXDOMAIN", |r| {
        r.rcode == wire::NXDOMAIN
    })
    .await;
    assert_eq!(dns.query(&name_svc, wire::TYPE_A).rcode, wire::NXDOMAIN);

    // Unknown names in the cluster domain: NXDOMAIN.
    for name in [
        format!("nope.svc.{n}.svc.{DOMAIN}"),
        format!("nope.{DOMAIN}"),
    ] {
        let r = dns.query(&name, wire::TYPE_A);
        assert_eq!(r.rcode, wire::NXDOMAIN, "{name}: {r:?}");
    }
    // Names outside it are not forwarded: refused (or NXDOMAIN), at once
    // (`query` waits 500 ms at most).
    for name in ["example.com", "localhost", "nohost"] {
        let asked = Instant::now();
        let r = dns.query(name, wire::TYPE_A);
        assert!(
            r.rcode == wire::REFUSED || r.rcode == wire::NXDOMAIN,
            "{name} must not be forwarded: {r:?}"
        );
        assert!(r.addrs.is_empty(), "{name}: {r:?}");
        assert!(
            asked.elapsed() < Duration::from_millis(200),
            "{name} took {:?}",
            asked.elapsed()
        );
    }

    // The log has a line per change and nothing alarming.
    let log = dns.log();
    assert!(log.contains("cluster-dns: dnsmasq (pid"), "{log}");
    assert!(log.contains(" names, "), "{log}");
    assert!(!log.contains("watch failed"), "{log}");

    // SIGTERM stops dnsmasq too, and exits 0.
    let dnsmasq = dns.dnsmasq_pid();
    let status = dns.terminate();
    assert!(
        status.success(),
        "cluster-dns exited {status} on SIGTERM:\n{}",
        dns.log()
    );
    assert!(
        !Path::new(&format!("/proc/{dnsmasq}")).exists(),
        "dnsmasq (pid {dnsmasq}) outlived cluster-dns"
    );
    assert!(!dns.dir.join("pid").exists(), "the pid file is left behind");
    assert!(
        wire::query(
            dns.server,
            &name_web,
            wire::TYPE_A,
            Duration::from_millis(200)
        )
        .is_err(),
        "something still answers on {}",
        dns.server
    );
}

#[tokio::test]
async fn exits_when_dnsmasq_exits() {
    let h = Harness::get();
    let mut dns = StandIn::start(&h.kubeconfig);
    let dnsmasq = dns.dnsmasq_pid();
    signal(dnsmasq, libc::SIGKILL);
    let status = dns.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(1),
        "cluster-dns exited {status}:\n{}",
        dns.log()
    );
    assert!(
        dns.log().contains("cluster-dns: dnsmasq exited"),
        "{}",
        dns.log()
    );
}

#[tokio::test]
async fn keeps_serving_and_retrying_when_the_api_server_is_unreachable() {
    // The harness's kubeconfig, pointed at a port where nothing listens.
    let h = Harness::get();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!(
        "cluster-dns-test-kubeconfig-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut kc: serde_json::Value =
        mpijob_api::yaml::from_str(&std::fs::read_to_string(&h.kubeconfig).unwrap()).unwrap();
    for cluster in kc["clusters"].as_array_mut().expect("clusters") {
        cluster["cluster"]["server"] = format!("https://127.0.0.1:{port}").into();
    }
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, mpijob_api::yaml::to_string(&kc).unwrap()).unwrap();

    let mut dns = StandIn::start(&kubeconfig);
    let start = Instant::now();
    while dns.log().matches("watch failed").count() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no retried watch errors:\n{}",
            dns.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        dns.child().try_wait().unwrap().is_none(),
        "cluster-dns exited:\n{}",
        dns.log()
    );
    // Still answering, from the empty file.
    let r = dns.query(&format!("kubernetes.default.svc.{DOMAIN}"), wire::TYPE_A);
    assert_eq!(r.rcode, wire::NXDOMAIN, "{r:?}");
    assert_eq!(std::fs::read_to_string(dns.dir.join("hosts")).unwrap(), "");
    let status = dns.terminate();
    assert!(
        status.success(),
        "cluster-dns exited {status} on SIGTERM:\n{}",
        dns.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn dnsmasq_does_not_outlive_a_killed_stand_in() {
    let h = Harness::get();
    let mut dns = StandIn::start(&h.kubeconfig);
    let dnsmasq = dns.dnsmasq_pid();
    signal(dns.child().id(), libc::SIGKILL);
    dns.wait_exit(Duration::from_secs(5));
    // Its parent-death signal is SIGTERM: it exits, it is not left behind
    // holding the port.
    let start = Instant::now();
    // Gone, or a zombie waiting for init to reap it.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{dnsmasq}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    while alive() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "dnsmasq (pid {dnsmasq}) outlived its killed parent by 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "dnsmasq gone {:?} after its parent was killed",
        start.elapsed()
    );
}
