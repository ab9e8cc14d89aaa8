//! YAML in and out, in one dialect for the whole project: manifests, the
//! committed CRD and the tests' fixtures all go through here.
//!
//! Reading is YAML 1.2 as the Kubernetes manifests we accept have always
//! been read: only `true`/`false` are booleans (`y`, `yes` and `on` stay
//! strings), `017` and `1_000` stay strings, a repeated key keeps its last
//! value where a map is wanted, `<<` is an ordinary key, and errors are one
//! line that ends with the line and column.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use serde_saphyr::SerializeError;

/// Why a text is not the YAML wanted: one line, ending with the line and
/// column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<serde_saphyr::Error> for Error {
    fn from(e: serde_saphyr::Error) -> Self {
        match e {
            // The crate's own words name its functions; say it for users.
            serde_saphyr::Error::MultipleDocuments { location, .. } => Error(format!(
                "holds more than one document, where one is wanted at line {}, column {}",
                location.line(),
                location.column()
            )),
            e => Error(e.to_string()),
        }
    }
}

fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    o.leading_zero_numbers_as_strings = true;
    o.underscored_numbers_as_strings = true;
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    o.merge_keys = serde_saphyr::MergeKeyPolicy::AsOrdinary;
    o.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
    // One line, not a rendered snippet: errors end up in `field: problem`
    // lines and in status messages.
    o.with_snippet = false;
    o
}

/// One YAML (or JSON) document. More than one is an error.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    Ok(serde_saphyr::from_str_with_options(text, options())?)
}

/// Every document of a `---`-separated stream, empty ones left out.
pub fn from_str_multiple<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, Error> {
    Ok(serde_saphyr::from_str_multiple_with_options(
        text,
        options(),
    )?)
}

/// A key given more than once in one mapping: where (`spec.runPolicy`),
/// and each value it was given, in order. The last one is the one read,
/// as the API server keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Repeated {
    pub path: String,
    pub values: Vec<serde_json::Value>,
}

/// Every key given more than once in one mapping of the document, in
/// document order; nothing when the text is not YAML (reading it says so).
pub fn repeated_keys(text: &str) -> Vec<Repeated> {
    from_str::<Walked>(text)
        .map(|w| w.repeated)
        .unwrap_or_default()
}

/// A value read with every repeated key it holds, paths relative to it.
struct Walked {
    value: serde_json::Value,
    repeated: Vec<Repeated>,
}

impl<'de> serde::Deserialize<'de> for Walked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WalkVisitor)
    }
}

struct WalkVisitor;

impl WalkVisitor {
    fn leaf<E>(value: serde_json::Value) -> Result<Walked, E> {
        Ok(Walked {
            value,
            repeated: Vec::new(),
        })
    }
}

impl<'de> serde::de::Visitor<'de> for WalkVisitor {
    type Value = Walked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Walked, E> {
        Self::leaf(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Walked, E> {
        Self::leaf(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Walked, E> {
        Self::leaf(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Walked, E> {
        Self::leaf(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Walked, E> {
        Self::leaf(v.into())
    }
    fn visit_unit<E>(self) -> Result<Walked, E> {
        Self::leaf(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Walked, E> {
        Self::leaf(serde_json::Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Walked, D::Error> {
        serde::Deserialize::deserialize(d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Walked, A::Error> {
        let (mut values, mut repeated) = (Vec::new(), Vec::new());
        while let Some(item) = seq.next_element::<Walked>()? {
            let i = values.len();
            repeated.extend(item.repeated.into_iter().map(|r| Repeated {
                path: format!("[{i}]{}", dotted(&r.path)),
                ..r
            }));
            values.push(item.value);
        }
        Ok(Walked {
            value: values.into(),
            repeated,
        })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Walked, A::Error> {
        let mut object = serde_json::Map::new();
        let mut repeated: Vec<Repeated> = Vec::new();
        while let Some((key, item)) = map.next_entry::<Walked, Walked>()? {
            let key = match key.value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            repeated.extend(item.repeated.into_iter().map(|r| Repeated {
                path: format!("{key}{}", dotted(&r.path)),
                ..r
            }));
            if let Some(earlier) = object.insert(key.clone(), item.value.clone()) {
                match repeated.iter_mut().find(|r| r.path == key) {
                    Some(r) => r.values.push(item.value),
                    None => repeated.push(Repeated {
                        path: key,
                        values: vec![earlier, item.value],
                    }),
                }
            }
        }
        Ok(Walked {
            value: object.into(),
            repeated,
        })
    }
}

/// A relative path as it follows a key: `.a.b`, or `[0].a` as it is.
fn dotted(path: &str) -> String {
    if path.is_empty() || path.starts_with('[') {
        path.to_string()
    } else {
        format!(".{path}")
    }
}

/// One document, without a leading `---`.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, SerializeError> {
    serde_saphyr::to_string(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn reads_yaml_1_2_scalars_as_before() {
        let v: Value = from_str(
            "a: [yes, no, on, y, n, true, False, 017, 1_000, 0x1f, 1.5, ~, '1', -N, ^openib]\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a": ["yes", "no", "on", "y", "n", true, false, "017", "1_000", 31, 1.5, null, "1", "-N", "^openib"]})
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let v: Value = from_str("a: 1\na: 2\n").unwrap();
        assert_eq!(v, json!({"a": 2}));
    }

    #[test]
    fn repeated_keys_are_found_with_every_value() {
        let text = "spec:\n  runPolicy: {a: 1}\n  w: [{x: 1, x: 2}]\n  runPolicy: {a: 2}\n  runPolicy: {a: 3}\nk: v\n";
        assert_eq!(
            repeated_keys(text),
            [
                Repeated {
                    path: "spec.w[0].x".into(),
                    values: vec![json!(1), json!(2)]
                },
                Repeated {
                    path: "spec.runPolicy".into(),
                    values: vec![json!({"a": 1}), json!({"a": 2}), json!({"a": 3})]
                },
            ]
        );
        assert_eq!(repeated_keys("a: 1\nb: 2\n"), []);
        assert_eq!(repeated_keys("a: [\n"), []);
    }

    #[test]
    fn errors_are_one_line_with_line_and_column() {
        let e = from_str::<Value>("a: b\n c: d: e\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.ends_with("at line 2, column 3"), "{e}");
    }

    #[test]
    fn one_document_or_many() {
        let text = "kind: A\n---\nkind: B\n---\n";
        assert_eq!(
            from_str::<Value>(text).unwrap_err().to_string(),
            "holds more than one document, where one is wanted at line 3, column 1"
        );
        let docs: Vec<Value> = from_str_multiple(text).unwrap();
        assert_eq!(docs, [json!({"kind": "A"}), json!({"kind": "B"})]);
    }

    #[test]
    fn round_trips_strings_that_look_like_other_types() {
        let v = json!({"s": ["true", "1", "", "null", "yes", "0o17", "a: b", "line1\nline2\n"]});
        let text = to_string(&v).unwrap();
        assert!(!text.starts_with("---"), "{text}");
        assert_eq!(from_str::<Value>(&text).unwrap(), v);
    }
}
