//! The simulated model: offline, free, deterministic, for the quickstart, demos and tests.
//!
//! Honest about what it is: every answer starts with `[simulated]`, and it is only ever used for
//! a model configured with `provider: sim`, never as a fallback for a real one. Each answer is a
//! pure function of (seed, model, custom_id = dataset/item/condition/repeat, decoding), so a rerun
//! or a resume reproduces it exactly. It is right with the configured probability per condition
//! (a wrong answer is another label); usage is counted from the real prompt and answer sizes.
use rand::{Rng, SeedableRng};

use super::{Completion, Failure, RequestContext};
use crate::eval::build::{estimate_prompt_tokens, estimate_tokens, messages_text};
use crate::eval::config::{ModelConfig, SimAccuracy};
use crate::eval::plan::Condition;

pub const MARKER: &str = "[simulated]";

pub struct Sim {
    name: String,
    accuracy: SimAccuracy,
    seed: u64,
    latency: std::time::Duration,
    labels: Vec<String>,
}

impl Sim {
    pub fn new(model: &ModelConfig, labels: &[String]) -> Sim {
        let sim = model.sim.clone();
        Sim {
            name: model.name.clone(),
            accuracy: sim
                .as_ref()
                .map(|s| s.accuracy)
                .unwrap_or(SimAccuracy { control: 0.5, treatment: 0.5 }),
            seed: sim.as_ref().map(|s| s.seed).unwrap_or(0),
            latency: std::time::Duration::from_millis(sim.map(|s| s.latency_ms).unwrap_or(0)),
            labels: labels.to_vec(),
        }
    }

    pub async fn send(&self, body: &[u8], ctx: &RequestContext<'_>) -> Result<Completion, Failure> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let body: serde_json::Value = serde_json::from_slice(body).map_err(|e| Failure::Fatal {
            message: format!("sim: request body is not JSON: {e}"),
        })?;
        Ok(self.answer(&body, ctx))
    }

    /// The deterministic answer to one request.
    pub fn answer(&self, body: &serde_json::Value, ctx: &RequestContext<'_>) -> Completion {
        let mut h = blake3::Hasher::new();
        h.update(b"exp-sim-v1\0");
        h.update(&self.seed.to_le_bytes());
        for part in [self.name.as_str(), ctx.custom_id, ctx.condition.as_str()] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
        for key in ["temperature", "top_p", "top_k", "max_tokens"] {
            h.update(body[key].to_string().as_bytes());
            h.update(b"\0");
        }
        let mut rng = rand_chacha::ChaCha8Rng::from_seed(*h.finalize().as_bytes());
        let p = match ctx.condition {
            Condition::Control => self.accuracy.control,
            Condition::Treatment => self.accuracy.treatment,
        };
        let right = rng.r#gen::<f64>() < p;
        let answer = if right {
            ctx.gold.to_string()
        } else {
            let wrong: Vec<&String> =
                self.labels.iter().filter(|l| !l.eq_ignore_ascii_case(ctx.gold)).collect();
            if wrong.is_empty() {
                format!("not {}", ctx.gold)
            } else {
                wrong[rng.gen_range(0..wrong.len())].clone()
            }
        };
        let content = format!("{MARKER} {answer}");
        let (system, user) = messages_text(body);
        Completion {
            usage: Some((estimate_prompt_tokens(&system, &user), estimate_tokens(&content))),
            content,
            finish_reason: Some("stop".into()),
            reasoning_tokens: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(control: f64, treatment: f64) -> Sim {
        let model: ModelConfig = serde_yaml::from_str(&format!(
            "{{name: s, provider: sim, sim: {{accuracy: {{control: {control}, treatment: {treatment}}}, seed: 3}}}}"
        ))
        .unwrap();
        Sim::new(&model, &["positive".into(), "negative".into(), "neutral".into()])
    }

    fn body(t: f64) -> serde_json::Value {
        serde_json::json!({"temperature": t, "top_p": 1.0, "max_tokens": 8,
            "messages": [{"role": "system", "content": "You classify."}, {"role": "user", "content": "great film"}]})
    }

    #[test]
    fn answers_are_deterministic_marked_and_counted() {
        let s = sim(0.7, 0.8);
        let ctx = RequestContext {
            custom_id: "d:1:control:r0",
            condition: Condition::Control,
            gold: "positive",
        };
        let a = s.answer(&body(0.0), &ctx);
        assert_eq!(a, s.answer(&body(0.0), &ctx));
        assert!(a.content.starts_with(MARKER));
        let (input, output) = a.usage.unwrap();
        assert_eq!(input, estimate_prompt_tokens("You classify.", "great film"));
        assert_eq!(output, estimate_tokens(&a.content));
    }

    #[test]
    fn accuracy_follows_the_configured_rate_per_condition() {
        let s = sim(0.3, 0.9);
        for (cond, want) in [(Condition::Control, 0.3), (Condition::Treatment, 0.9)] {
            let n = 4000;
            let right = (0..n)
                .filter(|i| {
                    let id = format!("d:{i}:{cond}:r0");
                    let ctx = RequestContext { custom_id: &id, condition: cond, gold: "neutral" };
                    s.answer(&body(1.0), &ctx).content == format!("{MARKER} neutral")
                })
                .count();
            let rate = right as f64 / n as f64;
            // 4000 draws: the standard error is under 0.008, so 0.04 is five of them.
            assert!((rate - want).abs() < 0.04, "{cond}: {rate}");
        }
    }
}
