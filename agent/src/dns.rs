//! The launcher's resolver: name → addresses, as glibc would answer, for
//! the wait's polls. The DNS itself (queries, answers, UDP with TCP for
//! truncated answers, ids, timeouts and retries) is hickory-resolver's;
//! this module adds what glibc does that the wait relies on:
//! - `/etc/hosts` first (local mode names its hosts there);
//! - `/etc/resolv.conf` read as glibc reads it: `nameserver` (port 53, in
//!   order; a line it cannot read is skipped, and with none 127.0.0.1 is
//!   asked), `search` and `domain` (the last wins), `options ndots:
//!   timeout: attempts:` with glibc's defaults and bounds. hickory's own
//!   reader refuses the whole file over one bad line;
//! - the search list as glibc walks it: a name with at least `ndots` dots
//!   is tried as it is first, others after the search domains; a name
//!   ending in `.` is tried only as it is. Each candidate goes to hickory
//!   as an absolute name;
//! - A, then AAAA when the name exists without an A record; "no such name"
//!   or no address moves on to the next candidate; the lookup fails only
//!   when no server answered for any candidate (a refusal for one
//!   candidate, as a cluster DNS gives names outside its domain, is not a
//!   failure when another was answered "no such name"). hickory's own walk
//!   returns the last candidate's answer, which would make that refusal
//!   the result;
//! - nothing cached: a name that appears is seen at the next lookup.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolveError, TokioResolver};

/// What `/etc/resolv.conf` says, with glibc's defaults where it is silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conf {
    pub nameservers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    pub timeout: Duration,
    pub attempts: u32,
}

impl Default for Conf {
    fn default() -> Self {
        Conf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

impl Conf {
    /// Parse resolv.conf's text. Lines it does not know are ignored, as
    /// glibc ignores them; with no nameserver, glibc asks 127.0.0.1.
    pub fn parse(text: &str) -> Conf {
        let mut c = Conf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                        c.nameservers.push(SocketAddr::new(ip, 53));
                    }
                }
                // The last of `search` and `domain` wins.
                Some("search") => c.search = words.map(domain).collect(),
                Some("domain") => c.search = words.next().map(domain).into_iter().collect(),
                Some("options") => {
                    for opt in words {
                        let (key, value) = opt.split_once(':').unwrap_or((opt, ""));
                        let n = value.parse::<u32>().ok();
                        match (key, n) {
                            ("ndots", Some(n)) => c.ndots = n.min(15) as usize,
                            ("timeout", Some(n)) => {
                                c.timeout = Duration::from_secs(n.clamp(1, 30).into())
                            }
                            ("attempts", Some(n)) => c.attempts = n.clamp(1, 5),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if c.nameservers.is_empty() {
            c.nameservers
                .push(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 53));
        }
        c
    }

    /// The names to ask for, in order, for `name`.
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(absolute) = name.strip_suffix('.') {
            return vec![absolute.to_string()];
        }
        let searched = self.search.iter().map(|d| format!("{name}.{d}"));
        if name.matches('.').count() >= self.ndots {
            std::iter::once(name.to_string()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_string())).collect()
        }
    }
}

fn domain(w: &str) -> String {
    w.trim_end_matches('.').to_string()
}

/// The addresses `/etc/hosts`'s text gives `name`, IPv4 first.
pub fn from_hosts(text: &str, name: &str) -> Vec<IpAddr> {
    let name = name.trim_end_matches('.');
    let mut found: Vec<IpAddr> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split('#').next()?.split_whitespace();
            let ip = words.next()?.parse::<IpAddr>().ok()?;
            words.any(|w| w.eq_ignore_ascii_case(name)).then_some(ip)
        })
        .collect();
    found.sort_by_key(IpAddr::is_ipv6);
    found.dedup();
    found
}

/// A lookup's failure: no candidate had an address, and no server said
/// that any candidate does not exist (they all failed or timed out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError(pub String);

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one candidate's lookup found.
enum Answer {
    Found(Vec<IpAddr>),
    /// "No such name", or the name without an address.
    Absent,
    Failed(String),
}

