//! The launcher's wait, and `mpijob-agent wait`'s: every worker must
//! resolve in DNS and answer with an SSH banner on its port before mpirun
//! starts.
//!
//! One task per worker polls, paced by how many workers still wait (see
//! [`Pace`]): the last worker is polled every few milliseconds, so that
//! mpirun starts within milliseconds of the last sshd, while the load on DNS
//! and on the workers stays bounded however many there are. A resolved
//! address is looked up again after a second of refusals, in case the pod
//! came back with a new one. Nothing is cached between polls: the resolver
//! has no cache, so a name that appears is seen at the next poll.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::{Notify, Semaphore};

use crate::banner;
use crate::dns::Resolver;
use crate::errors::Exit;
use crate::init::Init;

/// How often one waiting worker is polled: a floor, a share of a budget
/// for all waiting workers together, and a slower pace once it has waited
/// long (it is then not about to come up within milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// The shortest interval, with one worker left.
    pub floor: Duration,
    /// Added up over every waiting worker: `waiting × per_waiting` is the
    /// interval, so the rate over all of them stays at most
    /// `1 / per_waiting`.
    pub per_waiting: Duration,
    /// After this long without success...
    pub patience: Duration,
    /// ...poll it at most this often.
    pub slow: Duration,
}

impl Pace {
    /// The interval before the next poll of a worker that has failed for
    /// `failing`, while `waiting` workers (itself included) are not up.
    pub fn interval(&self, waiting: usize, failing: Duration) -> Duration {
        let shared = self
            .per_waiting
            .saturating_mul(u32::try_from(waiting).unwrap_or(u32::MAX));
        let mut interval = self.floor.max(shared);
        if failing >= self.patience {
            interval = interval.max(self.slow);
        }
        interval
    }
}

/// DNS: at most 1000 lookups a second in all (each is one to four queries
/// with the search domains), every 25 ms for a name at best, every 250 ms
/// once it has been missing for 10 s (the pod is being scheduled or its
/// image pulled).
pub const DNS_PACE: Pace = Pace {
    floor: Duration::from_millis(25),
    per_waiting: Duration::from_millis(1),
    patience: Duration::from_secs(10),
    slow: Duration::from_millis(250),
};
/// The ssh port of a resolved worker: at most 5000 connects a second in all
/// (a refused connect is one SYN and one RST), every 2 ms for the last
/// worker, every 50 ms once it has refused for 10 s.
pub const CONNECT_PACE: Pace = Pace {
    floor: Duration::from_millis(2),
    per_waiting: Duration::from_micros(200),
    patience: Duration::from_secs(10),
    slow: Duration::from_millis(50),
};
/// At most this many DNS lookups in flight at once.
pub const MAX_LOOKUPS: usize = 32;
/// At most this many connections (connect and banner read) open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Look a resolved name up again after this long without a banner.
const RERESOLVE_AFTER: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BANNER_TIMEOUT: Duration = Duration::from_secs(2);
/// Progress lines: at most one per this interval, and again after
/// [`PROGRESS_REPEAT`] even when nothing changed.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);
pub const PROGRESS_REPEAT: Duration = Duration::from_secs(30);
/// How many waiting workers a progress line names.
const NAMED: usize = 10;

/// Where a worker stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Not polled yet.
    Unknown,
    /// The name does not resolve (NXDOMAIN or no address).
    NoDns,
    /// The lookup itself failed, e.g. no DNS server answers.
    DnsError(String),
    /// Resolved, but the port does not accept, e.g. `connection refused`.
    Unreachable(String),
    /// Accepted, but no `SSH-` banner came.
    NoBanner(String),
    Up,
}

impl Status {
    pub fn reason(&self) -> String {
        match self {
            Status::Unknown => "not checked yet".into(),
            Status::NoDns => "no DNS record".into(),
            Status::DnsError(e) => format!("DNS lookup failed: {e}"),
            Status::Unreachable(e) => e.clone(),
            Status::NoBanner(e) => format!("no SSH banner: {e}"),
            Status::Up => "up".into(),
        }
    }
}

/// The name a worker goes by in messages: the first label of a DNS name
/// (`pi-worker-3`), or the whole host for an address.
pub fn label(host: &str) -> &str {
    if host.parse::<IpAddr>().is_ok() {
        host
    } else {
        host.split('.').next().unwrap_or(host)
    }
}

