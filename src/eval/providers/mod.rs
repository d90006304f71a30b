//! Where requests go: an OpenAI-compatible endpoint (`openai`) or the built-in simulated model
//! (`sim`). A provider turns one built request body into a completion or a failure; retries,
//! concurrency limits, the journal and scoring are shared code in `execute`, so the two providers
//! differ in nothing after the answer arrives.
pub mod http;
pub mod openai;
pub mod redact;
pub mod replicas;
pub mod sim;

use std::time::Duration;

use super::config::{Execution, ModelConfig, ProviderKind};
use super::plan::Condition;
use crate::error::Hint;
use crate::runfiles::results::EndpointUse;

/// More tokens than any model reads or writes in one request: usage above it is a lie or a bug
/// of the endpoint, refused before anything adds it up (totals of u64s and USD stay exact and
/// finite however many requests a run has).
pub const MAX_TOKENS_PER_REQUEST: u64 = 100_000_000;

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub content: String,
    pub finish_reason: Option<String>,
    /// Usage as reported; `None` when the endpoint sent no `usage`.
    pub usage: Option<(u64, u64)>,
    /// `usage.completion_tokens_details.reasoning_tokens`: the part of the completion tokens a
    /// reasoning model spent thinking (0 when not reported).
    pub reasoning_tokens: u64,
}

/// Why one attempt failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// 429, 5xx, timeouts, dropped connections, truncated or malformed bodies.
    Retryable { message: String, retry_after: Option<Duration> },
    /// Anything another attempt would only repeat (400, 401, 404, …).
    Fatal { message: String },
    /// Every replica of the model is down (`replicas`): the request was not sent and the run
    /// stops rather than record it as failed.
    Down { message: String },
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Retryable { message, .. }
            | Failure::Fatal { message }
            | Failure::Down { message } => message,
        }
    }
}

/// What a request needs besides its body: only the sim model reads it (to know the gold answer).
pub struct RequestContext<'a> {
    pub custom_id: &'a str,
    pub condition: Condition,
    pub gold: &'a str,
}

/// Why a provider could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("model `{model}` reads its API key from ${var}, which is not set")]
    MissingKey { model: String, var: String },
    #[error(
        "model `{model}` reads its API key from ${var}, whose value cannot be sent in a header (a line break or another control character)"
    )]
    BadKey { model: String, var: String },
    #[error("cannot set up the HTTP client for model `{model}`: {message}")]
    Client { model: String, message: String },
}

impl Hint for ProviderError {
    fn hint(&self) -> Option<String> {
        match self {
            ProviderError::MissingKey { var, .. } => Some(format!(
                "export {var}=… before running (the key is read from the environment and never written anywhere)"
            )),
            ProviderError::BadKey { var, .. } => Some(format!(
                "export {var} again with the key alone (a key copied with its line end carries it along)"
            )),
            ProviderError::Client { .. } => Some("check the model's base_url".into()),
        }
    }
}

pub enum Provider {
    /// Boxed: its client and replicas are large beside the sim model, and there is one per model.
    Openai(Box<openai::OpenAi>),
    Sim(sim::Sim),
}

impl Provider {
    /// `labels` are the scorer's answers (the sim model picks wrong answers among them);
    /// `execution` gives the timeout, the bound on an answer's size and the backoff replicas
    /// rest by.
    pub fn new(
        model: &ModelConfig,
        execution: &Execution,
        labels: &[String],
    ) -> Result<Provider, ProviderError> {
        Ok(match model.provider {
            ProviderKind::Openai => {
                Provider::Openai(Box::new(openai::OpenAi::new(model, execution)?))
            }
            ProviderKind::Sim => Provider::Sim(sim::Sim::new(model, labels)),
        })
    }

    /// How the model's endpoint was used (replicas, concurrency); `None` for the sim model.
    pub fn report(&self) -> Option<EndpointUse> {
        match self {
            Provider::Openai(p) => Some(p.report()),
            Provider::Sim(_) => None,
        }
    }

    /// The adaptive concurrency limit now, when the model has one.
    pub fn adaptive_limit(&self) -> Option<usize> {
        match self {
            Provider::Openai(p) => p.adaptive_limit(),
            Provider::Sim(_) => None,
        }
    }

    /// One attempt.
    pub async fn send(
        &self,
        body: &bytes::Bytes,
        ctx: &RequestContext<'_>,
    ) -> Result<Completion, Failure> {
        match self {
            Provider::Openai(p) => p.send(body.clone()).await,
            Provider::Sim(p) => p.send(body, ctx).await,
        }
    }
}
