//! Request building: each job's requests as OpenAI Batch API lines in
//! `inputs/<condition>/part-NNNN.jsonl` (`custom_id`, `method`, `url`, `body`).
//!
//! The body written here is exactly what execution sends (it reads these files back), so the
//! inputs folder is an honest record of every request, and `--skip-build` can reuse it.
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::ModelConfig;
use super::endpoint;
use super::plan::{Condition, DecodingPoint};
use super::prepare::Item;

pub const CHAT_URL: &str = "/v1/chat/completions";

/// One Batch API request line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestLine {
    pub custom_id: String,
    pub method: String,
    pub url: String,
    pub body: serde_json::Value,
}

/// `<dataset>:<item_id>:<condition>:r<repeat>`: unique within a trial; never parsed back (jobs
/// walk their items in order), so ids may hold any character.
pub fn custom_id(dataset: &str, item_id: &str, condition: Condition, repeat: u32) -> String {
    let mut id = String::new();
    custom_id_into(&mut id, dataset, item_id, condition, repeat);
    id
}

/// [`custom_id`] written into `out` (cleared first): a loop over millions of rows reuses one
/// buffer.
pub fn custom_id_into(
    out: &mut String,
    dataset: &str,
    item_id: &str,
    condition: Condition,
    repeat: u32,
) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(out, "{dataset}:{item_id}:{condition}:r{repeat}");
}

/// Checks `{field}` placeholders are well formed; `{{`/`}}` are literal braces.
pub fn check_template(template: &str) -> Result<(), String> {
    render_with(template, |_| Some(String::new())).map(|_| ())
}

/// Renders `template` with the item's fields; `Err` names a field the item lacks.
pub fn render(template: &str, item: &Item) -> Result<String, String> {
    render_with(template, |name| item.fields.get(name).map(str::to_string))
}

fn render_with(
    template: &str,
    mut field: impl FnMut(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("has an unclosed placeholder `{{{name}`")),
                    }
                }
                if name.trim().is_empty() {
                    return Err("has an empty placeholder `{}`".into());
                }
                match field(name.trim()) {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err(format!("uses `{{{name}}}`, a field this row does not have"));
                    }
                }
            }
            '}' => return Err("has a lone `}` (write `}}` for a literal brace)".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The request body for one item: system + user messages, the decoding parameters the model's
/// API takes (`endpoint::body_params`: the token limit under its key, sampling parameters it does
/// not refuse, `top_k` only where allowed), then `extra_body` merged at the top level (what the
/// OpenAI SDK's `extra_body` does).
pub fn body(
    model: &ModelConfig,
    decoding: &DecodingPoint,
    system: &str,
    user: &str,
) -> serde_json::Value {
    let params = endpoint::body_params(model);
    let mut b = serde_json::Map::new();
    b.insert("model".into(), model.api_model().into());
    b.insert(
        "messages".into(),
        serde_json::json!([{"role": "system", "content": system}, {"role": "user", "content": user}]),
    );
    if params.temperature {
        b.insert("temperature".into(), decoding.temperature.into());
    }
    if params.top_p {
        b.insert("top_p".into(), decoding.top_p.into());
    }
    b.insert(params.token_limit.as_str().into(), decoding.max_tokens.into());
    if let Some(k) = decoding.top_k
        && params.top_k
    {
        b.insert("top_k".into(), k.into());
    }
    if let Some(extra) = &model.extra_body {
        for (k, v) in extra {
            b.insert(k.clone(), v.clone());
        }
    }
    serde_json::Value::Object(b)
}

/// Rough token count of text (about four characters a token, as OpenAI's rule of thumb): for
/// `--dry-run` estimates and the sim model's usage, never for real usage, which the API reports.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Estimated prompt tokens of a chat: the texts plus a few tokens of framing per message.
pub fn estimate_prompt_tokens(system: &str, user: &str) -> u64 {
    estimate_tokens(system) + estimate_tokens(user) + 4 * 2 + 3
}

/// The messages of a built body, for the sim model and for estimates.
pub fn messages_text(body: &serde_json::Value) -> (String, String) {
    let text = |role: &str| {
        body["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["role"] == role))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    (text("system"), text("user"))
}

/// Writes `lines` to `path` atomically (temp file + rename), so a crash mid-build never leaves a
/// truncated inputs file that a resume would trust.
pub fn write_lines(
    path: &Path,
    lines: impl IntoIterator<Item = RequestLine>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        for line in lines {
            serde_json::to_writer(&mut w, &line)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn item() -> Item {
        let mut fields = BTreeMap::new();
        fields.insert("text".to_string(), "great".to_string());
        fields.insert("input".to_string(), "great".to_string());
        let fields = crate::eval::prepare::Fields::new(fields, &mut Default::default());
        Item { id: "1".into(), label: "positive".into(), cluster: None, fields }
    }

    #[test]
    fn templates_fill_fields_and_keep_escaped_braces() {
        assert_eq!(render("Say {text} {{json}}", &item()).unwrap(), "Say great {json}");
        assert_eq!(render("{input}!", &item()).unwrap(), "great!");
        assert!(render("{missing}", &item()).unwrap_err().contains("missing"));
        assert!(check_template("oops {text").is_err());
        assert!(check_template("oops }").is_err());
    }

    #[test]
    fn bodies_carry_decoding_and_extra_body() {
        let model: ModelConfig = serde_yaml::from_str(
            "{name: m, provider: openai, base_url: 'http://x/v1', model: org/m, send_top_k: true, extra_body: {reasoning_effort: low}}",
        )
        .unwrap();
        let d = DecodingPoint { temperature: 0.5, top_k: Some(40), top_p: 0.9, max_tokens: 16 };
        let b = body(&model, &d, "sys", "usr");
        assert_eq!(b["model"], "org/m");
        assert_eq!(b["top_k"], 40);
        assert_eq!(b["reasoning_effort"], "low");
        assert_eq!(b["messages"][1]["content"], "usr");
        assert_eq!(messages_text(&b), ("sys".to_string(), "usr".to_string()));
    }
}
