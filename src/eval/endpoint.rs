//! How exp talks to a model's endpoint, as the config says it: its replicas (`base_url` as one
//! URL or a list), its concurrency (`max_connections` as a number or `auto`), and which request
//! parameters its API takes (`token_limit_param`, `omit_params`, `send_top_k`), with the
//! defaults README.md documents ("The endpoints people actually call").
//!
//! The default rule, for `provider: openai`: a model whose API name (after its last `/`) starts
//! with `o` and a digit (`o1`, `o3-mini`, `o4-mini`) or with `gpt-5` is a reasoning model. Those
//! reject `max_tokens` and any `temperature`/`top_p` but their defaults, so they get
//! `max_completion_tokens` and neither sampling parameter. Every other model gets `max_tokens`
//! (what vLLM, llama.cpp and older servers read) and both. `top_k` is no OpenAI parameter: it is
//! sent only when the grid sets it and the model says its server takes it (`send_top_k: true`,
//! e.g. vLLM or llama.cpp; the sim model always reads it).
use serde::{Deserialize, Serialize};

use super::concurrency::Limiter;
use super::config::{ModelConfig, ProviderKind};

/// Requests in flight the adaptive limit may reach when the config names no ceiling.
pub const DEFAULT_CEILING: usize = 256;
/// Where the adaptive limit starts (or its ceiling, when that is lower).
pub const AUTO_START: usize = 4;

/// `base_url`: one URL, or a list of replicas serving the same model.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseUrls(pub Vec<String>);

