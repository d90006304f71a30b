//! Any OpenAI-compatible `/v1/chat/completions` endpoint (vLLM, llama.cpp server, Ollama, OpenAI,
//! OpenRouter) over reqwest. One attempt per call; `execute` decides about retries from the
//! `Failure` kind. The API key is read from the environment once and only ever sent as a header.
//!
//! The endpoint is untrusted: its body is read in a stream and cut at `max_response_bytes` (an
//! endless or huge body is a recorded error for that request, never an allocation), its `usage`
//! is checked against `MAX_TOKENS_PER_REQUEST` before anything adds it up, and every text taken
//! from it (content, errors, body excerpts) goes through the `Redactor` first, so a server that
//! echoes the key cannot get it journaled.
use std::time::Duration;

use serde::Deserialize;

use super::redact::Redactor;
use super::{Completion, Failure, MAX_TOKENS_PER_REQUEST, ProviderError};
use crate::eval::config::ModelConfig;

pub struct OpenAi {
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    redactor: Redactor,
    max_response_bytes: u64,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Characters of an error body kept in the recorded message.
const EXCERPT_CHARS: usize = 300;

impl OpenAi {
    pub fn new(
        model: &ModelConfig,
        timeout: Duration,
        max_response_bytes: u64,
    ) -> Result<OpenAi, ProviderError> {
        let key = api_key(model)?;
        let redactor = Redactor::new(key.as_deref());
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(model.max_connections)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ProviderError::Client {
                model: model.name.clone(),
                message: redactor.clean_owned(e.to_string()),
            })?;
        let base = model.base_url.as_deref().unwrap_or_default().trim_end_matches('/');
        Ok(OpenAi {
            client,
            url: format!("{base}/chat/completions"),
            key,
            redactor,
            max_response_bytes,
        })
    }

    pub async fn send(&self, body: bytes::Bytes) -> Result<Completion, Failure> {
        self.attempt(body)
            .await
            .map(|c| self.clean_completion(c))
            .map_err(|f| self.clean_failure(f))
    }

    async fn attempt(&self, body: bytes::Bytes) -> Result<Completion, Failure> {
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(transport_failure)?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let bytes = self.read_body(resp).await?;
        if !status.is_success() {
            // Cleaned before it is cut, so a key straddling the cut cannot leave a prefix behind.
            let text = error_text(&bytes);
            let text = self.redactor.clean(&text);
            let excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
            let message = format!("HTTP {}: {}", status.as_u16(), excerpt.trim());
            let retryable =
                status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error();
            return Err(if retryable {
                Failure::Retryable { message, retry_after }
            } else {
                Failure::Fatal { message }
            });
        }
        parse(&bytes)
    }

    /// The body, read chunk by chunk and given up on at `max_response_bytes`: memory stays bounded
    /// whatever the server sends (a 10 GB or endless body), and dropping the response closes the
    /// connection. Too large is fatal: the same request would get the same answer again.
    async fn read_body(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, Failure> {
        let status = resp.status().as_u16();
        let limit = self.max_response_bytes;
        let too_large = |what: String| Failure::Fatal {
            message: format!(
                "HTTP {status}: response body {what} is larger than execution.max_response_bytes ({limit} bytes)"
            ),
        };
        if let Some(len) = resp.content_length()
            && len > limit
        {
            return Err(too_large(format!("({len} bytes announced)")));
        }
        let mut out = Vec::new();
        loop {
            let chunk = resp.chunk().await.map_err(|e| Failure::Retryable {
                message: format!("HTTP {status}: response body cut short: {}", chain(&e)),
                retry_after: None,
            })?;
            let Some(chunk) = chunk else { return Ok(out) };
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(too_large(format!("(more than {limit} bytes received)")));
            }
            out.extend_from_slice(&chunk);
        }
    }

    fn clean_completion(&self, c: Completion) -> Completion {
        Completion {
            content: self.redactor.clean_owned(c.content),
            finish_reason: c.finish_reason.map(|r| self.redactor.clean_owned(r)),
            usage: c.usage,
        }
    }

    fn clean_failure(&self, f: Failure) -> Failure {
        match f {
            Failure::Retryable { message, retry_after } => {
                Failure::Retryable { message: self.redactor.clean_owned(message), retry_after }
            }
            Failure::Fatal { message } => {
                Failure::Fatal { message: self.redactor.clean_owned(message) }
            }
        }
    }
}

