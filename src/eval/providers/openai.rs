//! Any OpenAI-compatible `/v1/chat/completions` endpoint (vLLM, llama.cpp server, Ollama, OpenAI,
//! OpenRouter) over reqwest. One attempt per call; `execute` decides about retries from the
//! `Failure` kind. The API key is read from the environment once and only ever sent as a header.
use std::time::Duration;

use serde::Deserialize;

use super::{Completion, Failure, ProviderError};
use crate::eval::config::ModelConfig;

pub struct OpenAi {
    client: reqwest::Client,
    url: String,
    key: Option<String>,
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

/// Longest wait a server's Retry-After is honoured for; beyond it the server is treated as down
/// and the attempt is counted like any other.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

impl OpenAi {
    pub fn new(model: &ModelConfig, timeout: Duration) -> Result<OpenAi, ProviderError> {
        let key = match &model.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.is_empty() => Some(k),
                _ => {
                    return Err(ProviderError::MissingKey {
                        model: model.name.clone(),
                        var: var.clone(),
                    });
                }
            },
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(model.max_connections)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ProviderError::Client {
                model: model.name.clone(),
                message: e.to_string(),
            })?;
        let base = model.base_url.as_deref().unwrap_or_default().trim_end_matches('/');
        Ok(OpenAi { client, url: format!("{base}/chat/completions"), key })
    }

    pub async fn send(&self, body: bytes::Bytes) -> Result<Completion, Failure> {
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
        let bytes = resp.bytes().await.map_err(|e| Failure::Retryable {
            message: format!("HTTP {}: response body cut short: {e}", status.as_u16()),
            retry_after: None,
        })?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            let excerpt: String = text.chars().take(300).collect();
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
}

/// A 200 body -> completion. A body that is not the expected JSON is retryable: proxies and
/// overloaded servers send truncated or garbage bodies that a second attempt usually fixes.
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
    Ok(Completion {
        content: choice.message.and_then(|m| m.content).unwrap_or_default(),
        finish_reason: choice.finish_reason,
        usage: r.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
    })
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
    let mut message = format!("{what}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    Failure::Retryable { message, retry_after: None }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let d = if let Ok(secs) = v.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        Duration::from_secs_f64(secs)
    } else {
        let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
        delta.to_std().unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
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
    }
}
