//! Any OpenAI-compatible `/v1/chat/completions` endpoint (vLLM, llama.cpp server, Ollama, OpenAI,
//! OpenRouter) over `http::Client`. One attempt per call; `execute` decides about retries from the
//! `Failure` kind. Each attempt goes to one of the model's replicas (`replicas`) under its
//! concurrency limit (`eval::concurrency`). The API key is read from the environment once and
//! only ever sent as a header.
//!
//! The endpoint is untrusted: its body is read in a stream and cut at `max_response_bytes` (an
//! endless or huge body is a recorded error for that request, never an allocation), its `usage`
//! is checked against `MAX_TOKENS_PER_REQUEST` before anything adds it up, and every text taken
//! from it (content, errors, body excerpts) goes through the `Redactor` first, so a server that
//! echoes the key cannot get it journaled.
use std::time::Duration;

use reqwest::header::LOCATION;
use serde::Deserialize;

use super::http;
use super::redact::Redactor;
use super::replicas::{Outcome, Pick, Replicas};
use super::{Completion, Failure, MAX_TOKENS_PER_REQUEST, ProviderError};
use crate::eval::concurrency::{Limiter, Signal};
use crate::eval::config::{Execution, ModelConfig};
use crate::eval::endpoint;
use crate::runfiles::results::EndpointUse;

pub struct OpenAi {
    /// The model's name in the config, for messages.
    model: String,
    client: http::Client,
    replicas: Replicas,
    limiter: Limiter,
    redactor: Redactor,
    max_response_bytes: u64,
    /// The whole of one attempt: connect, send and the body to its end.
    timeout: Duration,
}

/// A failed attempt, with what it says about the replica and about the load.
struct Failed {
    failure: Failure,
    outcome: Outcome,
    signal: Signal,
}

impl Failed {
    /// A failure that says nothing about either: the server answered, just not usefully.
    fn answered(failure: Failure) -> Failed {
        Failed { failure, outcome: Outcome::Failed, signal: Signal::Fine }
    }
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
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl Usage {
    fn reasoning_tokens(&self) -> u64 {
        self.completion_tokens_details.as_ref().and_then(|d| d.reasoning_tokens).unwrap_or(0)
    }
}

/// Characters of an error body kept in the recorded message.
const EXCERPT_CHARS: usize = 300;

impl OpenAi {
    pub fn new(model: &ModelConfig, execution: &Execution) -> Result<OpenAi, ProviderError> {
        let key = api_key(model)?;
        let redactor = Redactor::new(key.as_deref());
        let urls = model.base_url.as_ref().map(|u| u.0.as_slice()).unwrap_or_default();
        let replicas = Replicas::new(
            urls,
            Duration::from_secs_f64(execution.backoff_base_s),
            Duration::from_secs_f64(execution.backoff_max_s),
        );
        let client =
            http::Client::new(&replicas.urls(), key.as_deref(), endpoint::task_bound(model))
                .map_err(|message| ProviderError::Client {
                    model: model.name.clone(),
                    message: redactor.clean_owned(message),
                })?;
        Ok(OpenAi {
            model: model.name.clone(),
            client,
            replicas,
            limiter: endpoint::limiter(model),
            redactor,
            max_response_bytes: execution.max_response_bytes,
            timeout: Duration::from_secs_f64(execution.timeout_s),
        })
    }

    /// One attempt: a slot under the model's concurrency limit, the replica with the fewest in
    /// flight (waiting while every one rests), the request; then the replica's health and the
    /// limit learn how it went. `Failure::Down` when no replica is left.
    pub async fn send(&self, body: bytes::Bytes) -> Result<Completion, Failure> {
        let permit = self.limiter.acquire().await;
        let lease = loop {
            match self.replicas.pick() {
                Pick::Use(lease) => break lease,
                Pick::Wait(d) => tokio::time::sleep(d).await,
                Pick::Down(message) => {
                    return Err(Failure::Down { message: self.down_message(message) });
                }
            }
        };
        match self.attempt(lease.url(), body).await {
            Ok(c) => {
                lease.finish(&self.replicas, Outcome::Answered, None);
                permit.finish(Signal::Fine);
                Ok(self.clean_completion(c))
            }
            Err(f) => {
                let failure = self.clean_failure(f.failure);
                lease.finish(&self.replicas, f.outcome, Some(failure.message()));
                permit.finish(f.signal);
                Err(failure)
            }
        }
    }

    /// The model's replicas and concurrency so far.
    pub fn report(&self) -> EndpointUse {
        EndpointUse {
            model: self.model.clone(),
            down: self.replicas.down().map(|m| self.down_message(m)),
            replicas: self.replicas.report(),
            concurrency: self.limiter.report(),
        }
    }

    fn down_message(&self, message: String) -> String {
        self.redactor.clean_owned(format!("model `{}`: {message}", self.model))
    }

    /// The adaptive limit now, for the progress line; `None` for a fixed one.
    pub fn adaptive_limit(&self) -> Option<usize> {
        self.limiter.is_auto().then(|| self.limiter.limit())
    }

