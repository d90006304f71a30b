//! `-S KEY=VALUE` overrides: change a config value for one run without editing a tracked file.
//!
//! A key is a dotted path into the YAML document, with `[i]` to pick a list element:
//! `decoding.temps`, `models[0].sim.latency_ms`, `scoring.normalize.lowercase`. The value is YAML
//! (`[0.7, 1.0]`, `0`, `true`, `exact`), so whatever the file accepts, an override accepts. The
//! overridden document is validated exactly like the file (the caller re-parses it), and the run
//! snapshots the overridden text, so `exp log` and `exp diff` show what really ran.
//!
//! Overrides come from the command line, so every failure names the `-S` argument it came from.
use crate::error::Hint;
use serde_yaml::{Mapping, Value};

/// The most path segments one key may have: configs are a few levels deep, and a bound keeps a
/// pasted garbage key from building an absurd document.
const MAX_SEGMENTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("-S {arg}: expected KEY=VALUE")]
    NoEquals { arg: String },
    #[error("-S {arg}: bad key `{key}`: {problem}")]
    BadKey { arg: String, key: String, problem: String },
    #[error("-S {arg}: the value is not YAML: {message}")]
    BadValue { arg: String, message: String },
    #[error("-S {arg}: `{at}` is {found}, so `{next}` cannot be set inside it")]
    NotAContainer { arg: String, at: String, found: &'static str, next: String },
    #[error("-S {arg}: `{at}` has {len} element(s), so index {index} does not exist")]
    OutOfRange { arg: String, at: String, len: usize, index: usize },
}

impl Hint for OverrideError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            OverrideError::NoEquals { .. } | OverrideError::BadKey { .. } => {
                "write overrides as -S section.key=VALUE, e.g. -S decoding.temps=[0.7] or \
                 -S models[0].max_connections=8"
                    .into()
            }
            OverrideError::BadValue { .. } => {
                "the value is read as YAML: quote strings holding ':' or '#', e.g. -S 'user_template=\"a: {text}\"'".into()
            }
            OverrideError::NotAContainer { .. } | OverrideError::OutOfRange { .. } => {
                "`exp run --dry-run` with the same -S shows the config; check the key against the file".into()
            }
        })
    }
}

/// One parsed `-S KEY=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The argument as given, for messages and the run's record.
    pub arg: String,
    path: Vec<Segment>,
    value: Value,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl Override {
    /// Parse `KEY=VALUE`: the first `=` separates them (values may contain `=`).
    pub fn parse(arg: &str) -> Result<Override, OverrideError> {
        let Some((key, raw)) = arg.split_once('=') else {
            return Err(OverrideError::NoEquals { arg: arg.to_string() });
        };
        let bad = |problem: &str| OverrideError::BadKey {
            arg: arg.to_string(),
            key: key.to_string(),
            problem: problem.to_string(),
        };
        let path = parse_key(key.trim()).map_err(|p| bad(&p))?;
        let value = serde_yaml::from_str(raw).map_err(|e| OverrideError::BadValue {
            arg: arg.to_string(),
            message: e.to_string(),
        })?;
        Ok(Override { arg: arg.to_string(), path, value })
    }

    /// The dotted key as given (`models[0].sim.latency_ms`).
    pub fn key(&self) -> String {
        render_path(&self.path)
    }

    /// Set the value in `doc`, creating missing mapping keys (an unknown key is then refused by
    /// the config's own validation, which names it and lists the known ones).
    pub fn apply(&self, doc: &mut Value) -> Result<(), OverrideError> {
        let mut node = doc;
        for (i, segment) in self.path.iter().enumerate() {
            let at = render_path(&self.path[..i]);
            let at = if at.is_empty() { "the config".to_string() } else { at };
            node = match segment {
                Segment::Key(k) => {
                    if node.is_null() {
                        *node = Value::Mapping(Mapping::new());
                    }
                    let found = kind(node);
                    let Value::Mapping(map) = node else {
                        return Err(OverrideError::NotAContainer {
                            arg: self.arg.clone(),
                            at,
                            found,
                            next: k.clone(),
                        });
                    };
                    map.entry(Value::String(k.clone())).or_insert(Value::Null)
                }
                Segment::Index(index) => {
                    let found = kind(node);
                    let Value::Sequence(seq) = node else {
                        return Err(OverrideError::NotAContainer {
                            arg: self.arg.clone(),
                            at,
                            found,
                            next: format!("[{index}]"),
                        });
                    };
                    let len = seq.len();
                    seq.get_mut(*index).ok_or(OverrideError::OutOfRange {
                        arg: self.arg.clone(),
                        at,
                        len,
                        index: *index,
                    })?
                }
            };
        }
        *node = self.value.clone();
        Ok(())
    }
}