impl Serialize for BaseUrls {
    /// One URL is written as it was read (a plain string), so configs without replicas keep
    /// their exact snapshot, and with it the fingerprint a resume checks.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for BaseUrls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BaseUrls;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a URL or a list of URLs")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BaseUrls, E> {
                Ok(BaseUrls(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<BaseUrls, A::Error> {
                let mut out = Vec::new();
                while let Some(url) = a.next_element::<String>()? {
                    out.push(url);
                }
                Ok(BaseUrls(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `max_connections`: a fixed number of requests in flight, or `auto` (AIMD, see
/// `eval::concurrency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxConnections {
    Fixed(usize),
    Auto,
}

impl Default for MaxConnections {
    fn default() -> Self {
        MaxConnections::Fixed(32)
    }
}

impl Serialize for MaxConnections {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxConnections::Fixed(n) => s.serialize_u64(*n as u64),
            MaxConnections::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for MaxConnections {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = MaxConnections;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of connections or `auto`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MaxConnections, E> {
                Ok(MaxConnections::Fixed(usize::try_from(v).unwrap_or(usize::MAX)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MaxConnections, E> {
                // Negative: kept as 0, which the range check refuses naming the key and line.
                Ok(MaxConnections::Fixed(usize::try_from(v).unwrap_or(0)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MaxConnections, E> {
                match v {
                    "auto" => Ok(MaxConnections::Auto),
                    other => match other.parse::<usize>() {
                        Ok(n) => Ok(MaxConnections::Fixed(n)),
                        Err(_) => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                    },
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Which key carries the decoding grid's `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenLimitParam {
    MaxTokens,
    MaxCompletionTokens,
}

impl TokenLimitParam {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenLimitParam::MaxTokens => "max_tokens",
            TokenLimitParam::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

/// A decoding parameter a model's endpoint may refuse (`omit_params`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecodingParam {
    Temperature,
    TopP,
    TopK,
}

/// What the request body of one model carries, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyParams {
    pub token_limit: TokenLimitParam,
    pub temperature: bool,
    pub top_p: bool,
    /// The grid's `top_k`, when it has one.
    pub top_k: bool,
}

/// The most requests of this model in flight: `max_connections`, or the ceiling of `auto`.
pub fn task_bound(model: &ModelConfig) -> usize {
    match model.max_connections {
        MaxConnections::Fixed(n) => n.max(1),
        MaxConnections::Auto => model.max_connections_ceiling.unwrap_or(DEFAULT_CEILING).max(1),
    }
}

/// The model's concurrency limit, fixed or adaptive.
pub fn limiter(model: &ModelConfig) -> Limiter {
    match model.max_connections {
        MaxConnections::Fixed(n) => Limiter::fixed(n),
        MaxConnections::Auto => Limiter::auto(AUTO_START, task_bound(model)),
    }
}

/// Whether `api_model` names a reasoning model (the rule in the module doc).
pub fn is_reasoning_model(api_model: &str) -> bool {
    let name = api_model.rsplit('/').next().unwrap_or(api_model).to_ascii_lowercase();
    let o_series =
        name.strip_prefix('o').is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    o_series || name.starts_with("gpt-5")
}

/// The model's body parameters: what the config says, else the default rule.
pub fn body_params(model: &ModelConfig) -> BodyParams {
    let reasoning = model.provider == ProviderKind::Openai && is_reasoning_model(model.api_model());
    let token_limit = model.token_limit_param.unwrap_or(if reasoning {
        TokenLimitParam::MaxCompletionTokens
    } else {
        TokenLimitParam::MaxTokens
    });
    let default_omit: &[DecodingParam] =
        if reasoning { &[DecodingParam::Temperature, DecodingParam::TopP] } else { &[] };
    let omit = model.omit_params.as_deref().unwrap_or(default_omit);
    let top_k_allowed = model.send_top_k.unwrap_or(model.provider == ProviderKind::Sim);
    BodyParams {
        token_limit,
        temperature: !omit.contains(&DecodingParam::Temperature),
        top_p: !omit.contains(&DecodingParam::TopP),
        top_k: top_k_allowed && !omit.contains(&DecodingParam::TopK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(yaml: &str) -> ModelConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn reasoning_names_follow_the_documented_rule() {
        for name in ["o1", "o3-mini", "o4-mini-2025-04-16", "openai/o3", "gpt-5", "GPT-5-mini"] {
            assert!(is_reasoning_model(name), "{name}");
        }
        for name in ["gpt-4o", "gpt-4.1-mini", "openai/gpt-oss-120b", "olmo-2", "llama-3", "omni"] {
            assert!(!is_reasoning_model(name), "{name}");
        }
    }

    #[test]
    fn defaults_depend_on_the_model_and_the_config_wins() {
        let o3 =
            body_params(&model("{name: r, provider: openai, base_url: 'http://x', model: o3}"));
        assert_eq!(o3.token_limit, TokenLimitParam::MaxCompletionTokens);
        assert!(!o3.temperature && !o3.top_p && !o3.top_k);
        let gpt4 = body_params(&model("{name: gpt-4o, provider: openai, base_url: 'http://x'}"));
        assert_eq!(gpt4.token_limit, TokenLimitParam::MaxTokens);
        assert!(gpt4.temperature && gpt4.top_p && !gpt4.top_k);
        let vllm = body_params(&model(
            "{name: v, provider: openai, base_url: 'http://x', send_top_k: true, token_limit_param: max_completion_tokens, omit_params: [top_p]}",
        ));
        assert_eq!(vllm.token_limit, TokenLimitParam::MaxCompletionTokens);
        assert!(vllm.temperature && !vllm.top_p && vllm.top_k);
        let sim = body_params(&model(
            "{name: o3, provider: sim, sim: {accuracy: {control: 1, treatment: 1}}}",
        ));
        assert_eq!(sim.token_limit, TokenLimitParam::MaxTokens);
        assert!(sim.temperature && sim.top_p && sim.top_k);
    }

    #[test]
    fn base_url_and_max_connections_read_both_spellings_and_write_one_url_as_a_string() {
        let m = model(
            "{name: m, provider: openai, base_url: [http://a, http://b], max_connections: auto}",
        );
        assert_eq!(m.base_url.as_ref().unwrap().0, ["http://a", "http://b"]);
        assert_eq!(m.max_connections, MaxConnections::Auto);
        let one = model("{name: m, provider: openai, base_url: http://a, max_connections: 8}");
        assert_eq!(one.max_connections, MaxConnections::Fixed(8));
        let yaml = serde_yaml::to_string(&one).unwrap();
        assert!(
            yaml.contains("base_url: http://a\n") && yaml.contains("max_connections: 8\n"),
            "{yaml}"
        );
        let err = serde_yaml::from_str::<ModelConfig>(
            "{name: m, provider: openai, max_connections: lots}",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("a number of connections or `auto`"), "{err}");
    }
}
