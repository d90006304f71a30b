//! OpenAI batch files recognized by content, wherever a legacy folder keeps them and whatever
//! they are called: old runs are the user's own files in whatever layout their scripts had.
//! A request line has `custom_id`, `method`/`url` and a `body`; an output line has `custom_id`
//! and `response` and/or `error`. Each file costs at most its first [`HEAD_BYTES`] (a first line
//! longer than that is read up to [`MAX_LINE`] only when it already looks like a batch line), and
//! at most [`MAX_FILES`] files in [`MAX_DIRS`] folders are looked at, so a huge folder stays cheap.
//!
//! Requests are grouped into trials by their body's settings (model, temperature, …); the
//! condition comes from the words of the file's path (`control`/`ctrl`, `treatment`/`treat`,
//! or a condition the config names), else from the system prompt matching a prompt file, else
//! from the `custom_id`, else it is `unknown`.
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::layout::{TrialFiles, body_params, role_of};
use super::source::{Entry, Error, Kind, Source};

const HEAD_BYTES: usize = 8 * 1024;
const MAX_LINE: usize = 1 << 20;
const MAX_FILES: usize = 1000;
const MAX_DIRS: usize = 1000;
const MAX_DEPTH: usize = 8;
/// Config and prompt files are small; anything beyond this is not one.
const MAX_TEXT: usize = 1 << 20;

/// What the first line of a file says it is.
enum Line {
    Request { custom_id: String, body: Map<String, Value> },
    Output { custom_id: String, model: Option<String> },
}

/// A file not recognized by its path: a candidate for sniffing.
struct Candidate {
    path: String,
    dir: Entry,
    dir_path: String,
    file: Entry,
}