/// The model's API key from its `api_key_env` (none without one); an unset or empty variable
/// is an error. Also the batch backend's key.
pub fn api_key(model: &ModelConfig) -> Result<Option<String>, ProviderError> {
    match &model.api_key_env {
        Some(var) => match std::env::var(var) {
            Ok(k) if !k.is_empty() => Ok(Some(k)),
            _ => Err(ProviderError::MissingKey { model: model.name.clone(), var: var.clone() }),
        },
        None => Ok(None),
    }
}

/// A 200 body -> completion: the pure decoder of what an endpoint answers (no I/O, no key), which
/// the fuzz tests drive with arbitrary bytes. A body that is not the expected JSON is retryable:
/// proxies and overloaded servers send truncated or garbage bodies that a second attempt usually
/// fixes. Usage above `MAX_TOKENS_PER_REQUEST` is fatal: no sum may ever take it in, and the same
/// server would report it again.
pub fn parse(bytes: &[u8]) -> Result<Completion, Failure> {
    let r: ChatResponse = serde_json::from_slice(bytes).map_err(|e| Failure::Retryable {
        message: format!("malformed response body: {e}"),
        retry_after: None,
    })?;
    let Some(choice) = r.choices.into_iter().next() else {
        return Err(Failure::Retryable {
            message: "response has no choices".into(),
            retry_after: None,
        });
    };
    if let Some(u) = &r.usage {
        for (field, n) in
            [("prompt_tokens", u.prompt_tokens), ("completion_tokens", u.completion_tokens)]
        {
            if n > MAX_TOKENS_PER_REQUEST {
                return Err(Failure::Fatal {
                    message: format!(
                        "implausible usage: {field} is {n}, more than {MAX_TOKENS_PER_REQUEST} for one request"
                    ),
                });
            }
        }
    }
    Ok(Completion {
        content: choice.message.and_then(|m| m.content).unwrap_or_default(),
        finish_reason: choice.finish_reason,
        usage: r.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
    })
}

/// An error body as text. JSON is re-written compactly, which also undoes escapes (`\u0073k-…`),
/// so the redactor sees a key echoed in any JSON spelling as its plain bytes.
pub fn error_text(bytes: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => v.to_string(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// An error with its sources, which hold the useful part ("connection refused").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}

fn transport_failure(e: reqwest::Error) -> Failure {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // Builder errors (a bad URL) cannot heal; everything else on the wire might.
    if e.is_builder() {
        return Failure::Fatal { message: format!("{what}: {e}") };
    }
    Failure::Retryable { message: format!("{what}: {}", chain(&e)), retry_after: None }
}

/// `Retry-After` as seconds or an HTTP date, as asked (a huge value saturates instead of
/// overflowing); `execute` caps the wait at `backoff_max_s`.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_nan() || secs < 0.0 {
            return None;
        }
        return Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normal_body_gives_content_reason_and_usage() {
        let c = parse(br#"{"choices":[{"message":{"content":"positive"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3}}"#).unwrap();
        assert_eq!(c.content, "positive");
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(c.usage, Some((12, 3)));
    }

    #[test]
    fn json_error_bodies_are_unescaped_before_redaction() {
        let text = error_text(br#"{"error": "bad key \u0073k-1\/2"}"#);
        assert_eq!(text, r#"{"error":"bad key sk-1/2"}"#);
        assert_eq!(Redactor::new(Some("sk-1/2")).clean(&text), r#"{"error":"bad key [redacted]"}"#);
        assert_eq!(error_text(b"<html>\xff</html>"), "<html>\u{fffd}</html>");
    }

    #[test]
    fn implausible_usage_is_fatal() {
        let body = format!(
            r#"{{"choices":[{{"message":{{"content":"x"}}}}],"usage":{{"prompt_tokens":{},"completion_tokens":1}}}}"#,
            u64::MAX
        );
        let Err(Failure::Fatal { message }) = parse(body.as_bytes()) else { panic!() };
        assert!(message.contains("implausible usage: prompt_tokens"), "{message}");
    }

    #[test]
    fn truncated_and_empty_bodies_are_retryable() {
        assert!(matches!(parse(br#"{"choices":[{"mess"#), Err(Failure::Retryable { .. })));
        assert!(matches!(parse(br#"{"choices":[]}"#), Err(Failure::Retryable { .. })));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(reqwest::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "1e20".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::MAX));
        h.insert(reqwest::header::RETRY_AFTER, "inf".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::MAX));
        h.insert(reqwest::header::RETRY_AFTER, "Thu, 01 Jan 2099 00:00:00 GMT".parse().unwrap());
        assert!(retry_after(&h).unwrap() > Duration::from_secs(86400 * 365));
    }
}