/// The resolver: resolv.conf and /etc/hosts, read once.
pub struct Resolver {
    conf: Conf,
    hosts: String,
    dns: TokioResolver,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("conf", &self.conf)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// From `/etc/resolv.conf` and `/etc/hosts`. A missing hosts file is
    /// empty; a missing resolv.conf is an error, as the wait cannot look
    /// anything up without knowing where to ask.
    pub fn from_system() -> Result<Resolver, String> {
        let conf = std::fs::read_to_string("/etc/resolv.conf")
            .map_err(|e| format!("/etc/resolv.conf: {e}"))?;
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        Ok(Resolver::new(Conf::parse(&conf), hosts))
    }

    pub fn new(conf: Conf, hosts: String) -> Resolver {
        // Each server over UDP, and over TCP for answers too large for UDP,
        // as hickory sets up servers from resolv.conf.
        let servers: Vec<NameServerConfig> = conf
            .nameservers
            .iter()
            .flat_map(|s| [Protocol::Udp, Protocol::Tcp].map(|p| NameServerConfig::new(*s, p)))
            .collect();
        let mut opts = ResolverOpts::default();
        opts.timeout = conf.timeout;
        opts.attempts = conf.attempts as usize;
        // The hosts file is read here (above), and the search list walked
        // here: hickory sees only absolute names.
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        let dns = TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), servers),
            TokioConnectionProvider::default(),
        )
        .with_options(opts)
        .build();
        Resolver { conf, hosts, dns }
    }

    /// `name`'s addresses; empty when no candidate has any.
    pub async fn lookup_ip(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        let local = from_hosts(&self.hosts, name);
        if !local.is_empty() {
            return Ok(local);
        }
        let (mut failure, mut denied) = (None, false);
        for candidate in self.conf.candidates(name) {
            match self.ask(&candidate).await {
                Answer::Found(ips) => return Ok(ips),
                Answer::Absent => denied = true,
                Answer::Failed(e) => failure = Some(e),
            }
        }
        // A server that said "no such name" for one candidate works: a
        // failure for another (a cluster DNS refusing a name outside its
        // domain) does not make the name's absence an error.
        match failure {
            Some(e) if !denied => Err(LookupError(e)),
            _ => Ok(Vec::new()),
        }
    }

    /// One candidate's A records, or its AAAA records when it has no A.
    async fn ask(&self, candidate: &str) -> Answer {
        let name = match Name::from_ascii(candidate) {
            Ok(mut n) => {
                n.set_fqdn(true);
                n
            }
            Err(e) => return Answer::Failed(format!("{candidate}: {e}")),
        };
        // A first; AAAA only when the name exists without an A record.
        let v4 = self.dns.ipv4_lookup(name.clone()).await;
        let ips: Result<Vec<IpAddr>, _> = match v4 {
            Ok(found) if found.iter().next().is_some() => {
                Ok(found.iter().map(|a| a.0.into()).collect())
            }
            Ok(_) => Err(None),
            Err(e) => Err(Some(e)),
        };
        let ips = match ips {
            Ok(ips) => return Answer::Found(ips),
            Err(Some(e)) if answered(&e) != Some(ResponseCode::NoError) => {
                return self.failed_or_absent(candidate, &e)
            }
            Err(_) => self.dns.ipv6_lookup(name).await,
        };
        match ips {
            Ok(found) if found.iter().next().is_some() => {
                Answer::Found(found.iter().map(|a| a.0.into()).collect())
            }
            Ok(_) => Answer::Absent,
            Err(e) => self.failed_or_absent(candidate, &e),
        }
    }

    /// "No such name" or "no such record" is an absent name; any other
    /// answer, or none, is a failure.
    fn failed_or_absent(&self, candidate: &str, e: &ResolveError) -> Answer {
        match answered(e) {
            Some(ResponseCode::NXDomain | ResponseCode::NoError) => Answer::Absent,
            Some(code) => Answer::Failed(format!(
                "{candidate}: the name server answered {}",
                format!("{code:?}").to_uppercase()
            )),
            None => Answer::Failed(format!("{candidate}: {e}")),
        }
    }
}

