//! The pure parts of the cluster-DNS stand-in (`src/bin/cluster-dns.rs`):
//! the records it serves, built from Endpoints and Services, the hosts file
//! text dnsmasq reads them from, and a minimal DNS client ([`wire`]) used by
//! the stand-in's readiness probe and by the tests.
//!
//! The names follow the Kubernetes DNS specification where the test cluster
//! needs them, with one deliberate difference: not-ready addresses are served
//! like ready ones (the launcher must reach workers before they are ready).
//!
//! * `<hostname>.<svc>.<ns>.svc.<domain>` for every Endpoints address (ready
//!   or not) that has a `hostname`;
//! * `<svc>.<ns>.svc.<domain>` for a headless Service (`clusterIP: None`):
//!   every address (ready or not) of its Endpoints;
//! * `<svc>.<ns>.svc.<domain>` for a Service with cluster IPs: those IPs.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};

/// One served record: a fully qualified name (without the trailing dot) and
/// one of its addresses.
pub type Record = (String, IpAddr);

/// Whether `s` is an RFC 1123 label, as the API server validates names:
/// anything else would corrupt the hosts file or never match a query.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The cluster domain in canonical form (lower case, no leading or trailing
/// dot), or an error when it is not a sequence of labels.
pub fn normalize_domain(domain: &str) -> Result<String, String> {
    let d = domain.trim_matches('.').to_ascii_lowercase();
    if d.is_empty() || !d.split('.').all(is_label) {
        return Err(format!("invalid cluster domain {domain:?}"));
    }
    Ok(d)
}

fn is_headless(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| ip == "None")
}

/// The records for these Endpoints and Services. `domain` must be
/// normalized ([`normalize_domain`]). Objects without a namespace or name,
/// addresses that do not parse and names that are not labels are ignored.
pub fn records<'a>(
    endpoints: impl IntoIterator<Item = &'a Endpoints>,
    services: impl IntoIterator<Item = &'a Service>,
    domain: &str,
) -> BTreeSet<Record> {
    let mut out = BTreeSet::new();
    let mut headless: HashSet<(&str, &str)> = HashSet::new();
    for svc in services {
        let (Some(ns), Some(name)) = (
            svc.metadata.namespace.as_deref(),
            svc.metadata.name.as_deref(),
        ) else {
            continue;
        };
        if !is_label(ns) || !is_label(name) {
            continue;
        }
        if is_headless(svc) {
            headless.insert((ns, name));
            continue;
        }
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let fqdn = format!("{name}.{ns}.svc.{domain}");
        let ips = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter());
        for ip in ips.filter_map(|ip| ip.parse::<IpAddr>().ok()) {
            out.insert((fqdn.clone(), ip));
        }
    }
    for ep in endpoints {
        let (Some(ns), Some(name)) = (
            ep.metadata.namespace.as_deref(),
            ep.metadata.name.as_deref(),
        ) else {
            continue;
        };
        if !is_label(ns) || !is_label(name) {
            continue;
        }
        let svc_fqdn = format!("{name}.{ns}.svc.{domain}");
        let is_headless = headless.contains(&(ns, name));
        let addresses = ep.subsets.iter().flatten().flat_map(|s| {
            let ready = s.addresses.iter().flatten();
            let not_ready = s.not_ready_addresses.iter().flatten();
            ready.chain(not_ready)
        });
        for EndpointAddress { ip, hostname, .. } in addresses {
            let Ok(ip) = ip.parse::<IpAddr>() else {
                continue;
            };
            if let Some(h) = hostname.as_deref().filter(|h| is_label(h)) {
                out.insert((format!("{h}.{svc_fqdn}"), ip));
            }
            if is_headless {
                out.insert((svc_fqdn.clone(), ip));
            }
        }
    }
    out
}

