//! The cluster-DNS stand-in of the end-to-end test cluster, which has no
//! CoreDNS and no kube-proxy.
//!
//! It watches Endpoints and Services in every namespace, writes the names
//! of `mpijob_tests::cluster_dns::records` to a hosts file, and runs dnsmasq
//! as its child to serve that file, and nothing else: dnsmasq reads neither
//! /etc/hosts nor /etc/resolv.conf, forwards nothing (names outside the
//! cluster domain get REFUSED) and answers NXDOMAIN for unknown names in the
//! cluster domain. After each change (settled for [`SETTLE`]) the file is
//! replaced atomically and dnsmasq is sent SIGHUP to re-read it.
//!
//! ```text
//! cluster-dns --kubeconfig FILE --listen ADDR --hosts-file FILE
//!             [--port 53] [--domain cluster.local]
//!             [--dnsmasq /usr/sbin/dnsmasq] [--pid-file FILE]
//! ```
//!
//! Logs to stderr. Watch errors are logged and retried forever. Exits 1 when
//! dnsmasq exits; on SIGTERM or SIGINT stops dnsmasq and exits 0.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Config};
use mpijob_tests::cluster_dns::{self, wire, Record};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{sleep_until, Instant};

/// How long a change may wait for more changes before the file is written.
const SETTLE: Duration = Duration::from_millis(20);
/// How long dnsmasq has to answer its first query.
const DNSMASQ_START: Duration = Duration::from_secs(10);
/// How long dnsmasq has to exit after SIGTERM before it is killed.
const DNSMASQ_STOP: Duration = Duration::from_secs(3);

#[derive(Parser, Debug)]
#[command(
    name = "cluster-dns",
    about = "Cluster DNS for the test cluster: Endpoints and Services served by dnsmasq"
)]
struct Args {
    /// The kubeconfig of the cluster to watch.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// The address dnsmasq listens on (UDP and TCP), and only that one.
    #[arg(long)]
    listen: IpAddr,
    /// The port dnsmasq listens on.
    #[arg(long, default_value_t = 53)]
    port: u16,
    /// The hosts file written for dnsmasq (replaced atomically: its directory
    /// must be writable).
    #[arg(long)]
    hosts_file: PathBuf,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    domain: String,
    /// The dnsmasq binary (Debian package dnsmasq-base).
    #[arg(long, default_value = "/usr/sbin/dnsmasq")]
    dnsmasq: PathBuf,
    /// Write this process's pid here (removed on a clean exit).
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

macro_rules! log {
    ($($arg:tt)*) => { eprintln!("{} cluster-dns: {}", utc_time(), format_args!($($arg)*)) };
}

/// `HH:MM:SS.mmm` (UTC), to line the log up with kubelet's and the pods'.
fn utc_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let s = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        now.subsec_millis()
    )
}

/// Watch retries: quick at first (the test cluster's API server restarts
/// fast), at most every 5 s, reset by any success.
struct Retry(Duration);

impl Iterator for Retry {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        Some(d)
    }
}

impl Backoff for Retry {
    fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
}

fn retry() -> Retry {
    Retry(Duration::from_millis(100))
}

/// Replace `path` with `text`: write a temporary file next to it, then
/// rename it over, so that dnsmasq never reads a partial file.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the hosts file path has no file name"))?;
    let tmp_name = format!(".{}.tmp.{}", name.to_string_lossy(), std::process::id());
    let tmp = dir.map_or_else(|| PathBuf::from(&tmp_name), |d| d.join(&tmp_name));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn send_signal(child: &Child, sig: libc::c_int) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid we own; the child is not reaped until
        // `wait` returns, so the pid cannot be reused meanwhile.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

/// Start dnsmasq serving `args.hosts_file` only.
fn spawn_dnsmasq(args: &Args, domain: &str) -> anyhow::Result<Child> {
    let mut cmd = Command::new(&args.dnsmasq);
    cmd.args([
        "--keep-in-foreground",
        // No configuration file, no /etc/hosts, no resolv.conf, no
        // upstream servers: every answer comes from the hosts file.
        "--conf-file=/dev/null",
        "--no-hosts",
        "--no-resolv",
        "--no-poll",
    ])
    .arg(format!("--addn-hosts={}", args.hosts_file.display()))
    // Unknown names in the cluster domain: NXDOMAIN, never forwarded. Names
    // outside it: REFUSED, there being no upstream server.
    .arg(format!("--local=/{domain}/"))
    .args(["--domain-needed", "--bogus-priv"])
    // Nothing to cache but the hosts file; no stale negative answers.
    .arg("--no-negcache")
    .arg("--bind-interfaces")
    .arg(format!("--listen-address={}", args.listen))
    .arg(format!("--port={}", args.port))
    // Stay root, so that the hosts file is readable on every SIGHUP
    // whatever its directory's permissions; no pid file.
    .args(["--user=root", "--group=root", "--pid-file="])
    .arg("--log-facility=-")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe. dnsmasq is spawned from the main
    // thread, which lives as long as this process: if this process dies
    // without stopping it, dnsmasq gets SIGTERM instead of lingering.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", args.dnsmasq.display()))?;
    // dnsmasq's log, except its line for each re-read of the hosts file:
    // this process logs each change itself.
    let stderr = child.stderr.take().expect("piped");
    let reread = format!("read {} - ", args.hosts_file.display());
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if !line.contains(&reread) {
                eprintln!("{line}");
            }
        }
    });
    Ok(child)
}