/// `doc` with every override applied in order (a later one wins over an earlier one).
pub fn apply_all(doc: &mut Value, overrides: &[Override]) -> Result<(), OverrideError> {
    overrides.iter().try_for_each(|o| o.apply(doc))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn parse_key(key: &str) -> Result<Vec<Segment>, String> {
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    let mut path = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty() && (path.is_empty() || rest.is_empty()) {
            return Err("a key part is empty (two dots, or a leading or trailing dot)".into());
        }
        if !name.is_empty() {
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(format!("`{name}` is not a key name (letters, digits, _ and -)"));
            }
            path.push(Segment::Key(name.to_string()));
        }
        while !rest.is_empty() {
            let close = rest.find(']').ok_or("a `[` without its `]`")?;
            let index = rest[1..close]
                .parse::<usize>()
                .map_err(|_| format!("`{}` is not a list index", &rest[..=close]))?;
            path.push(Segment::Index(index));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("unexpected `{rest}` after an index"));
            }
        }
        if path.len() > MAX_SEGMENTS {
            return Err(format!("more than {MAX_SEGMENTS} parts"));
        }
    }
    Ok(path)
}

fn render_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        serde_yaml::from_str(
            "decoding: {temps: [0.0], repeats: 1}\nmodels:\n  - name: a\n    sim: {seed: 7}\n",
        )
        .expect("test document")
    }

    fn applied(args: &[&str]) -> Result<Value, OverrideError> {
        let mut d = doc();
        let overrides: Vec<Override> =
            args.iter().map(|a| Override::parse(a)).collect::<Result<_, _>>()?;
        apply_all(&mut d, &overrides)?;
        Ok(d)
    }

    #[test]
    fn sets_lists_nested_keys_and_indexed_elements() {
        let d = applied(&["decoding.temps=[0.7, 1.0]", "models[0].sim.seed=9"]).expect("applies");
        assert_eq!(d["decoding"]["temps"], serde_yaml::from_str::<Value>("[0.7, 1.0]").unwrap());
        assert_eq!(d["models"][0]["sim"]["seed"], Value::from(9));
        assert_eq!(d["decoding"]["repeats"], Value::from(1), "siblings stay");
    }

    #[test]
    fn creates_missing_mapping_keys_and_a_later_override_wins() {
        let d = applied(&["execution.max_retries=2", "execution.max_retries=3"]).expect("applies");
        assert_eq!(d["execution"]["max_retries"], Value::from(3));
    }

    #[test]
    fn values_may_contain_equals_signs() {
        let d = applied(&["user_template=a=b {text}"]).expect("applies");
        assert_eq!(d["user_template"], Value::from("a=b {text}"));
    }

    #[test]
    fn an_index_past_the_end_names_the_list_and_its_length() {
        let e = applied(&["models[3].name=x"]).expect_err("out of range");
        assert_eq!(
            e.to_string(),
            "-S models[3].name=x: `models` has 1 element(s), so index 3 does not exist"
        );
    }

    #[test]
    fn a_key_inside_a_scalar_is_refused() {
        let e = applied(&["decoding.repeats.x=1"]).expect_err("scalar");
        assert!(e.to_string().contains("`decoding.repeats` is a number"), "{e}");
    }

    #[test]
    fn malformed_keys_and_missing_equals_are_refused_with_a_hint() {
        for arg in ["decoding", "=1", "a..b=1", "a[x]=1", "a[1=1", "a.b c=1"] {
            let e = Override::parse(arg).expect_err(arg);
            assert!(e.hint().is_some(), "{arg}");
        }
        let long = format!("{}=1", vec!["a"; 17].join("."));
        assert!(Override::parse(&long).is_err());
    }

    #[test]
    fn the_key_renders_as_given() {
        assert_eq!(Override::parse("models[0].sim.seed=1").unwrap().key(), "models[0].sim.seed");
    }
}