/// The hosts file for `records`: one line per address, in address order,
/// its names sorted, each line ending in a newline. Empty for no records.
pub fn hosts_text(records: &BTreeSet<Record>) -> String {
    let mut by_ip: BTreeMap<IpAddr, Vec<&str>> = BTreeMap::new();
    for (name, ip) in records {
        by_ip.entry(*ip).or_default().push(name);
    }
    let mut out = String::new();
    for (ip, mut names) in by_ip {
        names.sort_unstable();
        out.push_str(&ip.to_string());
        for n in names {
            out.push(' ');
            out.push_str(n);
        }
        out.push('\n');
    }
    out
}

/// How many distinct names `records` has.
pub fn name_count(records: &BTreeSet<Record>) -> usize {
    records
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<BTreeSet<_>>()
        .len()
}

/// A minimal DNS client over UDP: enough to ask for A or AAAA records and
/// read the response code and addresses. For probes and tests, not a
/// resolver: no retries, no TCP fallback, no search domains. Messages are
/// encoded and decoded by hickory-proto.
pub mod wire {
    use std::io;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    pub use hickory_proto::op::ResponseCode;
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    pub use hickory_proto::rr::RecordType;
    use hickory_proto::rr::{Name, RData};

    pub const TYPE_A: RecordType = RecordType::A;
    pub const TYPE_AAAA: RecordType = RecordType::AAAA;
    pub const NOERROR: ResponseCode = ResponseCode::NoError;
    pub const SERVFAIL: ResponseCode = ResponseCode::ServFail;
    pub const NXDOMAIN: ResponseCode = ResponseCode::NXDomain;
    pub const REFUSED: ResponseCode = ResponseCode::Refused;