/// Trials made of batch files found by content, and each such file's path with its role.
#[derive(Default)]
pub struct Found {
    pub trials: Vec<TrialFiles>,
    pub roles: Vec<(String, &'static str)>,
}

/// A prompt file's text and what it stands for.
struct Prompt {
    text: String,
    condition: String,
    prompt_set: Option<String>,
}

/// What the config says that helps name trials and conditions.
#[derive(Default)]
struct Hints {
    /// Model id -> the config's name for it.
    models: BTreeMap<String, String>,
    prompts: Vec<Prompt>,
    /// Condition names (lowercase).
    conditions: Vec<String>,
}

/// Finds batch files by content anywhere under the root (files recognized by path are skipped),
/// and groups them into trials whose slugs differ from `taken`.
pub fn find(src: &dyn Source, config: Option<&Entry>, taken: &[String]) -> Result<Found, Error> {
    let mut candidates = Vec::new();
    let mut dirs = 0;
    walk(src, &src.root(), "", 0, &mut dirs, &mut candidates)?;
    let mut lines = Vec::new();
    for c in candidates {
        if let Some(line) = sniff(src, &c.file)? {
            lines.push((c, line));
        }
    }
    if lines.is_empty() {
        return Ok(Found::default());
    }
    let hints = hints(src, config)?;
    let mut found = Found::default();
    let mut groups: Vec<Group> = Vec::new();
    let mut outputs = Vec::new();
    for (c, line) in lines {
        match line {
            Line::Request { custom_id, body } => {
                let params = body_params(&body);
                let prompt = system_prompt(&body)
                    .and_then(|s| hints.prompts.iter().find(|p| p.text == s.trim()));
                let condition = condition_in(&c.path, &hints.conditions)
                    .or_else(|| prompt.map(|p| p.condition.clone()))
                    .or_else(|| condition_in(&custom_id, &hints.conditions))
                    .unwrap_or_else(|| "unknown".into());
                let i = match groups.iter().position(|g| g.params == params) {
                    Some(i) => i,
                    None => {
                        groups.push(Group::new(params, &c));
                        groups.len() - 1
                    }
                };
                let g = &mut groups[i];
                if g.prompt_set.is_none() {
                    g.prompt_set = prompt.and_then(|p| p.prompt_set.clone());
                }
                found.roles.push((c.path.clone(), "batch input"));
                g.inputs.push((condition, c.file.clone()));
            }
            Line::Output { custom_id, model } => {
                let condition = condition_in(&c.path, &hints.conditions)
                    .or_else(|| condition_in(&custom_id, &hints.conditions))
                    .unwrap_or_else(|| "unknown".into());
                found.roles.push((c.path.clone(), "batch output"));
                outputs.push((c, condition, model));
            }
        }
    }
    for (c, condition, model) in outputs {
        let i = match owner(&groups, model.as_deref()) {
            Some(i) => i,
            None => {
                let mut params = BTreeMap::new();
                if let Some(m) = &model {
                    params.insert("model_id".to_string(), m.clone());
                }
                match groups.iter().position(|g| g.params == params && g.inputs.is_empty()) {
                    Some(i) => i,
                    None => {
                        groups.push(Group::new(params, &c));
                        groups.len() - 1
                    }
                }
            }
        };
        groups[i].outputs.push((condition, c.file));
    }
    let mut slugs: Vec<String> = taken.to_vec();
    for g in groups {
        let t = g.into_trial(&hints, &slugs);
        slugs.push(t.slug.clone());
        found.trials.push(t);
    }
    Ok(found)
}

/// Requests sharing one body's settings, and the outputs that belong with them.
struct Group {
    params: BTreeMap<String, String>,
    prompt_set: Option<String>,
    dir: Entry,
    dir_path: String,
    inputs: Vec<(String, Entry)>,
    outputs: Vec<(String, Entry)>,
}

impl Group {
    fn new(params: BTreeMap<String, String>, c: &Candidate) -> Self {
        Group {
            params,
            prompt_set: None,
            dir: c.dir.clone(),
            dir_path: c.dir_path.clone(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// The trial, named like the old scripts' folders (`<model>__<prompt_set>__temp<T>`) so it
    /// pairs by name with a run in the old layout when it can.
    fn into_trial(self, hints: &Hints, taken: &[String]) -> TrialFiles {
        let mut params = self.params;
        let model_id = params.get("model_id").cloned();
        let name = model_id.as_ref().and_then(|m| hints.models.get(m)).cloned();
        let short = name
            .clone()
            .or_else(|| model_id.as_deref().map(|m| m.rsplit('/').next().unwrap_or(m).to_string()));
        let mut parts = vec![short.unwrap_or_else(|| "unknown".into())];
        parts.push(self.prompt_set.clone().unwrap_or_else(|| "batch".into()));
        match params.get("decoding.temperature") {
            Some(t) => parts.push(format!("temp{t}")),
            None if self.inputs.is_empty() => parts.push("outputs".into()),
            None => {}
        }
        let base: String = parts
            .join("__")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .collect();
        let mut slug = base.clone();
        let mut n = 1;
        while taken.contains(&slug) {
            n += 1;
            slug = format!("{base}-{n}");
        }
        if let Some(name) = name {
            params.insert("model".into(), name);
        }
        if let Some(set) = self.prompt_set {
            params.insert("prompt_set".into(), set);
        }
        // A folder on disk has no content id, but a stored one does: clearing it keeps a
        // trial made of files from several folders from passing as unchanged.
        let dir = Entry { id: String::new(), ..self.dir };
        let mut t = TrialFiles::new(&dir, self.dir_path.clone(), self.dir_path);
        t.slug = slug;
        t.params = params;
        t.inputs = self.inputs;
        t.outputs = self.outputs;
        t
    }
}

/// The trial whose requests asked for `model`: the same id, else the one id it starts with
/// (a response names the dated model, `gpt-4o-2024-08-06` for `gpt-4o`), else the only trial.
fn owner(groups: &[Group], model: Option<&str>) -> Option<usize> {
    let with_inputs: Vec<usize> =
        (0..groups.len()).filter(|i| !groups[*i].inputs.is_empty()).collect();
    let id = |i: &usize| groups[*i].params.get("model_id").map(String::as_str);
    if let Some(m) = model {
        let same: Vec<usize> = with_inputs.iter().copied().filter(|i| id(i) == Some(m)).collect();
        let prefix: Vec<usize> = with_inputs
            .iter()
            .copied()
            .filter(|i| id(i).is_some_and(|x| m.starts_with(x)))
            .collect();
        if let [i] = same.as_slice() {
            return Some(*i);
        }
        if let [i] = prefix.as_slice() {
            return Some(*i);
        }
        if !same.is_empty() || !prefix.is_empty() {
            return None;
        }
    }
    match with_inputs.as_slice() {
        [i] if model.is_none() => Some(*i),
        _ => None,
    }
}

fn walk(
    src: &dyn Source,
    dir: &Entry,
    dir_path: &str,
    depth: usize,
    dirs: &mut usize,
    out: &mut Vec<Candidate>,
) -> Result<(), Error> {
    *dirs += 1;
    for e in src.list(dir)? {
        if out.len() >= MAX_FILES || e.name.starts_with('.') {
            continue;
        }
        let path =
            if dir_path.is_empty() { e.name.clone() } else { format!("{dir_path}/{}", e.name) };
        match e.kind {
            Kind::Dir if depth < MAX_DEPTH && *dirs < MAX_DIRS => {
                walk(src, &e, &path, depth + 1, dirs, out)?
            }
            Kind::File if role_of(&path).is_none() => out.push(Candidate {
                path,
                dir: dir.clone(),
                dir_path: dir_path.to_string(),
                file: e,
            }),
            _ => {}
        }
    }
    Ok(())
}

/// The first line of a file if it is a batch request or output line.
fn sniff(src: &dyn Source, file: &Entry) -> Result<Option<Line>, Error> {
    let head = src.read_head(file, HEAD_BYTES)?;
    let looks_like =
        head.trim_ascii_start().starts_with(b"{") || head.starts_with(b"\xef\xbb\xbf{");
    let has = |key: &[u8]| head.windows(key.len()).any(|w| w == key);
    if !looks_like || !(has(b"\"custom_id\"") || has(b"\"body\"") || has(b"\"response\"")) {
        return Ok(None);
    }
    if let Some(line) = first_line(&head, HEAD_BYTES) {
        return Ok(classify(line));
    }
    let more = src.read_head(file, MAX_LINE)?;
    Ok(first_line(&more, MAX_LINE).and_then(classify))
}

/// The first line of `bytes` (read with limit `limit`); None when it may go on past them.
fn first_line(bytes: &[u8], limit: usize) -> Option<&[u8]> {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(i) => Some(&bytes[..i]),
        None if bytes.len() < limit => Some(bytes),
        None => None,
    }
}

fn classify(line: &[u8]) -> Option<Line> {
    let line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
    let Ok(Value::Object(mut o)) = serde_json::from_slice::<Value>(line) else { return None };
    let custom_id = o.get("custom_id")?.as_str()?.to_string();
    if o.contains_key("method") || o.contains_key("url") {
        if let Some(Value::Object(body)) = o.remove("body") {
            return Some(Line::Request { custom_id, body });
        }
        return None;
    }
    if o.contains_key("response") || o.contains_key("error") {
        let model = o
            .get("response")
            .and_then(|r| r.pointer("/body/model"))
            .and_then(Value::as_str)
            .map(str::to_string);
        return Some(Line::Output { custom_id, model });
    }
    None
}

/// The condition a word of `text` names: `control`/`ctrl`, `treatment`/`treat`/`trt`, or one
/// of `known`.
fn condition_in(text: &str, known: &[String]) -> Option<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric()).find_map(|w| {
        let w = w.to_ascii_lowercase();
        match w.as_str() {
            "control" | "ctrl" => Some("control".to_string()),
            "treatment" | "treat" | "trt" => Some("treatment".to_string()),
            _ if known.contains(&w) => Some(w),
            _ => None,
        }
    })
}

/// The request's system message, when it is plain text.
fn system_prompt(body: &Map<String, Value>) -> Option<&str> {
    body.get("messages")?
        .as_array()?
        .iter()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("system"))?
        .get("content")?
        .as_str()
}

