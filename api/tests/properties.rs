//! Property tests: the parsers and checks never panic, whatever the input,
//! and every error names a field.

use std::time::Duration;

use mpijob_api::{duration, manifest, sshclient, sshkey, validate};
use proptest::prelude::*;
use serde_json::{json, Value};

const PI: &str = include_str!("../../examples/pi/pi.yaml");

/// Where a field error may point: the manifest's own top-level keys, or
/// `manifest` for a text that is not a YAML or JSON document at all.
fn names_a_field(path: &str) -> bool {
    ["apiVersion", "kind", "metadata", "spec", "manifest"]
        .iter()
        .any(|root| {
            path == *root
                || path.starts_with(&format!("{root}."))
                || path.starts_with(&format!("{root}["))
        })
}

/// JSON values of every type, strings with control characters among them.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        "[\\x00-\\x1f\\-a-z=^ ]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z\\x07\\n-]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The fields a user writes, as JSON pointers into the pi example.
const POINTERS: &[&str] = &[
    "/apiVersion",
    "/kind",
    "/metadata/name",
    "/metadata/annotations",
    "/spec",
    "/spec/mca",
    "/spec/mca/btl",
    "/spec/mpiHome",
    "/spec/ssh",
    "/spec/ssh/sshAuthMountPath",
    "/spec/runPolicy",
    "/spec/runPolicy/cleanUpWorkers",
    "/spec/runMode",
    "/spec/runMode/debug",
    "/spec/worker",
    "/spec/worker/replicas",
    "/spec/worker/cmd",
    "/spec/worker/extraMPIArgs",
    "/spec/worker/template",
    "/spec/worker/template/spec/containers",
    "/spec/worker/template/spec/containers/0/name",
    "/spec/worker/processesPerWorker",
    "/spec/mpiConfig",
    "/spec/replicaSpecs",
];

fn set(doc: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = if parent.is_empty() {
        Some(&mut *doc)
    } else {
        doc.pointer_mut(parent)
    };
    match parent {
        Some(Value::Object(m)) => {
            m.insert(key.to_string(), value);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = key.parse::<usize>() {
                if i < a.len() {
                    a[i] = value;
                }
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text: an MPIJob or errors, never a panic; every error names a
    /// field.
    #[test]
    fn any_text_parses_or_names_a_field(text in ".{0,200}") {
        if let Err(errors) = manifest::parse(&text) {
            for e in &errors.0 {
                prop_assert!(names_a_field(&e.path) && !e.message.is_empty(), "{e}");
            }
        }
    }

    /// The pi example with a field set to any value: never a panic, and
    /// every error names a field of the manifest.
    #[test]
    fn any_field_set_to_anything_is_named_when_wrong(
        edits in prop::collection::vec((prop::sample::select(POINTERS), any_value()), 1..4)
    ) {
        let mut doc: Value = mpijob_api::yaml::from_str(PI).unwrap();
        for (pointer, value) in edits {
            set(&mut doc, pointer, value);
        }
        let text = serde_json::to_string(&doc).unwrap();
        if let Err(errors) = manifest::parse(&text) {
            prop_assert!(!errors.0.is_empty());
            for e in &errors.0 {
                prop_assert!(names_a_field(&e.path), "error without a field: {e:?}\n{text}");
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    /// An accepted MCA parameter is one word of a name and a one-line
    /// value with no control character: it cannot add an argv entry, an
    /// option or a line anywhere it goes.
    #[test]
    fn accepted_mca_parameters_cannot_add_lines_or_words(key in ".{0,16}", value in ".{0,24}") {
        if validate::mca_key(&key).is_ok() {
            prop_assert!(!key.is_empty());
            prop_assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{key:?}");
        }
        if validate::mca_value("btl", &value).is_ok() {
            prop_assert!(!value.chars().any(char::is_control), "{value:?}");
        }
    }

    /// Durations: any text is a duration or an error, never a panic; what
    /// `format` writes reads back the same, to the millisecond.
    #[test]
    fn durations_parse_or_fail_and_round_trip(text in ".{0,16}", ms in 0u64..10_000_000_000) {
        let _ = duration::parse(&text);
        let d = Duration::from_millis(ms);
        prop_assert_eq!(duration::parse(&duration::format(d)), Ok(d));
    }

    /// Any text as a private key: a key, "no public half here", or an
    /// error; never a panic.
    #[test]
    fn any_text_as_a_key_is_read_or_refused(text in ".{0,300}") {
        let _ = sshkey::public_of_private(&text);
        let _ = sshkey::parse_public_line(&text);
        let armored = format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{text}\n-----END OPENSSH PRIVATE KEY-----\n");
        let _ = sshkey::public_of_private(&armored);
    }

    /// The ssh client files for peers that pass the check: one `Host` line
    /// naming them all, a fixed number of lines, and one known_hosts line.
    #[test]
    fn client_files_for_checked_peers_have_no_extra_lines(
        peers in prop::collection::vec(prop_oneof![
            "[a-z0-9.*?:_-]{1,16}",
            ".{1,8}",
        ], 1..5),
        port in 1u16..,
    ) {
        let ok: Vec<String> = peers.into_iter().filter(|p| sshclient::check_peer(p).is_ok()).collect();
        prop_assume!(!ok.is_empty());
        let config = sshclient::ssh_config(&ok, port, "/k/id".as_ref(), "/k/kh".as_ref());
        let empty = sshclient::ssh_config(&["x".to_string()], port, "/k/id".as_ref(), "/k/kh".as_ref());
        prop_assert_eq!(config.lines().count(), empty.lines().count());
        prop_assert_eq!(config.lines().filter(|l| l.starts_with("Host ")).count(), 2);
        let host_line = format!("Host {}\n", ok.join(" "));
        prop_assert!(config.contains(&host_line), "{}", config);
        let kh = sshclient::known_hosts(&ok, port, "ssh-ed25519 AAAA");
        prop_assert_eq!(kh.lines().count(), 1);
    }
}
