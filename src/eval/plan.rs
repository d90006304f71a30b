//! The trial matrix: model × prompt set × decoding, its readable unique slugs, and the jobs
//! (trial, condition, part) that are the unit of concurrency and of resume.
//!
//! Pure: no I/O. The same config always yields the same trials, slugs and jobs in the same order,
//! which is what lets `--resume` and `--skip-build` find the files of an earlier invocation.
use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::{Config, ModelConfig};

/// Conditions and decoding points are part of the run files' format (trial.json, the
/// manifest), so they are defined there.
pub use crate::runfiles::{Condition, Decoding as DecodingPoint};

/// A trial's folder name: readable, deterministic, filesystem-safe, unique within a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrialSlug(String);

impl TrialSlug {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrialSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
pub struct Trial {
    pub slug: TrialSlug,
    pub model: ModelConfig,
    pub prompt_set: String,
    pub decoding: DecodingPoint,
    pub repeats: u32,
}

/// One unit of work: a trial's condition on one slice of one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub trial: usize,
    pub condition: Condition,
    pub dataset: usize,
    /// Numbered across all datasets of the trial, so `part-NNNN` names are unique in a folder.
    pub part: usize,
    /// Item index range `[start, end)` within the dataset.
    pub start: usize,
    pub end: usize,
}

impl Job {
    pub fn file_name(&self) -> String {
        part_file_name(self.part)
    }
}

pub fn part_file_name(part: usize) -> String {
    format!("part-{part:04}.jsonl")
}

/// Every trial of the config, in a stable order (models, then prompt sets, then the decoding grid).
pub fn trials(config: &Config) -> Vec<Trial> {
    let d = &config.decoding;
    let top_ks: Vec<Option<u32>> =
        if d.top_k.is_empty() { vec![None] } else { d.top_k.iter().map(|k| Some(*k)).collect() };
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for model in &config.models {
        for set in config.prompt_sets.keys() {
            for &temperature in &d.temps {
                for &top_k in &top_ks {
                    for &top_p in &d.top_p {
                        for &max_tokens in &d.max_tokens {
                            let decoding = DecodingPoint { temperature, top_k, top_p, max_tokens };
                            let base = slug_for(&model.name, set, &decoding);
                            // Two names can sanitize to the same text ("a/b", "a_b"); a numbered
                            // suffix keeps folders apart, deterministically (config order).
                            let mut slug = base.clone();
                            let mut n = 2;
                            while !seen.insert(slug.clone()) {
                                slug = format!("{base}-{n}");
                                n += 1;
                            }
                            out.push(Trial {
                                slug: TrialSlug(slug),
                                model: model.clone(),
                                prompt_set: set.clone(),
                                decoding,
                                repeats: d.repeats,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

/// `gpt-oss-120b-operational_only-t0-tk50-tp1-mx1024`.
pub fn slug_for(model: &str, prompt_set: &str, d: &DecodingPoint) -> String {
    let mut s = format!("{}-{}-t{}", sanitize(model), sanitize(prompt_set), num(d.temperature));
    if let Some(k) = d.top_k {
        s.push_str(&format!("-tk{k}"));
    }
    s.push_str(&format!("-tp{}-mx{}", num(d.top_p), d.max_tokens));
    s
}

/// Shortest decimal that reads back the same value: 0.0 -> "0", 0.7 -> "0.7".
fn num(x: f64) -> String {
    format!("{x}")
}

fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(
            |c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' { c } else { '_' },
        )
        .collect();
    // A leading dot would hide the folder; an empty name would collapse the slug.
    let out = out.trim_start_matches('.').to_string();
    if out.is_empty() { "x".into() } else { out }
}

/// Splits `n` items into at most `parts` contiguous, near-equal slices (never an empty one).
pub fn split(n: usize, parts: usize) -> Vec<(usize, usize)> {
    let parts = parts.clamp(1, n.max(1));
    let base = n / parts;
    let extra = n % parts;
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for i in 0..parts {
        let len = base + usize::from(i < extra);
        out.push((start, start + len));
        start += len;
    }
    out
}

/// Every job: trial × condition × dataset part. `dataset_sizes[i]` is the item count of dataset i.
pub fn jobs(
    n_trials: usize,
    conditions: &[Condition],
    dataset_sizes: &[usize],
    parts_per_dataset: usize,
) -> Vec<Job> {
    let mut out = Vec::new();
    for trial in 0..n_trials {
        for &condition in conditions {
            let mut part = 0;
            for (dataset, &n) in dataset_sizes.iter().enumerate() {
                for (start, end) in split(n, parts_per_dataset) {
                    out.push(Job { trial, condition, dataset, part, start, end });
                    part += 1;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_read_like_the_design_example() {
        let d = DecodingPoint { temperature: 0.0, top_k: Some(50), top_p: 1.0, max_tokens: 1024 };
        assert_eq!(
            slug_for("gpt-oss-120b", "operational_only", &d),
            "gpt-oss-120b-operational_only-t0-tk50-tp1-mx1024"
        );
        let d = DecodingPoint { temperature: 0.7, top_k: None, top_p: 0.95, max_tokens: 64 };
        assert_eq!(slug_for("openai/gpt 4", "p", &d), "openai_gpt_4-p-t0.7-tp0.95-mx64");
    }

    #[test]
    fn split_covers_every_item_once_without_empty_parts() {
        for n in [0, 1, 5, 7, 100] {
            for parts in [1, 2, 3, 24] {
                let s = split(n, parts);
                assert!(!s.is_empty());
                assert_eq!(s[0].0, 0);
                assert_eq!(s.last().unwrap().1, n);
                for w in s.windows(2) {
                    assert_eq!(w[0].1, w[1].0);
                }
                if n > 0 {
                    assert!(s.iter().all(|(a, b)| b > a));
                }
            }
        }
    }

    #[test]
    fn jobs_number_parts_across_datasets() {
        let j = jobs(1, &[Condition::Treatment], &[5, 3], 2);
        let parts: Vec<usize> = j.iter().map(|j| j.part).collect();
        assert_eq!(parts, vec![0, 1, 2, 3]);
        assert_eq!((j[2].dataset, j[2].start, j[2].end), (1, 0, 2));
    }
}
