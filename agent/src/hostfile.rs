//! The hostfile mpirun reads: one worker per line, in the implementation's
//! syntax. Open MPI wants `host slots=N`; MPICH and Intel MPI (Hydra) want
//! `host:N`. [`render`] writes one; [`parse`] reads either kind back.

use std::net::IpAddr;
use std::path::Path;

use crate::errors::io_reason;
use crate::mpirun::Implementation;

/// The hostfile text for `hosts`, each with its slots: `slots[i]` for
/// `hosts[i]`.
pub fn render(implementation: Implementation, hosts: &[String], slots: &[u32]) -> String {
    assert_eq!(hosts.len(), slots.len(), "one slot count per host");
    hosts
        .iter()
        .zip(slots)
        .map(|(h, slots)| match implementation {
            Implementation::OpenMpi => format!("{h} slots={slots}\n"),
            Implementation::Mpich | Implementation::Intel => format!("{h}:{slots}\n"),
        })
        .collect()
}

/// Read and parse the hostfile given with `--hostfile` (the launcher's and
/// keygen's). The error is the one line to show.
pub fn read_given(path: &Path) -> Result<Vec<HostEntry>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--hostfile {}: {}", path.display(), io_reason(&e)))?;
    parse(&text).map_err(|e| format!("--hostfile {}: {e}", path.display()))
}

/// One host line of a hostfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// A host name or an address, as written.
    pub host: String,
    /// `slots=N` or `:N`; `None` when the line gives none (MPI then picks).
    pub slots: Option<u32>,
}

/// Read a hostfile in either syntax, line by line, so one file may even
/// mix them:
///
/// - Open MPI: `host`, `host slots=N`, `host slots=N max_slots=M` (also
///   `max-slots`). Other `key=value` options are MPI's to read and are
///   passed over.
/// - MPICH, Intel MPI (Hydra): `host:N`, optionally followed by Hydra's
///   options, e.g. `host:N ifhn=eth0 binding=…`, which are passed over.
///
/// `#` starts a comment, whole-line or trailing; blank lines are skipped.
/// A host listed twice stays listed twice, in file order, as MPI reads it
/// (Open MPI adds its slots up); callers that want each host once drop the
/// repeats. The error is one line: the line number, the line, and the fix.
pub fn parse(text: &str) -> Result<Vec<HostEntry>, String> {
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let entry =
            parse_line(line).map_err(|why| format!("line {} {:?}: {why}", i + 1, raw.trim()))?;
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(
            "no hosts: every line is blank or a comment; list one host per line, e.g. \
             `h1 slots=2` (Open MPI) or `h1:2` (MPICH, Intel MPI)"
                .into(),
        );
    }
    Ok(entries)
}

/// Each host once, in the order of its first line, with its slots: the sum
/// over its lines, as Open MPI counts a host listed twice, where a line
/// without a count gives `default_slots`.
pub fn merged(entries: &[HostEntry], default_slots: u32) -> (Vec<String>, Vec<u32>) {
    let mut hosts: Vec<String> = Vec::new();
    let mut slots: Vec<u32> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for e in entries {
        let n = e.slots.unwrap_or(default_slots);
        match index.get(e.host.as_str()) {
            Some(&i) => slots[i] = u32::saturating_add(slots[i], n),
            None => {
                index.insert(e.host.as_str(), hosts.len());
                hosts.push(e.host.clone());
                slots.push(n);
            }
        }
    }
    (hosts, slots)
}

