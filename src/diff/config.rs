//! Deep diff of two resolved configs (YAML): which keys were added, removed or changed, named by
//! their path (`decoding.temps`, `models[name=sim-demo].sim.seed`), with compact one-line values.
use serde::Serialize;
use serde_yaml::Value;

/// One difference between two configs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    /// Dotted path to the key; list items by `[name=…]` when they have a name, else `[index]`.
    pub key: String,
    pub change: ChangeKind,
    /// Compact rendering of the old value (absent for added keys).
    pub old: Option<String>,
    /// Compact rendering of the new value (absent for removed keys).
    pub new: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// Every difference between `a` and `b`, in document order of `a` then the additions of `b`.
pub fn diff(a: &Value, b: &Value) -> Vec<ConfigChange> {
    let mut out = Vec::new();
    walk("", a, b, &mut out);
    out
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<ConfigChange>) {
    if a == b {
        return;
    }
    match (untag(a), untag(b)) {
        (Value::Mapping(ma), Value::Mapping(mb)) => {
            for (k, va) in ma {
                let key = join(path, &render(k));
                match mb.get(k) {
                    Some(vb) => walk(&key, va, vb, out),
                    None => out.push(removed(key, va)),
                }
            }
            for (k, vb) in mb {
                if !ma.contains_key(k) {
                    out.push(added(join(path, &render(k)), vb));
                }
            }
        }
        (Value::Sequence(sa), Value::Sequence(sb)) => {
            if let (Some(na), Some(nb)) = (names(sa), names(sb)) {
                // Lists of named things (models, datasets) are matched by name, so inserting a
                // model reads as one addition, not as every later model changing.
                for (name, va) in &na {
                    let key = format!("{path}[name={name}]");
                    match nb.iter().find(|(n, _)| n == name) {
                        Some((_, vb)) => walk(&key, va, vb, out),
                        None => out.push(removed(key, va)),
                    }
                }
                for (name, vb) in &nb {
                    if !na.iter().any(|(n, _)| n == name) {
                        out.push(added(format!("{path}[name={name}]"), vb));
                    }
                }
            } else if sa.len() == sb.len() && sa.iter().chain(sb).any(is_container) {
                for (i, (va, vb)) in sa.iter().zip(sb).enumerate() {
                    walk(&format!("{path}[{i}]"), va, vb, out);
                }
            } else {
                // Lists of scalars are values (`temps: [0.0] -> [1.0]`), shown whole.
                out.push(changed(path, a, b));
            }
        }
        _ => out.push(changed(path, a, b)),
    }
}

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untag(&t.value),
        other => other,
    }
}

fn is_container(v: &Value) -> bool {
    matches!(untag(v), Value::Mapping(_) | Value::Sequence(_))
}

/// `(name, item)` for every item when all items are mappings with a distinct scalar `name`.
fn names(seq: &[Value]) -> Option<Vec<(String, &Value)>> {
    if seq.is_empty() {
        return None;
    }
    let mut out: Vec<(String, &Value)> = Vec::with_capacity(seq.len());
    for item in seq {
        let name = match untag(item) {
            Value::Mapping(m) => match m.get("name") {
                Some(n @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => render(n),
                _ => return None,
            },
            _ => return None,
        };
        if out.iter().any(|(n, _)| *n == name) {
            return None;
        }
        out.push((name, item));
    }
    Some(out)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn added(key: String, v: &Value) -> ConfigChange {
    ConfigChange { key, change: ChangeKind::Added, old: None, new: Some(render(v)) }
}

fn removed(key: String, v: &Value) -> ConfigChange {
    ConfigChange { key, change: ChangeKind::Removed, old: Some(render(v)), new: None }
}

fn changed(path: &str, a: &Value, b: &Value) -> ConfigChange {
    let key = if path.is_empty() { "(document)".to_string() } else { path.to_string() };
    ConfigChange { key, change: ChangeKind::Changed, old: Some(render(a)), new: Some(render(b)) }
}

/// A value on one line, in YAML flow style: `[0.0, 1.0]`, `{seed: 7}`, `"a b"`.
pub fn render(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => render_number(n),
        Value::String(s) => render_str(s),
        Value::Sequence(items) => {
            format!("[{}]", items.iter().map(render).collect::<Vec<_>>().join(", "))
        }
        Value::Mapping(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", render(k), render(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Tagged(t) => format!("{} {}", t.tag, render(&t.value)),
    }
}

fn render_number(n: &serde_yaml::Number) -> String {
    match n.as_f64() {
        // Keep `0.0` reading as a float, as the config wrote it, not `0`.
        Some(f) if n.is_f64() && f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => {
            format!("{f:.1}")
        }
        _ => n.to_string(),
    }
}

fn render_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_alphanumeric() || "-_./:@+".contains(c))
        && !matches!(s, "null" | "true" | "false" | "~")
        && s.parse::<f64>().is_err();
    if plain { s.to_string() } else { serde_json::to_string(s).unwrap_or_else(|_| s.to_string()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    fn lines(a: &str, b: &str) -> Vec<String> {
        diff(&y(a), &y(b))
            .into_iter()
            .map(|c| {
                format!(
                    "{:?} {}: {} -> {}",
                    c.change,
                    c.key,
                    c.old.unwrap_or_default(),
                    c.new.unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn scalar_lists_change_as_a_whole_value() {
        assert_eq!(
            lines("decoding: {temps: [0.0], top_k: [50]}", "decoding: {temps: [1.0], top_k: [50]}"),
            ["Changed decoding.temps: [0.0] -> [1.0]"]
        );
    }

    #[test]
    fn keys_added_removed_and_nested_changes_are_named_by_path() {
        let got = lines(
            "paths: {data_dir: data}\nexecution: {max_retries: 6, timeout_s: 120}",
            "paths: {data_dir: data, prepared_dir: prepared}\nexecution: {max_retries: 3}",
        );
        assert_eq!(
            got,
            [
                "Added paths.prepared_dir:  -> prepared",
                "Changed execution.max_retries: 6 -> 3",
                "Removed execution.timeout_s: 120 -> ",
            ]
        );
    }

    #[test]
    fn named_list_items_are_matched_by_name_not_position() {
        let a = "models:\n  - {name: a, seed: 1}\n  - {name: b, seed: 2}";
        let b = "models:\n  - {name: new, seed: 9}\n  - {name: a, seed: 1}\n  - {name: b, seed: 3}";
        assert_eq!(
            lines(a, b),
            [
                "Changed models[name=b].seed: 2 -> 3",
                "Added models[name=new]:  -> {name: new, seed: 9}"
            ]
        );
    }

    #[test]
    fn identical_configs_have_no_changes_and_strings_are_quoted_only_when_needed() {
        assert!(diff(&y("a: [1, 2]"), &y("a: [1, 2]")).is_empty());
        assert_eq!(lines("t: \"x y\"", "t: plain"), ["Changed t: \"x y\" -> plain"]);
        assert_eq!(lines("t: \"1.0\"", "t: 1.0"), ["Changed t: \"1.0\" -> 1.0"]);
    }
}