/// `waiting for 2/8 workers: pi-worker-3 (no DNS record), pi-worker-5
/// (connection refused)`.
pub fn progress_line(hosts: &[String], status: &[Status]) -> String {
    let waiting: Vec<String> = hosts
        .iter()
        .zip(status)
        .filter(|(_, s)| **s != Status::Up)
        .map(|(h, s)| format!("{} ({})", label(h), s.reason()))
        .collect();
    let mut line = format!(
        "waiting for {}/{} workers: {}",
        waiting.len(),
        hosts.len(),
        waiting
            .iter()
            .take(NAMED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    if waiting.len() > NAMED {
        line.push_str(&format!(" and {} more", waiting.len() - NAMED));
    }
    line
}

/// What answers on the hosts' ssh port: the advice at the timeout differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// `mpijob-agent worker` (the launcher's workers).
    Agent,
    /// The image's own sshd (a Kubeflow MPIJob's workers, for `wait`).
    Sshd,
}

/// The error at the timeout: every missing worker, with its full host name
/// and why.
pub fn timeout_message(
    timeout: Duration,
    port: u16,
    hosts: &[String],
    status: &[Status],
    server: Server,
) -> String {
    let missing: Vec<String> = hosts
        .iter()
        .zip(status)
        .filter(|(_, s)| **s != Status::Up)
        .map(|(h, s)| format!("{h} ({})", s.reason()))
        .collect();
    let runs = match server {
        Server::Agent => format!("run `mpijob-agent worker --port {port}`"),
        Server::Sshd => format!("run sshd on port {port}"),
    };
    format!(
        "--timeout {}: {}/{} workers never came up: {}; check that those workers {runs} and that their names resolve from here, or raise --timeout",
        mpijob_api::duration::format(timeout),
        missing.len(),
        hosts.len(),
        missing.join(", ")
    )
}

/// How the wait ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every host answered; with this machine's address on the way to
    /// them (what they can call back to), and the address each host
    /// answered on, in the order of the hosts.
    AllUp(Option<IpAddr>, Vec<Option<IpAddr>>),
    /// The timeout passed; with every host's status then, for
    /// [`timeout_message`].
    TimedOut(Vec<Status>),
    /// A terminating signal arrived.
    Stopped(Signal),
}

struct Shared {
    status: Mutex<Vec<Status>>,
    /// How many hosts are not up yet.
    waiting: AtomicUsize,
    lookups: Semaphore,
    connections: Semaphore,
    /// Our end of the last connection that got a banner.
    local: Mutex<Option<IpAddr>>,
    /// The address each host answered on.
    answered: Mutex<Vec<Option<IpAddr>>>,
    notify: Notify,
}

