//! The lines of OpenAI batch files, both ways: the request lines exp writes (`custom_id`, `method`,
//! `url`, `body`), and the output lines a batch returns (OpenAI's output and error files, vLLM's
//! `run-batch` output), read into journal entries.
//!
//! Output files are untrusted (they come from a provider, or from anywhere on disk through
//! `exp ingest`): a line is bounded in length and in JSON nesting depth before it is parsed, and
//! every text taken from it passes through the `Redactor`, as a live answer does.
use serde::Deserialize;
use serde_json::Value;

use crate::eval::build::CHAT_URL;
use crate::eval::journal::{Entry, Status};
use crate::eval::providers::openai;
use crate::eval::providers::redact::Redactor;

/// Deeper JSON than any chat completion nests: refused before serde recurses into it.
pub const MAX_DEPTH: usize = 64;

/// Error codes of requests a batch never ran (the window expired, the batch was cancelled):
/// unanswered, so sent again, never journaled as failures.
const NOT_RUN: [&str; 2] = ["batch_expired", "batch_cancelled"];

/// One request line of a batch input file. `body` is the request body's JSON as built, copied
/// byte for byte.
pub fn request_line(custom_id: &str, body: &[u8]) -> Vec<u8> {
    let id = Value::String(custom_id.to_string()).to_string();
    let mut line = Vec::with_capacity(body.len() + id.len() + 80);
    line.extend_from_slice(b"{\"custom_id\":");
    line.extend_from_slice(id.as_bytes());
    line.extend_from_slice(b",\"method\":\"POST\",\"url\":\"");
    line.extend_from_slice(CHAT_URL.as_bytes());
    line.extend_from_slice(b"\",\"body\":");
    line.extend_from_slice(body);
    line.extend_from_slice(b"}\n");
    line
}

/// What one output line says about its request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An answer or a final failure, to journal.
    Answered(Entry),
    /// The batch never ran it (expired, cancelled): still to send.
    NotRun { code: String },
}

#[derive(Deserialize)]
struct OutputLine {
    custom_id: String,
    #[serde(default)]
    response: Option<Response>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct Response {
    status_code: u16,
    #[serde(default)]
    body: Value,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// An output line's custom_id and outcome; `Err` says what is wrong with the line.
pub fn parse_output(line: &[u8], redactor: &Redactor) -> Result<(String, Outcome), String> {
    check_depth(line)?;
    let out: OutputLine = serde_json::from_slice(line).map_err(|e| {
        format!(
            "not a batch output line ({e}); expected {{\"custom_id\", \"response\", \"error\"}}"
        )
    })?;
    let clean = |s: String| redactor.clean_owned(s);
    let error = |message: String| Entry::failed(out.custom_id.clone(), 1, 0, clean(message));
    let outcome = match (&out.response, &out.error) {
        (_, Some(e)) if e.code.as_deref().is_some_and(|c| NOT_RUN.contains(&c)) => {
            Outcome::NotRun { code: e.code.clone().unwrap_or_default() }
        }
        (Some(r), _) if r.status_code == 200 => {
            let body = serde_json::to_vec(&r.body).map_err(|e| e.to_string())?;
            match openai::parse(&body) {
                Ok(c) => Outcome::Answered(Entry {
                    custom_id: out.custom_id.clone(),
                    status: Status::Ok,
                    content: Some(clean(c.content)),
                    finish_reason: c.finish_reason.map(clean),
                    input_tokens: c.usage.map(|u| u.0).unwrap_or(0),
                    output_tokens: c.usage.map(|u| u.1).unwrap_or(0),
                    reasoning_tokens: c.reasoning_tokens,
                    usage_missing: c.usage.is_none(),
                    latency_ms: 0,
                    attempts: 1,
                    error: None,
                    reused: None,
                }),
                Err(f) => Outcome::Answered(error(f.message().to_string())),
            }
        }
        (Some(r), _) => {
            let message = r.body.pointer("/error/message").and_then(Value::as_str);
            let excerpt: String = match message {
                Some(m) => m.chars().take(300).collect(),
                None => r.body.to_string().chars().take(300).collect(),
            };
            Outcome::Answered(error(format!("HTTP {}: {excerpt}", r.status_code)))
        }
        (None, Some(e)) => Outcome::Answered(error(format!(
            "{}: {}",
            e.code.as_deref().unwrap_or("error"),
            e.message.as_deref().unwrap_or("(no message)")
        ))),
        (None, None) => return Err("has neither `response` nor `error`".into()),
    };
    Ok((out.custom_id, outcome))
}

/// Refuses JSON nested deeper than [`MAX_DEPTH`], counting brackets outside strings (one pass,
/// no allocation), so no parser ever recurses on an attacker's depth.
fn check_depth(line: &[u8]) -> Result<(), String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in line {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("JSON nested deeper than {MAX_DEPTH} levels"));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<(String, Outcome), String> {
        parse_output(line.as_bytes(), &Redactor::new(Some("sk-secret")))
    }

    #[test]
    fn request_lines_are_valid_batch_json() {
        let line = request_line("t/d:a\"b:control:r0", br#"{"model":"m","messages":[]}"#);
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["custom_id"], "t/d:a\"b:control:r0");
        assert_eq!((v["method"].as_str(), v["url"].as_str()), (Some("POST"), Some(CHAT_URL)));
        assert_eq!(v["body"]["model"], "m");
        assert!(line.ends_with(b"}\n"));
    }

    #[test]
    fn openai_output_and_error_lines_become_entries() {
        let ok = r#"{"id":"batch_req_1","custom_id":"c1","response":{"status_code":200,"request_id":"r","body":{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"positive sk-secret"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}},"error":null}"#;
        let (id, Outcome::Answered(e)) = parse(ok).unwrap() else { panic!() };
        assert_eq!(
            (id.as_str(), e.status, e.input_tokens, e.output_tokens),
            ("c1", Status::Ok, 12, 3)
        );
        assert_eq!(e.content.as_deref(), Some("positive [redacted]"));
        let bad = r#"{"id":"b","custom_id":"c2","response":{"status_code":400,"body":{"error":{"message":"bad model"}}},"error":null}"#;
        let (_, Outcome::Answered(e)) = parse(bad).unwrap() else { panic!() };
        assert_eq!((e.status, e.error.as_deref()), (Status::Error, Some("HTTP 400: bad model")));
        let expired = r#"{"id":"b","custom_id":"c3","response":null,"error":{"code":"batch_expired","message":"too late"}}"#;
        assert_eq!(parse(expired).unwrap().1, Outcome::NotRun { code: "batch_expired".into() });
        assert!(parse(r#"{"custom_id":"c4"}"#).unwrap_err().contains("neither"));
        assert!(parse("not json").unwrap_err().contains("not a batch output line"));
    }

    #[test]
    fn deep_json_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&deep).unwrap_err().contains("deeper than 64"));
        // Brackets inside strings do not count.
        assert!(check_depth(format!("\"{}\"", "[".repeat(1000)).as_bytes()).is_ok());
    }
}