/// One line, comments and outer white space gone.
fn parse_line(line: &str) -> Result<HostEntry, String> {
    let mut words = line.split_whitespace();
    let first = words.next().expect("a line that is not blank");
    // `host:N` (Hydra), unless the whole word is an IPv6 address.
    let (host, colon_slots) = match first.rsplit_once(':') {
        Some((host, n)) if first.parse::<IpAddr>().is_err() => {
            let slots = positive(n).ok_or_else(|| {
                format!(
                    "the slots after ':' must be a positive whole number, e.g. {}:2",
                    example_host(host)
                )
            })?;
            (host, Some(slots))
        }
        _ => (first, None),
    };
    check_host(host)?;
    let mut slots = None;
    let mut max_slots = None;
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!(
                "{word:?} is not an option; give one host per line, with options as key=value, \
                 e.g. {host} slots=2"
            ));
        };
        let target = match key {
            "slots" => &mut slots,
            "max_slots" | "max-slots" => &mut max_slots,
            // Hydra's (ifhn=, binding=, user=) and Open MPI's other options.
            _ => continue,
        };
        if target.is_some() {
            return Err(format!(
                "{key} is given twice; give it once, e.g. {host} {key}=2"
            ));
        }
        *target = Some(positive(value).ok_or_else(|| {
            format!("{key} must be a positive whole number, e.g. {host} {key}=2")
        })?);
    }
    if colon_slots.is_some() && slots.is_some() {
        return Err(format!(
            "slots given twice, as ':N' and as slots=N; give one, e.g. {host}:2 or {host} slots=2"
        ));
    }
    let slots = colon_slots.or(slots);
    if let (Some(s), Some(max)) = (slots, max_slots) {
        if max < s {
            return Err(format!(
                "max_slots={max} is less than slots={s}; raise max_slots or lower slots, \
                 e.g. {host} slots={max} max_slots={max}"
            ));
        }
    }
    Ok(HostEntry {
        host: host.to_string(),
        slots,
    })
}

/// A number that is at least 1, digits only (no sign, no white space).
fn positive(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n| n > 0)
}

/// A host name (letters, digits, `-`, `_`, dot-separated labels) or an
/// address.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("no host before ':'; give host:N, e.g. h1:2".into());
    }
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "host {host:?} contains {c:?}; give a host name or an address, e.g. h1 slots=2"
        ));
    }
    // One trailing dot is an absolute DNS name.
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.split('.').any(str::is_empty) {
        return Err(format!(
            "host {host:?} has an empty label; give a host name like pi-worker-0.pi.ns.svc"
        ));
    }
    Ok(())
}