    /// One attempt, given up on after `execution.timeout_s` whichever step hangs (a server that
    /// accepts and never answers, or stops sending mid-body, is as good as down).
    async fn attempt(&self, url: &str, body: bytes::Bytes) -> Result<Completion, Failed> {
        match tokio::time::timeout(self.timeout, self.exchange(url, body)).await {
            Ok(result) => result,
            Err(_) => Err(Failed {
                failure: Failure::Retryable {
                    message: format!("timed out after {} s", self.timeout.as_secs_f64()),
                    retry_after: None,
                },
                outcome: Outcome::Unreachable,
                signal: Signal::Silent,
            }),
        }
    }

    async fn exchange(&self, url: &str, body: bytes::Bytes) -> Result<Completion, Failed> {
        let resp = self.client.post(url, body).await.map_err(transport_failure)?;
        let status = resp.status;
        let retry_after = retry_after(&resp.headers);
        let location =
            resp.headers.get(LOCATION).map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
        let bytes = self.read_body(resp).await?;
        if !(200..300).contains(&status) {
            // Cleaned before it is cut, so a key straddling the cut cannot leave a prefix behind.
            let text = error_text(&bytes);
            let text = self.redactor.clean(&text);
            let excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
            let mut message = format!("HTTP {status}: {}", excerpt.trim());
            message.push_str(&redirect_remark(status, location.as_deref(), &self.redactor));
            let retryable = status == 429 || status == 408 || (500..600).contains(&status);
            let signal =
                if status == 429 || status == 503 { Signal::Overloaded } else { Signal::Fine };
            let failure = if retryable {
                Failure::Retryable { message, retry_after }
            } else {
                Failure::Fatal { message }
            };
            return Err(Failed { failure, outcome: Outcome::Failed, signal });
        }
        parse(&bytes).map_err(Failed::answered)
    }

    /// The body, read chunk by chunk and given up on at `max_response_bytes`: memory stays bounded
    /// whatever the server sends (a 10 GB or endless body), and dropping the response closes the
    /// connection. Too large is fatal: the same request would get the same answer again.
    async fn read_body(&self, mut resp: http::Response) -> Result<Vec<u8>, Failed> {
        let status = resp.status;
        let limit = self.max_response_bytes;
        let too_large = |what: String| {
            Failed::answered(Failure::Fatal {
                message: format!(
                    "HTTP {status}: response body {what} is larger than execution.max_response_bytes ({limit} bytes)"
                ),
            })
        };
        if let Some(len) = resp.content_length()
            && len > limit
        {
            return Err(too_large(format!("({len} bytes announced)")));
        }
        let mut out = Vec::new();
        loop {
            let chunk = resp.chunk().await.map_err(|e| Failed {
                failure: Failure::Retryable {
                    message: format!("HTTP {status}: response body cut short: {}", e.message),
                    retry_after: None,
                },
                outcome: Outcome::Failed,
                signal: Signal::Silent,
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
            reasoning_tokens: c.reasoning_tokens,
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
            Failure::Down { message } => {
                Failure::Down { message: self.redactor.clean_owned(message) }
            }
        }
    }
}

/// The model's API key from its `api_key_env` (none without one); an unset or empty variable
/// is an error. Also the batch backend's key.
pub fn api_key(model: &ModelConfig) -> Result<Option<String>, ProviderError> {
    match &model.api_key_env {
        Some(var) => match std::env::var(var) {
            // Checked here, where the variable can be named, rather than when a header is built.
            Ok(k) if k.bytes().any(|b| b.is_ascii_control()) => {
                Err(ProviderError::BadKey { model: model.name.clone(), var: var.clone() })
            }
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
        for (field, n) in [
            ("prompt_tokens", u.prompt_tokens),
            ("completion_tokens", u.completion_tokens),
            ("reasoning_tokens", u.reasoning_tokens()),
        ] {
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
        reasoning_tokens: r.usage.as_ref().map_or(0, Usage::reasoning_tokens),
        usage: r.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
    })
}

/// For a redirect (never followed: it would take the key along), where it points and what to
/// do, cleaned of the key; empty for any other answer.
pub fn redirect_remark(status: u16, location: Option<&str>, redactor: &Redactor) -> String {
    match location {
        Some(location) if (300..400).contains(&status) => {
            let location: String = redactor.clean(location).chars().take(EXCERPT_CHARS).collect();
            format!(" (redirects to {location}: set base_url to it)")
        }
        _ => String::new(),
    }
}

/// An error body as text. JSON is re-written compactly, which also undoes escapes (`\u0073k-…`),
/// so the redactor sees a key echoed in any JSON spelling as its plain bytes.
pub fn error_text(bytes: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => v.to_string(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// A request that got no answer. Refused connections and timeouts count against the replica
/// (`Outcome::Unreachable`: enough in a row rest it); neither says anything about load.
fn transport_failure(e: http::SendError) -> Failed {
    let what = if e.connect { "connection failed" } else { "request failed" };
    let outcome = if e.connect { Outcome::Unreachable } else { Outcome::Failed };
    // A URL the client cannot use cannot heal; everything else on the wire might.
    let failure = if e.fatal {
        Failure::Fatal { message: format!("{what}: {}", e.message) }
    } else {
        Failure::Retryable { message: format!("{what}: {}", e.message), retry_after: None }
    };
    Failed { failure, outcome, signal: Signal::Silent }
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
        assert_eq!(c.reasoning_tokens, 0);
        let c = parse(br#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":5,"completion_tokens":40,"completion_tokens_details":{"reasoning_tokens":32}}}"#).unwrap();
        assert_eq!((c.usage, c.reasoning_tokens), (Some((5, 40)), 32));
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
