//! The launcher's stub resolver: name → addresses, as glibc would answer,
//! for the wait's polls.
//!
//! It does what the wait needs and nothing more, in place of a general
//! resolver library (which was a tenth of the agent's binary):
//! - `/etc/hosts` first (local mode names its hosts there);
//! - `/etc/resolv.conf`: `nameserver` (port 53, in order), `search` and
//!   `domain`, `options ndots: timeout: attempts:`, with glibc's defaults;
//! - the search list as glibc walks it: a name with at least `ndots` dots
//!   is tried as it is first, others after the search domains; a name
//!   ending in `.` is tried only as it is;
//! - A, then AAAA when the name exists without an A record; NXDOMAIN or
//!   no address moves on to the next candidate; the lookup fails only when
//!   no server answered for any candidate (a refusal for one candidate,
//!   as a cluster DNS gives names outside its domain, is not a failure
//!   when another was answered "no such name");
//! - UDP only, one socket per query, connected to the server (answers from
//!   anywhere else are dropped), a random query id, and the question
//!   checked in the answer;
//! - nothing cached: a name that appears is seen at the next lookup.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

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

/// Record types asked for.
const A: u16 = 1;
const AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
/// The largest UDP answer read (RFC 1035's limit, without EDNS).
const MAX_UDP: usize = 512;

/// A query for `name`'s `qtype` records, recursion desired.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    if name.len() > 253 {
        return Err(format!("{name:?} is longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "{name:?} is not a DNS name: each dot-separated part must be 1 to 63 characters"
            ));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// What one answer says.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Records of the type asked for (possibly after a CNAME).
    Found(Vec<IpAddr>),
    /// NOERROR without such a record: the name exists, with no address of
    /// this type.
    NoData,
    /// NXDOMAIN: no such name.
    NoName,
    /// The server could not answer (SERVFAIL, REFUSED, …): ask the next.
    Failed(String),
}

/// Read `msg` as the answer to `query` (same id and question), or `None`
/// when it is not one (a stray or forged datagram: keep waiting).
pub fn answer(query: &[u8], msg: &[u8]) -> Option<Answer> {
    if msg.len() < 12 || msg[..2] != query[..2] || msg[2] & 0x80 == 0 {
        return None;
    }
    // The question, as sent: the name (case aside), its type and class.
    let question = &query[12..];
    let echoed = msg.get(12..12 + question.len())?;
    if u16::from_be_bytes([msg[4], msg[5]]) != 1 || !echoed.eq_ignore_ascii_case(question) {
        return None;
    }
    let qtype = u16::from_be_bytes([question[question.len() - 4], question[question.len() - 3]]);
    let truncated = msg[2] & 0x02 != 0;
    match msg[3] & 0x0f {
        0 => {}
        3 => return Some(Answer::NoName),
        2 => return Some(Answer::Failed("the server failed (SERVFAIL)".into())),
        5 => return Some(Answer::Failed("the server refused (REFUSED)".into())),
        code => return Some(Answer::Failed(format!("the server answered rcode {code}"))),
    }
    let count = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = 12 + question.len();
    let mut found = Vec::new();
    for _ in 0..count {
        at = skip_name(msg, at)?;
        let fixed = msg.get(at..at + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = msg.get(at + 10..at + 10 + len)?;
        at += 10 + len;
        if rtype != qtype || class != CLASS_IN {
            continue;
        }
        match (rtype, data.len()) {
            (A, 4) => found.push(IpAddr::from(<[u8; 4]>::try_from(data).ok()?)),
            (AAAA, 16) => found.push(IpAddr::from(<[u8; 16]>::try_from(data).ok()?)),
            _ => {}
        }
    }
    Some(match (found.is_empty(), truncated) {
        (false, _) => Answer::Found(found),
        (true, true) => Answer::Failed("the answer was truncated (TCP is not used)".into()),
        (true, false) => Answer::NoData,
    })
}

/// Past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len & 0xc0 {
            0xc0 => return Some(at + 2),
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + usize::from(len),
            _ => return None,
        }
    }
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