/// The host to show in an example, or a stand-in when it is not usable.
fn example_host(host: &str) -> &str {
    if check_host(host).is_ok() {
        host
    } else {
        "h1"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec![
            "pi-worker-0.pi.team.svc".into(),
            "pi-worker-1.pi.team.svc".into(),
        ]
    }

    #[test]
    fn open_mpi_uses_slots_equals() {
        assert_eq!(
            render(Implementation::OpenMpi, &hosts(), &[2, 2]),
            "pi-worker-0.pi.team.svc slots=2\npi-worker-1.pi.team.svc slots=2\n"
        );
    }

    #[test]
    fn hydra_uses_host_colon_n() {
        let want = "pi-worker-0.pi.team.svc:4\npi-worker-1.pi.team.svc:4\n";
        assert_eq!(render(Implementation::Mpich, &hosts(), &[4, 4]), want);
        assert_eq!(render(Implementation::Intel, &hosts(), &[4, 4]), want);
        assert_eq!(render(Implementation::Mpich, &[], &[]), "");
        assert_eq!(
            render(Implementation::Mpich, &hosts(), &[1, 3]),
            "pi-worker-0.pi.team.svc:1\npi-worker-1.pi.team.svc:3\n"
        );
    }

    fn entry(host: &str, slots: Option<u32>) -> HostEntry {
        HostEntry {
            host: host.into(),
            slots,
        }
    }

    #[test]
    fn open_mpi_lines_parse() {
        let text = "pi-worker-0.pi.team.svc slots=2\n\
                    h1\n\
                    \th2   slots=4\t max_slots=8  \n\
                    h3 slots=1 max-slots=1\n\
                    h4 max_slots=3\n";
        assert_eq!(
            parse(text).unwrap(),
            [
                entry("pi-worker-0.pi.team.svc", Some(2)),
                entry("h1", None),
                entry("h2", Some(4)),
                entry("h3", Some(1)),
                entry("h4", None),
            ]
        );
    }

    #[test]
    fn hydra_lines_parse_and_their_options_are_passed_over() {
        let text = "pi-worker-0.pi.team.svc:4\nh1:1 ifhn=eth0\nh2:2 binding=user:0,1 user=mpi\n";
        assert_eq!(
            parse(text).unwrap(),
            [
                entry("pi-worker-0.pi.team.svc", Some(4)),
                entry("h1", Some(1)),
                entry("h2", Some(2)),
            ]
        );
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let text = "# Kubeflow hostfile\n\n   \n# h0 slots=9\nh1 slots=2 # the first\nh2:3#no space\r\n  # indented\n";
        assert_eq!(
            parse(text).unwrap(),
            [entry("h1", Some(2)), entry("h2", Some(3))]
        );
    }

    #[test]
    fn addresses_and_absolute_names_parse() {
        let text = "127.0.0.1 slots=2\n198.18.0.7:3\n::1\nfe80::1 slots=1\nh1.cluster.local.:2\n";
        assert_eq!(
            parse(text).unwrap(),
            [
                entry("127.0.0.1", Some(2)),
                entry("198.18.0.7", Some(3)),
                entry("::1", None),
                entry("fe80::1", Some(1)),
                entry("h1.cluster.local.", Some(2)),
            ]
        );
    }

    #[test]
    fn duplicates_are_kept_in_file_order() {
        assert_eq!(
            parse("h1 slots=1\nh2\nh1 slots=3\n").unwrap(),
            [
                entry("h1", Some(1)),
                entry("h2", None),
                entry("h1", Some(3))
            ]
        );
    }

    #[test]
    fn merged_lists_each_host_once_and_sums_its_slots() {
        let entries = parse("h2\nh1 slots=2\nh2:3\n10.0.0.1\nh1 slots=1\n").unwrap();
        let (hosts, slots) = merged(&entries, 4);
        assert_eq!(hosts, ["h2", "h1", "10.0.0.1"]);
        assert_eq!(slots, [4 + 3, 2 + 1, 4]);
        let (hosts, slots) = merged(&parse("h1:4294967295\nh1:9").unwrap(), 1);
        assert_eq!((hosts, slots), (vec!["h1".to_string()], vec![u32::MAX]));
    }

    #[test]
    fn a_bad_or_missing_hostfile_is_named() {
        let dir = std::env::temp_dir().join(format!("hostfile-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = read_given(&dir.join("missing")).unwrap_err();
        assert!(
            err.starts_with(&format!("--hostfile {}/missing: ", dir.display())),
            "{err}"
        );
        let bad = dir.join("bad");
        std::fs::write(&bad, "n1 slots=2\nn2 slots=zero\n").unwrap();
        assert_eq!(
            read_given(&bad).unwrap_err(),
            format!(
                "--hostfile {}: line 2 \"n2 slots=zero\": slots must be a positive whole number, e.g. n2 slots=2",
                bad.display()
            )
        );
        std::fs::write(&bad, "n1:3\n").unwrap();
        assert_eq!(
            read_given(&bad).unwrap(),
            [HostEntry {
                host: "n1".into(),
                slots: Some(3)
            }]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_render_writes_parses_back() {
        let hosts = hosts();
        for i in [
            Implementation::OpenMpi,
            Implementation::Mpich,
            Implementation::Intel,
        ] {
            let parsed = parse(&render(i, &hosts, &[3, 3])).unwrap();
            let want: Vec<HostEntry> = hosts.iter().map(|h| entry(h, Some(3))).collect();
            assert_eq!(parsed, want, "{i:?}");
        }
    }

    #[test]
    fn every_error_names_the_line_and_the_fix() {
        for (text, want) in [
            (
                "h0\n\nh1 slots=x\n",
                r#"line 3 "h1 slots=x": slots must be a positive whole number, e.g. h1 slots=2"#,
            ),
            (
                "h1 slots=0",
                r#"line 1 "h1 slots=0": slots must be a positive whole number, e.g. h1 slots=2"#,
            ),
            (
                "h1 slots=-2",
                r#"line 1 "h1 slots=-2": slots must be a positive whole number, e.g. h1 slots=2"#,
            ),
            (
                "h1 slots=",
                r#"line 1 "h1 slots=": slots must be a positive whole number, e.g. h1 slots=2"#,
            ),
            (
                "h1 max_slots=many",
                r#"line 1 "h1 max_slots=many": max_slots must be a positive whole number, e.g. h1 max_slots=2"#,
            ),
            (
                "h1 slots=1 slots=2",
                r#"line 1 "h1 slots=1 slots=2": slots is given twice; give it once, e.g. h1 slots=2"#,
            ),
            (
                "h1 slots=4 max_slots=2",
                r#"line 1 "h1 slots=4 max_slots=2": max_slots=2 is less than slots=4; raise max_slots or lower slots, e.g. h1 slots=2 max_slots=2"#,
            ),
            (
                "h1:x",
                r#"line 1 "h1:x": the slots after ':' must be a positive whole number, e.g. h1:2"#,
            ),
            (
                "h1:0 # none",
                r#"line 1 "h1:0 # none": the slots after ':' must be a positive whole number, e.g. h1:2"#,
            ),
            (
                "h1:",
                r#"line 1 "h1:": the slots after ':' must be a positive whole number, e.g. h1:2"#,
            ),
            (
                ":2",
                r#"line 1 ":2": no host before ':'; give host:N, e.g. h1:2"#,
            ),
            (
                "h1:2 slots=2",
                r#"line 1 "h1:2 slots=2": slots given twice, as ':N' and as slots=N; give one, e.g. h1:2 or h1 slots=2"#,
            ),
            (
                "h1 h2",
                r#"line 1 "h1 h2": "h2" is not an option; give one host per line, with options as key=value, e.g. h1 slots=2"#,
            ),
            (
                "h1 slots 2",
                r#"line 1 "h1 slots 2": "slots" is not an option; give one host per line, with options as key=value, e.g. h1 slots=2"#,
            ),
            (
                "mpi@h1 slots=2",
                r#"line 1 "mpi@h1 slots=2": host "mpi@h1" contains '@'; give a host name or an address, e.g. h1 slots=2"#,
            ),
            (
                "h1,h2",
                r#"line 1 "h1,h2": host "h1,h2" contains ','; give a host name or an address, e.g. h1 slots=2"#,
            ),
            (
                "pi..svc",
                r#"line 1 "pi..svc": host "pi..svc" has an empty label; give a host name like pi-worker-0.pi.ns.svc"#,
            ),
            (
                ".",
                r#"line 1 ".": host "." has an empty label; give a host name like pi-worker-0.pi.ns.svc"#,
            ),
            (
                "",
                "no hosts: every line is blank or a comment; list one host per line, e.g. `h1 slots=2` (Open MPI) or `h1:2` (MPICH, Intel MPI)",
            ),
            (
                "# only\n\n  \n",
                "no hosts: every line is blank or a comment; list one host per line, e.g. `h1 slots=2` (Open MPI) or `h1:2` (MPICH, Intel MPI)",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err(), want, "{text:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text is hosts or one error line, never a panic; every host
        /// read is one word with no character ssh or MPI would take for
        /// something else.
        #[test]
        fn any_text_is_hosts_or_one_error_line(text in ".{0,120}|([a-z0-9.:= #-]{0,20}\n){0,5}") {
            match parse(&text) {
                Ok(entries) => {
                    prop_assert!(!entries.is_empty());
                    for e in entries {
                        prop_assert!(check_host(&e.host).is_ok(), "{:?}", e.host);
                        prop_assert!(e.slots != Some(0));
                    }
                }
                Err(line) => prop_assert!(!line.contains('\n'), "{line:?}"),
            }
        }

        /// What `render` writes is one line per host and reads back the same,
        /// in both syntaxes.
        #[test]
        fn rendered_hostfiles_read_back(
            hosts in prop::collection::vec("[a-z][a-z0-9-]{0,10}(\\.[a-z0-9]{1,5}){0,3}", 1..6),
            slots in prop::collection::vec(1u32..1000, 6),
        ) {
            let slots = &slots[..hosts.len()];
            for i in [Implementation::OpenMpi, Implementation::Mpich, Implementation::Intel] {
                let text = render(i, &hosts, slots);
                prop_assert_eq!(text.lines().count(), hosts.len());
                let back = parse(&text).unwrap();
                let want: Vec<HostEntry> = hosts
                    .iter()
                    .zip(slots)
                    .map(|(h, &n)| HostEntry { host: h.clone(), slots: Some(n) })
                    .collect();
                prop_assert_eq!(back, want);
            }
        }
    }
}