/// Wait until every host is up, the timeout passes, or `stop` reports a
/// terminating signal (it is called every few milliseconds). Progress lines
/// go to the log.
pub async fn wait(
    hosts: &[String],
    port: u16,
    timeout: Duration,
    mut stop: impl FnMut() -> Option<Signal>,
) -> Outcome {
    let start = Instant::now();
    let resolver = match Resolver::from_system() {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            if hosts.iter().any(|h| h.parse::<IpAddr>().is_err()) {
                tracing::warn!("cannot set up DNS from /etc/resolv.conf: {e}");
            }
            None
        }
    };
    let shared = Arc::new(Shared {
        status: Mutex::new(vec![Status::Unknown; hosts.len()]),
        waiting: AtomicUsize::new(hosts.len()),
        lookups: Semaphore::new(MAX_LOOKUPS),
        connections: Semaphore::new(MAX_CONNECTIONS),
        local: Mutex::new(None),
        answered: Mutex::new(vec![None; hosts.len()]),
        notify: Notify::new(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (i, host) in hosts.iter().enumerate() {
        let shared = shared.clone();
        let resolver = resolver.clone();
        let host = host.clone();
        tasks.spawn(async move { poll_one(i, host, port, resolver, shared).await });
    }
    let mut printed: Option<(String, Instant)> = None;
    let outcome = loop {
        if shared.waiting.load(Ordering::SeqCst) == 0 {
            break Outcome::AllUp(
                *shared.local.lock().unwrap(),
                shared.answered.lock().unwrap().clone(),
            );
        }
        if let Some(sig) = stop() {
            break Outcome::Stopped(sig);
        }
        let status = shared.status.lock().unwrap().clone();
        if start.elapsed() >= timeout {
            break Outcome::TimedOut(status);
        }
        if !status.contains(&Status::Unknown) {
            let line = progress_line(hosts, &status);
            let due = match &printed {
                None => true,
                Some((last, at)) => {
                    (*last != line && at.elapsed() >= PROGRESS_EVERY)
                        || at.elapsed() >= PROGRESS_REPEAT
                }
            };
            if due {
                tracing::info!("{line}");
                printed = Some((line, Instant::now()));
            }
        }
        let left = timeout.saturating_sub(start.elapsed());
        tokio::select! {
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(20).min(left)) => {}
        }
    };
    tasks.abort_all();
    outcome
}

/// [`wait`] on a single-threaded tokio runtime that is gone again when this
/// returns (before any child starts), stopped by SIGTERM, SIGINT or SIGHUP
/// as `init` reads them.
pub fn wait_blocking(
    init: &mut Init,
    hosts: &[String],
    port: u16,
    timeout: Duration,
) -> Result<Outcome, Exit> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Exit::error(e.into()))?;
    let outcome = runtime.block_on(wait(hosts, port, timeout, || {
        let events = init.wait(None, Duration::ZERO);
        let _ = init.reap();
        events
            .signals
            .into_iter()
            .find(|s| matches!(s, Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP))
    }));
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(outcome)
}

/// How a wait stopped by `sig` ends: 128 + the signal.
pub fn stopped(sig: Signal) -> Exit {
    let code = 128 + sig as i32;
    Exit::signal(
        sig,
        format!("received {sig} while waiting for the workers; exit code {code}"),
    )
}