    /// A decoded response.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Response {
        pub id: u16,
        pub rcode: ResponseCode,
        /// The A and AAAA records of the answer section, in order.
        pub addrs: Vec<IpAddr>,
    }

    fn bad(e: impl std::fmt::Display) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("bad DNS message: {e}"))
    }

    /// A recursion-desired query for `name` of type `qtype`.
    pub fn encode_query(id: u16, name: &str, qtype: RecordType) -> io::Result<Vec<u8>> {
        let mut name = Name::from_ascii(name).map_err(bad)?;
        name.set_fqdn(true);
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(name, qtype));
        m.to_vec().map_err(bad)
    }

    /// Decode a response's header and answer addresses.
    pub fn decode_response(buf: &[u8]) -> io::Result<Response> {
        let m = Message::from_vec(buf).map_err(bad)?;
        if m.message_type() != MessageType::Response {
            return Err(bad("not a response"));
        }
        let addrs = m
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(IpAddr::from(Ipv4Addr::from(*a))),
                RData::AAAA(a) => Some(IpAddr::from(Ipv6Addr::from(*a))),
                _ => None,
            })
            .collect();
        Ok(Response {
            id: m.id(),
            rcode: m.response_code(),
            addrs,
        })
    }

    /// Ask `server` once for `name`'s `qtype` records, waiting at most
    /// `timeout` for the answer.
    pub fn query(
        server: SocketAddr,
        name: &str,
        qtype: RecordType,
        timeout: Duration,
    ) -> io::Result<Response> {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = UdpSocket::bind(local)?;
        sock.connect(server)?;
        sock.set_read_timeout(Some(timeout))?;
        // Unique enough per process and call; checked on the way back.
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let id =
            NEXT.fetch_add(1, Ordering::Relaxed) ^ (nanos as u16) ^ (std::process::id() as u16);
        sock.send(&encode_query(id, name, qtype)?)?;
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + timeout;
        loop {
            let n = sock.recv(&mut buf)?;
            // Not a DNS response, or another one: keep waiting for ours.
            if let Some(r) = decode_response(&buf[..n]).ok().filter(|r| r.id == id) {
                return Ok(r);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            sock.set_read_timeout(Some(left))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn ep(v: serde_json::Value) -> Endpoints {
        serde_json::from_value(v).unwrap()
    }

    fn headless(ns: &str, name: &str) -> Service {
        svc(json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": "None", "ports": [{"port": 22}]}
        }))
    }

    fn job_endpoints() -> Endpoints {
        ep(json!({
            "metadata": {"namespace": "ns1", "name": "pi"},
            "subsets": [{
                "addresses": [
                    {"ip": "10.0.0.2", "hostname": "pi-worker-0"},
                    {"ip": "10.0.0.1", "hostname": "pi-launcher"}
                ],
                "notReadyAddresses": [{"ip": "10.0.0.3", "hostname": "pi-worker-1"}],
                "ports": [{"port": 22}]
            }]
        }))
    }

    #[test]
    fn headless_service_gets_hostnames_and_every_address() {
        let eps = [job_endpoints()];
        let svcs = [headless("ns1", "pi")];
        let r = records(&eps, &svcs, "cluster.local");
        assert_eq!(
            hosts_text(&r),
            "10.0.0.1 pi-launcher.pi.ns1.svc.cluster.local pi.ns1.svc.cluster.local\n\
             10.0.0.2 pi-worker-0.pi.ns1.svc.cluster.local pi.ns1.svc.cluster.local\n\
             10.0.0.3 pi-worker-1.pi.ns1.svc.cluster.local pi.ns1.svc.cluster.local\n"
        );
        assert_eq!(r.len(), 6);
        assert_eq!(name_count(&r), 4);
    }

    #[test]
    fn endpoints_without_their_service_get_only_hostnames() {
        let eps = [job_endpoints()];
        let r = records(&eps, &[], "cluster.local");
        assert_eq!(
            hosts_text(&r),
            "10.0.0.1 pi-launcher.pi.ns1.svc.cluster.local\n\
             10.0.0.2 pi-worker-0.pi.ns1.svc.cluster.local\n\
             10.0.0.3 pi-worker-1.pi.ns1.svc.cluster.local\n"
        );
    }

    #[test]
    fn cluster_ip_service_gets_its_ips_and_not_its_endpoints() {
        let svcs = [
            svc(json!({
                "metadata": {"namespace": "default", "name": "kubernetes"},
                "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1", "fd00::1"],
                         "ports": [{"port": 443}]}
            })),
            // Old API servers set only clusterIP.
            svc(json!({
                "metadata": {"namespace": "default", "name": "old"},
                "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80}]}
            })),
            svc(json!({
                "metadata": {"namespace": "default", "name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}
            })),
        ];
        let eps = [ep(json!({
            "metadata": {"namespace": "default", "name": "kubernetes"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 6443}]}]
        }))];
        let r = records(&eps, &svcs, "cluster.local");
        assert_eq!(
            hosts_text(&r),
            "10.96.0.1 kubernetes.default.svc.cluster.local\n\
             10.96.0.9 old.default.svc.cluster.local\n\
             fd00::1 kubernetes.default.svc.cluster.local\n"
        );
    }

    #[test]
    fn output_is_sorted_and_independent_of_input_order() {
        let a = ep(json!({
            "metadata": {"namespace": "b", "name": "s"},
            "subsets": [{"addresses": [{"ip": "10.0.0.10", "hostname": "x"}, {"ip": "10.0.0.9", "hostname": "y"}]}]
        }));
        let b = ep(json!({
            "metadata": {"namespace": "a", "name": "s"},
            "subsets": [{"addresses": [{"ip": "10.0.0.10", "hostname": "x"}]}]
        }));
        let svcs = [headless("a", "s"), headless("b", "s")];
        let one = hosts_text(&records([&a, &b], &svcs, "cluster.local"));
        let two = hosts_text(&records([&b, &a], svcs.iter().rev(), "cluster.local"));
        assert_eq!(one, two);
        // Numeric address order (10.0.0.9 before 10.0.0.10), names sorted.
        assert_eq!(
            one,
            "10.0.0.9 s.b.svc.cluster.local y.s.b.svc.cluster.local\n\
             10.0.0.10 s.a.svc.cluster.local s.b.svc.cluster.local x.s.a.svc.cluster.local x.s.b.svc.cluster.local\n"
        );
    }

    #[test]
    fn bad_addresses_names_and_empty_objects_are_ignored() {
        let eps = [
            ep(json!({
                "metadata": {"namespace": "ns", "name": "s"},
                "subsets": [{"addresses": [
                    {"ip": "not-an-ip", "hostname": "a"},
                    {"ip": "10.0.0.1", "hostname": "Bad Name"},
                    {"ip": "10.0.0.2", "hostname": ""},
                    {"ip": "10.0.0.3", "hostname": "ok"}
                ]}]
            })),
            ep(json!({"metadata": {"namespace": "ns", "name": "empty"}})),
            ep(json!({"metadata": {"namespace": "ns", "name": "nosubsets"}, "subsets": []})),
            ep(json!({"metadata": {"name": "nonamespace"},
                      "subsets": [{"addresses": [{"ip": "10.0.0.4", "hostname": "h"}]}]})),
        ];
        let r = records(&eps, &[], "cluster.local");
        assert_eq!(hosts_text(&r), "10.0.0.3 ok.s.ns.svc.cluster.local\n");
    }

    #[test]
    fn no_objects_give_an_empty_file() {
        assert_eq!(hosts_text(&records([], [], "cluster.local")), "");
    }

    #[test]
    fn the_domain_is_used_as_given_once_normalized() {
        let d = normalize_domain(".Cluster.Test.").unwrap();
        assert_eq!(d, "cluster.test");
        let eps = [job_endpoints()];
        let r = records(&eps, &[], &d);
        assert!(r.contains(&(
            "pi-launcher.pi.ns1.svc.cluster.test".to_string(),
            "10.0.0.1".parse().unwrap()
        )));
        assert!(normalize_domain("").is_err());
        assert!(normalize_domain("a..b").is_err());
        assert!(normalize_domain("bad_domain").is_err());
    }

    #[test]
    fn wire_round_trip() {
        use hickory_proto::op::{Message, MessageType};
        use hickory_proto::rr::{RData, Record};

        let q = wire::encode_query(0x1234, "a.b.", wire::TYPE_A).unwrap();
        let asked = Message::from_vec(&q).unwrap();
        assert_eq!(asked.id(), 0x1234);
        assert!(asked.recursion_desired());
        assert_eq!(asked.queries()[0].name().to_ascii(), "a.b.");
        assert_eq!(asked.queries()[0].query_type(), wire::TYPE_A);
        // The response: the question echoed, one A and one AAAA record.
        let mut r = asked.clone();
        let name = asked.queries()[0].name().clone();
        r.set_message_type(MessageType::Response)
            .add_answer(Record::from_rdata(
                name.clone(),
                0,
                RData::A("198.18.5.10".parse::<std::net::Ipv4Addr>().unwrap().into()),
            ))
            .add_answer(Record::from_rdata(
                name,
                0,
                RData::AAAA("fd00::1".parse::<std::net::Ipv6Addr>().unwrap().into()),
            ));
        let bytes = r.to_vec().unwrap();
        let d = wire::decode_response(&bytes).unwrap();
        assert_eq!(d.id, 0x1234);
        assert_eq!(d.rcode, wire::NOERROR);
        assert_eq!(
            d.addrs,
            vec![
                "198.18.5.10".parse::<IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
        let mut nx = asked.clone();
        nx.set_message_type(MessageType::Response)
            .set_response_code(wire::NXDOMAIN);
        let nx = wire::decode_response(&nx.to_vec().unwrap()).unwrap();
        assert_eq!(nx.rcode, wire::NXDOMAIN);
        // A query is not a response; cut-short messages do not decode.
        assert!(wire::decode_response(&q).is_err());
        assert!(wire::decode_response(&bytes[..5]).is_err());
        assert!(wire::decode_response(&bytes[..bytes.len() - 1]).is_err());
    }
}