/// Model names, prompt files and condition names from the config (`models[].name/model`,
/// `prompt_sets.<set>.<condition>: <path>`), plus `prompts/*` files named after a condition.
fn hints(src: &dyn Source, config: Option<&Entry>) -> Result<Hints, Error> {
    let mut h = Hints::default();
    let yaml = match config {
        Some(e) => serde_yaml::from_slice::<serde_yaml::Value>(&src.read_head(e, MAX_TEXT)?).ok(),
        None => None,
    };
    let yaml = yaml.unwrap_or_default();
    for m in yaml.get("models").and_then(|m| m.as_sequence()).into_iter().flatten() {
        let s = |k: &str| m.get(k).and_then(|v| v.as_str()).map(str::to_string);
        if let (Some(name), Some(id)) = (s("name"), s("model")) {
            h.models.insert(id, name);
        }
    }
    for (set, conds) in yaml.get("prompt_sets").and_then(|p| p.as_mapping()).into_iter().flatten() {
        for (cond, path) in conds.as_mapping().into_iter().flatten() {
            let (Some(set), Some(cond)) = (set.as_str(), cond.as_str()) else { continue };
            let cond = cond.to_ascii_lowercase();
            if !h.conditions.contains(&cond) {
                h.conditions.push(cond.clone());
            }
            if let Some(text) = path.as_str().map(|p| text_at(src, p)).transpose()?.flatten() {
                h.prompts.push(Prompt { text, condition: cond, prompt_set: Some(set.into()) });
            }
        }
    }
    if let Some(dir) = entry_at(src, "prompts")? {
        for f in src.list(&dir)?.into_iter().filter(|e| e.kind == Kind::File) {
            if let Some(condition) = condition_in(&f.name, &h.conditions) {
                let text =
                    String::from_utf8_lossy(&src.read_head(&f, MAX_TEXT)?).trim().to_string();
                h.prompts.push(Prompt { text, condition, prompt_set: None });
            }
        }
    }
    Ok(h)
}