/// Wait until dnsmasq answers a query, or fail if it exits first.
async fn wait_answering(child: &mut Child, server: SocketAddr, domain: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + DNSMASQ_START;
    let probe = format!("cluster-dns-probe.{domain}");
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("dnsmasq exited at start-up: {status}");
        }
        let name = probe.clone();
        let answer = tokio::task::spawn_blocking(move || {
            wire::query(server, &name, wire::TYPE_A, Duration::from_millis(100))
        })
        .await?;
        if answer.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("dnsmasq does not answer on {server} after {DNSMASQ_START:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using {}", kubeconfig.display()))?;
    Ok(Client::try_from(config)?)
}

/// What the merged watch streams report: whether the stores changed, or a
/// watch error (already retried by the streams themselves).
enum Watched {
    Changed,
    Unchanged,
    Failed(&'static str, watcher::Error),
}

fn watch<K>(
    api: Api<K>,
    what: &'static str,
) -> (Store<K>, impl Stream<Item = Watched> + Send + 'static)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .backoff(retry())
        .reflect(writer)
        .map(move |ev| match ev {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                Watched::Changed
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => Watched::Unchanged,
            Err(e) => Watched::Failed(what, e),
        });
    (reader, stream)
}

async fn stop(mut child: Child) {
    send_signal(&child, libc::SIGTERM);
    if tokio::time::timeout(DNSMASQ_STOP, child.wait())
        .await
        .is_err()
    {
        log!("dnsmasq did not exit {DNSMASQ_STOP:?} after SIGTERM: killing it");
        let _ = child.kill().await;
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let domain = cluster_dns::normalize_domain(&args.domain).map_err(anyhow::Error::msg)?;
    if let Some(p) = &args.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    // Empty until the first lists arrive.
    let mut served: BTreeSet<Record> = BTreeSet::new();
    let mut text = String::new();
    write_atomically(&args.hosts_file, &text)
        .with_context(|| format!("writing {}", args.hosts_file.display()))?;
    let client = client(&args.kubeconfig).await?;

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut dnsmasq = spawn_dnsmasq(&args, &domain)?;
    let server = SocketAddr::new(args.listen, args.port);
    if let Err(e) = wait_answering(&mut dnsmasq, server, &domain).await {
        stop(dnsmasq).await;
        return Err(e);
    }
    log!(
        "dnsmasq (pid {}) serving {domain} on {server} from {}",
        dnsmasq.id().unwrap_or(0),
        args.hosts_file.display()
    );

    let (endpoints, ep_events) = watch(Api::<Endpoints>::all(client.clone()), "endpoints");
    let (services, svc_events) = watch(Api::<Service>::all(client), "services");
    let mut events = std::pin::pin!(futures::stream::select(ep_events, svc_events));
    // When to rebuild the file: SETTLE after the first unhandled change.
    let mut due: Option<Instant> = None;
    loop {
        tokio::select! {
            status = dnsmasq.wait() => {
                let status = status.context("waiting for dnsmasq")?;
                log!("dnsmasq exited: {status}");
                return Ok(ExitCode::FAILURE);
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            ev = events.next() => match ev {
                Some(Watched::Changed) => {
                    due.get_or_insert_with(|| Instant::now() + SETTLE);
                }
                Some(Watched::Unchanged) => {}
                Some(Watched::Failed(what, e)) => log!("{what} watch failed (retrying): {e}"),
                None => bail!("the watch streams ended"),
            },
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                due = None;
                let eps = endpoints.state();
                let svcs = services.state();
                let now = cluster_dns::records(
                    eps.iter().map(|e| e.as_ref()),
                    svcs.iter().map(|s| s.as_ref()),
                    &domain,
                );
                let new_text = cluster_dns::hosts_text(&now);
                if new_text == text {
                    continue;
                }
                if let Err(e) = write_atomically(&args.hosts_file, &new_text) {
                    log!("writing {} (retrying in 1 s): {e}", args.hosts_file.display());
                    due = Some(Instant::now() + Duration::from_secs(1));
                    continue;
                }
                send_signal(&dnsmasq, libc::SIGHUP);
                let added: Vec<_> = now.difference(&served).collect();
                let shown = if added.len() <= 4 {
                    format!(" {added:?}")
                } else {
                    String::new()
                };
                log!(
                    "{} names, {} records (+{} -{}){shown}",
                    cluster_dns::name_count(&now),
                    now.len(),
                    added.len(),
                    served.difference(&now).count()
                );
                served = now;
                text = new_text;
            }
        }
    }
    stop(dnsmasq).await;
    log!("stopped");
    Ok(ExitCode::SUCCESS)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let pid_file = args.pid_file.clone();
    let code = match run(args).await {
        Ok(code) => code,
        Err(e) => {
            log!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    if let Some(p) = pid_file {
        let _ = std::fs::remove_file(p);
    }
    code
}