/// The resolver: resolv.conf and /etc/hosts, read once.
#[derive(Debug)]
pub struct Resolver {
    conf: Conf,
    hosts: String,
    ids: RandomState,
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
        Resolver {
            conf,
            hosts,
            ids: RandomState::new(),
        }
    }

    /// `name`'s addresses; empty when no candidate has any.
    pub async fn lookup_ip(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        let local = from_hosts(&self.hosts, name);
        if !local.is_empty() {
            return Ok(local);
        }
        let (mut failure, mut denied) = (None, false);
        for candidate in self.conf.candidates(name) {
            let answer = match self.ask(&candidate, A).await {
                Answer::NoData => match self.ask(&candidate, AAAA).await {
                    Answer::NoName => Answer::NoData,
                    other => other,
                },
                other => other,
            };
            match answer {
                Answer::Found(ips) => return Ok(ips),
                Answer::NoData | Answer::NoName => denied = true,
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

    /// Ask every server in turn, `attempts` rounds, until one answers.
    async fn ask(&self, name: &str, qtype: u16) -> Answer {
        let mut last = Answer::Failed("no name server configured".into());
        for _ in 0..self.conf.attempts {
            for server in &self.conf.nameservers {
                let mut h = self.ids.build_hasher();
                h.write(name.as_bytes());
                h.write_u128(
                    std::time::SystemTime::UNIX_EPOCH
                        .elapsed()
                        .unwrap_or_default()
                        .as_nanos(),
                );
                let id = h.finish() as u16;
                last = match query(id, name, qtype) {
                    Ok(q) => match exchange(*server, &q, self.conf.timeout).await {
                        Ok(a) => a,
                        Err(e) => Answer::Failed(format!("{server}: {e}")),
                    },
                    Err(e) => return Answer::Failed(e),
                };
                if !matches!(last, Answer::Failed(_)) {
                    return last;
                }
            }
        }
        last
    }
}

/// One query to one server over UDP, until its answer or `timeout`.
async fn exchange(server: SocketAddr, q: &[u8], timeout: Duration) -> std::io::Result<Answer> {
    let any: IpAddr = if server.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    socket.connect(server).await?;
    socket.send(q).await?;
    let mut buf = [0u8; MAX_UDP];
    let read = async {
        loop {
            let n = socket.recv(&mut buf).await?;
            if let Some(a) = answer(q, &buf[..n]) {
                return Ok(a);
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer in {} s", timeout.as_secs()),
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn queries_are_well_formed_and_names_checked() {
        let q = query(0x1234, "a.bc", AAAA).unwrap();
        assert_eq!(
            q,
            [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 28, 0, 1]
        );
        assert!(query(1, "a..b", A).unwrap_err().contains("1 to 63"));
        assert!(query(1, &"x".repeat(64), A).is_err());
        assert!(query(1, &["x"; 130].join("."), A)
            .unwrap_err()
            .contains("253"));
    }

    /// An answer to `q` with `rcode` and `records` (type, data), the
    /// first an alias (CNAME) when `alias` is set, names compressed.
    fn reply(q: &[u8], rcode: u8, alias: bool, records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = q.to_vec();
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        let n = records.len() + usize::from(alias);
        m[7] = n as u8;
        if alias {
            // CNAME to "t" + the question's name.
            m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 30, 0, 4, 1, b't', 0xc0, 12]);
        }
        for (t, data) in records {
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn answers_are_read_and_strays_dropped() {
        let q = query(7, "w.pi", A).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            answer(
                &q,
                &reply(&q, 0, true, &[(A, &[10, 0, 0, 2]), (A, &[10, 0, 0, 3])])
            ),
            Some(Answer::Found(vec![ip("10.0.0.2"), ip("10.0.0.3")]))
        );
        assert_eq!(answer(&q, &reply(&q, 0, false, &[])), Some(Answer::NoData));
        assert_eq!(answer(&q, &reply(&q, 3, false, &[])), Some(Answer::NoName));
        assert!(
            matches!(answer(&q, &reply(&q, 2, false, &[])), Some(Answer::Failed(e)) if e.contains("SERVFAIL"))
        );
        // Not ours: another id, another question, a query, garbage.
        let mut other = reply(&q, 0, false, &[(A, &[10, 0, 0, 2])]);
        other[1] = 8;
        assert_eq!(answer(&q, &other), None);
        let elsewhere = query(7, "x.pi", A).unwrap();
        assert_eq!(
            answer(&q, &reply(&elsewhere, 0, false, &[(A, &[1, 2, 3, 4])])),
            None
        );
        assert_eq!(answer(&q, &q), None);
        assert_eq!(answer(&q, &[0, 7, 0x81]), None);
        // Cut short inside a record: not an answer.
        let cut = reply(&q, 0, false, &[(A, &[10, 0, 0, 2])]);
        assert_eq!(answer(&q, &cut[..cut.len() - 2]), None);
        // Truncated and empty: a failure, not "no such name".
        let mut tc = reply(&q, 0, false, &[]);
        tc[2] |= 0x02;
        assert!(matches!(answer(&q, &tc), Some(Answer::Failed(_))));
    }

    #[test]
    fn aaaa_answers_give_ipv6() {
        let q = query(9, "w", AAAA).unwrap();
        let v6 = "fd00::5".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(
            answer(&q, &reply(&q, 0, false, &[(AAAA, &v6), (A, &[1, 1, 1, 1])])),
            Some(Answer::Found(vec!["fd00::5".parse().unwrap()]))
        );
    }

    /// A real exchange over loopback with a one-shot server that answers
    /// the first query, after a stray datagram from elsewhere.
    #[tokio::test]
    async fn looks_up_over_udp_through_the_search_list() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let serve = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut asked = Vec::new();
            loop {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                let q = buf[..n].to_vec();
                let name = String::from_utf8_lossy(&q[13..n - 5]).to_string();
                asked.push(name.clone());
                let a = if name.starts_with("w\u{2}pi\u{2}ns") {
                    reply(&q, 0, false, &[(A, &[10, 1, 2, 3])])
                } else {
                    reply(&q, 3, false, &[])
                };
                // A stray first: a wrong id from the same server.
                let mut stray = a.clone();
                stray[0] ^= 0xff;
                server.send_to(&stray, from).unwrap();
                server.send_to(&a, from).unwrap();
                if name.starts_with("w\u{2}pi\u{2}ns") {
                    return asked;
                }
            }
        });
        let conf = Conf {
            nameservers: vec![addr],
            search: vec!["nope".into(), "ns".into()],
            ndots: 5,
            timeout: Duration::from_secs(2),
            attempts: 1,
        };
        let r = Resolver::new(conf, String::new());
        assert_eq!(
            r.lookup_ip("w.pi").await.unwrap(),
            ["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        let asked = serve.join().unwrap();
        assert_eq!(asked.len(), 2, "{asked:?}");
    }

    /// NXDOMAIN through the search list, then REFUSED for the name as it
    /// is (outside the cluster domain): the name is missing, not an error.
    #[tokio::test]
    async fn refused_outside_the_domain_after_nxdomain_is_no_record() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = server.recv_from(&mut buf) {
                let q = buf[..n].to_vec();
                let in_domain = String::from_utf8_lossy(&q).contains("cluster");
                let a = reply(&q, if in_domain { 3 } else { 5 }, false, &[]);
                server.send_to(&a, from).unwrap();
            }
        });
        let conf = Conf {
            nameservers: vec![addr],
            search: vec!["ns.svc.cluster".into()],
            ndots: 5,
            timeout: Duration::from_secs(2),
            attempts: 1,
        };
        let r = Resolver::new(conf, String::new());
        assert_eq!(r.lookup_ip("w.pi.ns.svc").await, Ok(Vec::new()));
        // Only refusals: an error, naming what the server said.
        let conf = Conf {
            nameservers: vec![addr],
            ndots: 1,
            attempts: 1,
            ..Conf::default()
        };
        let r = Resolver::new(conf, String::new());
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
    }
}