/// The response code a server answered with, when the lookup failed on an
/// answer (rather than on no answer at all).
fn answered(e: &ResolveError) -> Option<ResponseCode> {
    match e.proto()?.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => Some(*response_code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use hickory_resolver::proto::op::{Message, MessageType, OpCode};
    use hickory_resolver::proto::rr::{RData, Record, RecordType};

    #[test]
    fn resolv_conf_as_a_pod_has_it() {
        let c = Conf::parse(
            "# written by the kubelet\nnameserver 10.96.0.10\nsearch ns.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:3 rotate\n",
        );
        assert_eq!(c.nameservers, ["10.96.0.10:53".parse().unwrap()]);
        assert_eq!(
            c.search,
            ["ns.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        );
        assert_eq!(
            (c.ndots, c.timeout, c.attempts),
            (5, Duration::from_secs(2), 3)
        );
    }

    #[test]
    fn resolv_conf_defaults_and_the_last_search_or_domain_wins() {
        let c = Conf::parse("domain a.example\nsearch b.example. c.example\nnameserver nonsense\n");
        assert_eq!(c.search, ["b.example", "c.example"]);
        assert_eq!(c.nameservers, ["127.0.0.1:53".parse().unwrap()]);
        assert_eq!(
            (c.ndots, c.timeout, c.attempts),
            (1, Duration::from_secs(5), 2)
        );
        let c = Conf::parse("search b.example\ndomain a.example\nnameserver ::1\n");
        assert_eq!(c.search, ["a.example"]);
        assert_eq!(c.nameservers, ["[::1]:53".parse().unwrap()]);
    }

    #[test]
    fn candidates_follow_ndots_like_glibc() {
        let c = Conf {
            search: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
            ndots: 5,
            ..Conf::default()
        };
        assert_eq!(
            c.candidates("pi-worker-0.pi"),
            [
                "pi-worker-0.pi.ns.svc.cluster.local",
                "pi-worker-0.pi.cluster.local",
                "pi-worker-0.pi"
            ]
        );
        assert_eq!(
            c.candidates("a.b.c.d.e.f"),
            [
                "a.b.c.d.e.f",
                "a.b.c.d.e.f.ns.svc.cluster.local",
                "a.b.c.d.e.f.cluster.local"
            ]
        );
        assert_eq!(c.candidates("host.example."), ["host.example"]);
    }

    #[test]
    fn hosts_file_names_and_aliases_ipv4_first() {
        let hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n# 10.0.0.9 pi-worker-0\n10.0.0.2 pi-worker-0.pi pi-worker-0 # the first\nfe80::2 pi-worker-0\n";
        assert_eq!(
            from_hosts(hosts, "PI-WORKER-0"),
            [
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fe80::2".parse().unwrap()
            ]
        );
        assert_eq!(
            from_hosts(hosts, "pi-worker-0.pi."),
            ["10.0.0.2".parse::<IpAddr>().unwrap()]
        );
        assert!(from_hosts(hosts, "pi-worker-1").is_empty());
    }

    /// A DNS server on loopback, on its own thread: `answer` gives each
    /// question's response code and addresses (A or AAAA as asked). Every
    /// question it is asked, as `name type`, goes to the returned list.
    /// With `stray`, each answer is preceded by one with another id.
    fn server(
        stray: bool,
        answer: impl Fn(&str, RecordType) -> (ResponseCode, Vec<IpAddr>) + Send + 'static,
    ) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(query) = q.queries().first().cloned() else {
                    continue;
                };
                let name = query.name().to_ascii();
                log.lock()
                    .unwrap()
                    .push(format!("{name} {}", query.query_type()));
                let (code, ips) = answer(name.trim_end_matches('.'), query.query_type());
                let mut m = Message::new();
                m.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(OpCode::Query)
                    .set_recursion_desired(true)
                    .set_recursion_available(true)
                    .set_response_code(code)
                    .add_query(query.clone());
                for ip in ips {
                    let data = match (ip, query.query_type()) {
                        (IpAddr::V4(v4), RecordType::A) => RData::A(v4.into()),
                        (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(v6.into()),
                        _ => continue,
                    };
                    m.add_answer(Record::from_rdata(query.name().clone(), 30, data));
                }
                if stray {
                    let mut other = m.clone();
                    other.set_id(q.id() ^ 0xffff);
                    sock.send_to(&other.to_vec().unwrap(), from).unwrap();
                }
                sock.send_to(&m.to_vec().unwrap(), from).unwrap();
            }
        });
        (addr, asked)
    }

    fn conf(server: SocketAddr, search: &[&str], ndots: usize) -> Conf {
        Conf {
            nameservers: vec![server],
            search: search.iter().map(|s| s.to_string()).collect(),
            ndots,
            timeout: Duration::from_secs(2),
            attempts: 1,
        }
    }

    /// A real exchange over loopback through the search list, each answer
    /// after a stray datagram with another id.
    #[tokio::test]
    async fn looks_up_over_udp_through_the_search_list() {
        let (addr, asked) = server(true, |name, t| match (name, t) {
            ("w.pi.ns", RecordType::A) => (ResponseCode::NoError, vec![[10, 1, 2, 3].into()]),
            _ => (ResponseCode::NXDomain, vec![]),
        });
        let r = Resolver::new(conf(addr, &["nope", "ns"], 5), String::new());
        assert_eq!(
            r.lookup_ip("w.pi").await.unwrap(),
            ["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        // "no such name" for the first candidate, an address for the second:
        // the name as it is was never asked for.
        let asked = asked.lock().unwrap().clone();
        assert_eq!(asked, ["w.pi.nope. A", "w.pi.ns. A"]);
    }

    /// A name with no A record but an AAAA record gives its IPv6 address.
    #[tokio::test]
    async fn aaaa_when_there_is_no_a() {
        let v6: IpAddr = "fd00::5".parse().unwrap();
        let (addr, asked) = server(false, move |_, t| match t {
            RecordType::AAAA => (ResponseCode::NoError, vec![v6]),
            _ => (ResponseCode::NoError, vec![]),
        });
        let r = Resolver::new(conf(addr, &[], 1), String::new());
        assert_eq!(r.lookup_ip("w.").await.unwrap(), [v6]);
        assert_eq!(*asked.lock().unwrap(), ["w. A", "w. AAAA"]);
    }

    /// NXDOMAIN through the search list, then REFUSED for the name as it
    /// is (outside the cluster domain): the name is missing, not an error.
    #[tokio::test]
    async fn refused_outside_the_domain_after_nxdomain_is_no_record() {
        let (addr, _) = server(false, |name, _| {
            if name.contains("cluster") {
                (ResponseCode::NXDomain, vec![])
            } else {
                (ResponseCode::Refused, vec![])
            }
        });
        let r = Resolver::new(conf(addr, &["ns.svc.cluster"], 5), String::new());
        assert_eq!(r.lookup_ip("w.pi.ns.svc").await, Ok(Vec::new()));
        // Only refusals: an error, naming what the server said.
        let r = Resolver::new(conf(addr, &[], 1), String::new());
        let e = r.lookup_ip("w.pi.ns.svc").await.unwrap_err();
        assert!(e.0.contains("REFUSED"), "{e}");
    }

    #[tokio::test]
    async fn no_server_is_an_error_and_no_name_is_empty() {
        // Nothing listens there: refused at once on loopback.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let conf = Conf {
            nameservers: vec![dead],
            timeout: Duration::from_secs(1),
            attempts: 1,
            ..Conf::default()
        };
        let r = Resolver::new(conf, "10.9.9.9 known\n".into());
        assert!(r.lookup_ip("unknown").await.is_err());
        // /etc/hosts answers without asking.
        assert_eq!(
            r.lookup_ip("known").await.unwrap(),
            ["10.9.9.9".parse::<IpAddr>().unwrap()]
        );
        // A server that says "no such name": an empty answer, no error.
        let (addr, _) = server(false, |_, _| (ResponseCode::NXDomain, vec![]));
        let r = Resolver::new(conf_of(addr), String::new());
        assert_eq!(r.lookup_ip("unknown").await, Ok(Vec::new()));
    }

    fn conf_of(server: SocketAddr) -> Conf {
        conf(server, &[], 1)
    }
}