async fn poll_one(
    i: usize,
    host: String,
    port: u16,
    resolver: Option<Arc<Resolver>>,
    shared: Arc<Shared>,
) {
    let set = |s: Status| {
        let up = s == Status::Up;
        shared.status.lock().unwrap()[i] = s;
        if up {
            shared.waiting.fetch_sub(1, Ordering::SeqCst);
            shared.notify.notify_one();
        }
    };
    let waiting = || shared.waiting.load(Ordering::Relaxed);
    let literal = host.parse::<IpAddr>().ok();
    let no_dns_since = Instant::now();
    // Kept across lookups: a worker refuses from when its pod has an
    // address until its sshd listens, which is long while its image pulls.
    let mut refused_since: Option<Instant> = None;
    loop {
        let addrs = match (literal, &resolver) {
            (Some(ip), _) => vec![ip],
            (None, Some(r)) => {
                let found = {
                    let _turn = shared.lookups.acquire().await;
                    r.lookup_ip(host.as_str()).await
                };
                match found {
                    Ok(found) => found,
                    Err(e) => {
                        set(Status::DnsError(e.to_string()));
                        let pause = DNS_PACE.interval(waiting(), no_dns_since.elapsed());
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                }
            }
            (None, None) => {
                set(Status::DnsError("no usable /etc/resolv.conf".into()));
                return;
            }
        };
        if addrs.is_empty() {
            set(Status::NoDns);
            tokio::time::sleep(DNS_PACE.interval(waiting(), no_dns_since.elapsed())).await;
            continue;
        }
        // Resolved: knock on the port until a banner comes, for a while.
        let resolved = Instant::now();
        loop {
            let mut last = Status::Unknown;
            for ip in &addrs {
                let local;
                (last, local) = {
                    let _turn = shared.connections.acquire().await;
                    knock(SocketAddr::new(*ip, port)).await
                };
                if last == Status::Up {
                    *shared.local.lock().unwrap() = local;
                    shared.answered.lock().unwrap()[i] = Some(*ip);
                    set(Status::Up);
                    return;
                }
            }
            set(last);
            if literal.is_none() && resolved.elapsed() >= RERESOLVE_AFTER {
                break;
            }
            let failing = refused_since.get_or_insert_with(Instant::now).elapsed();
            tokio::time::sleep(CONNECT_PACE.interval(waiting(), failing)).await;
        }
    }
}

/// Connect and read the `SSH-` banner. Returns the status and our end's
/// address once connected.
pub async fn knock(addr: SocketAddr) -> (Status, Option<IpAddr>) {
    let mut stream = match banner::connect(addr, CONNECT_TIMEOUT).await {
        Ok(stream) => stream,
        Err(why) => return (Status::Unreachable(why), None),
    };
    let local = stream.local_addr().ok().map(|a| a.ip());
    let status = match banner::read(&mut stream, BANNER_TIMEOUT).await {
        Ok(_) => Status::Up,
        Err(why) => Status::NoBanner(why.to_string()),
    };
    (status, local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_are_paced_by_how_many_wait_and_for_how_long() {
        let ms = Duration::from_millis;
        // The last worker: the floor.
        assert_eq!(CONNECT_PACE.interval(1, ms(100)), ms(2));
        assert_eq!(DNS_PACE.interval(1, ms(100)), ms(25));
        // Many: the budget is shared, 5000 connects and 1000 lookups a
        // second in all.
        assert_eq!(
            CONNECT_PACE.interval(1024, ms(100)),
            Duration::from_micros(204_800)
        );
        assert_eq!(DNS_PACE.interval(1024, ms(100)), ms(1024));
        for waiting in [1, 10, 100, 1000, 10_000] {
            let rate = waiting as f64 / CONNECT_PACE.interval(waiting, ms(0)).as_secs_f64();
            assert!(rate <= 5000.0, "{waiting}: {rate}");
            let rate = waiting as f64 / DNS_PACE.interval(waiting, ms(0)).as_secs_f64();
            assert!(rate <= 1000.0, "{waiting}: {rate}");
        }
        // Long waits slow down, never speed up.
        assert_eq!(CONNECT_PACE.interval(1, Duration::from_secs(10)), ms(50));
        assert_eq!(DNS_PACE.interval(1, Duration::from_secs(11)), ms(250));
        assert_eq!(DNS_PACE.interval(1024, Duration::from_secs(11)), ms(1024));
    }

    fn hosts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("pi-worker-{i}.pi.ns.svc")).collect()
    }

    #[test]
    fn progress_names_each_waiting_worker_and_why() {
        let mut status = vec![Status::Up; 8];
        status[3] = Status::NoDns;
        status[5] = Status::Unreachable("connection refused".into());
        assert_eq!(
            progress_line(&hosts(8), &status),
            "waiting for 2/8 workers: pi-worker-3 (no DNS record), pi-worker-5 (connection refused)"
        );
    }

    #[test]
    fn progress_lines_stay_short_for_many_workers() {
        let status = vec![Status::NoDns; 64];
        let line = progress_line(&hosts(64), &status);
        assert!(line.starts_with("waiting for 64/64 workers: pi-worker-0 (no DNS record), "));
        assert!(
            line.ends_with("pi-worker-9 (no DNS record) and 54 more"),
            "{line}"
        );
    }

    #[test]
    fn labels_are_first_dns_labels_or_addresses() {
        assert_eq!(label("pi-worker-3.pi.ns.svc"), "pi-worker-3");
        assert_eq!(label("node7"), "node7");
        assert_eq!(label("198.18.0.7"), "198.18.0.7");
        assert_eq!(label("::1"), "::1");
    }

    #[test]
    fn timeout_names_every_missing_worker_in_full() {
        let status = vec![
            Status::Up,
            Status::NoDns,
            Status::NoBanner("the connection was closed".into()),
        ];
        assert_eq!(
            timeout_message(
                Duration::from_secs(3),
                2222,
                &hosts(3),
                &status,
                Server::Agent
            ),
            "--timeout 3s: 2/3 workers never came up: pi-worker-1.pi.ns.svc (no DNS record), \
             pi-worker-2.pi.ns.svc (no SSH banner: the connection was closed); check that those \
             workers run `mpijob-agent worker --port 2222` and that their names resolve from here, \
             or raise --timeout"
        );
        assert_eq!(
            timeout_message(Duration::from_secs(1), 22, &hosts(3), &status, Server::Sshd),
            "--timeout 1s: 2/3 workers never came up: pi-worker-1.pi.ns.svc (no DNS record), \
             pi-worker-2.pi.ns.svc (no SSH banner: the connection was closed); check that those \
             workers run sshd on port 22 and that their names resolve from here, or raise --timeout"
        );
    }
}