/// The entry at `path` (relative to the root, `/`-separated), if there is one.
fn entry_at(src: &dyn Source, path: &str) -> Result<Option<Entry>, Error> {
    let mut cur = src.root();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if cur.kind != Kind::Dir {
            return Ok(None);
        }
        match src.list(&cur)?.into_iter().find(|e| e.name == part) {
            Some(e) => cur = e,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// The trimmed text of the file at `path`, if it is a file of the run.
fn text_at(src: &dyn Source, path: &str) -> Result<Option<String>, Error> {
    match entry_at(src, path)? {
        Some(e) if e.kind == Kind::File => {
            Ok(Some(String::from_utf8_lossy(&src.read_head(&e, MAX_TEXT)?).trim().to_string()))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::source::MemSource;
    use super::*;

    fn req(id: &str, model: &str, temp: f64, system: &str) -> String {
        format!(
            "{}\n",
            serde_json::json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": model, "temperature": temp,
                    "messages": [{"role": "system", "content": system}, {"role": "user", "content": "x"}]}})
        )
    }

    #[test]
    fn batch_files_are_grouped_by_body_and_given_conditions_by_name_prompt_or_id() {
        let mut s = MemSource::new();
        s.insert(
            "cfg.yaml",
            "models:\n  - {name: small, model: org/small-1}\nprompt_sets:\n  ops:\n    control: p/c.txt\n    treatment: p/t.txt\n",
        )
        .insert("p/c.txt", "Be brief.\n")
        .insert("p/t.txt", "Be operational.\n")
        .insert("batches/req_ctrl.jsonl", req("q1", "org/small-1", 0.0, "Be brief."))
        .insert("x/y/z/odd name", req("q2", "org/small-1", 0.0, "Be operational."))
        .insert("x/other.txt", req("item-7-treatment", "org/big", 1.0, "?"))
        .insert("x/mystery.jsonl", req("q3", "org/big", 1.0, "?"))
        .insert(
            "out/results-1.jsonl",
            r#"{"custom_id": "q1", "response": {"status_code": 200, "body": {"model": "org/small-1-2025"}}, "error": null}"#,
        )
        .insert("notes.md", "{\"custom_id\": 1}");
        let root = s.root();
        let cfg = s.list(&root).unwrap().into_iter().find(|e| e.name == "cfg.yaml");
        let f = find(&s, cfg.as_ref(), &["big__batch__temp1.0".to_string()]).unwrap();
        assert_eq!(f.trials.len(), 2, "{:?}", f.trials.iter().map(|t| &t.slug).collect::<Vec<_>>());
        let small = &f.trials[0];
        assert_eq!(small.slug, "small__ops__temp0.0");
        assert_eq!(small.params["model"], "small");
        assert_eq!(small.params["prompt_set"], "ops");
        let conds: Vec<&str> = small.inputs.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(conds, ["control", "treatment"], "by name, then by system prompt");
        assert_eq!(small.outputs.len(), 1, "the dated model in the response finds its trial");
        assert_eq!(small.outputs[0].0, "unknown");
        let big = &f.trials[1];
        assert_eq!(big.slug, "big__batch__temp1.0-2", "a taken slug is not reused");
        let conds: Vec<&str> = big.inputs.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(conds, ["unknown", "treatment"], "by custom_id as a last resort");
        assert_eq!(f.roles.len(), 5);
        assert!(!f.roles.iter().any(|(p, _)| p == "notes.md"));
    }

    #[test]
    fn a_first_line_longer_than_the_sniff_is_read_only_when_it_looks_like_a_batch_line() {
        let long = "y".repeat(HEAD_BYTES * 2);
        let mut s = MemSource::new();
        s.insert("a", req("control-1", "m", 0.0, &long))
            .insert("b", format!("{{\"other\": \"{long}\"}}"))
            .insert("c", format!("{{\"custom_id\": \"{}", "z".repeat(MAX_LINE)));
        let f = find(&s, None, &[]).unwrap();
        assert_eq!(f.roles, [("a".to_string(), "batch input")]);
    }
}
