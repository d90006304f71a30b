//! Scorers: a model's raw output -> (prediction, score in [0, 1]).
//!
//! `label`: the prediction is one of the configured labels, taken from `extract`'s first group (or
//! whole match) when given, else the first label that appears as a word in the output;
//! `exact`: the whole output equals the gold answer; `regex`: `extract` pulls the answer out and it
//! equals the gold answer. Both sides go through the same normalization, so "Positive." matches
//! "positive". An output with no recognizable answer scores 0 with an empty prediction.
use regex::Regex;

use super::config::{Normalize, Scoring, ScoringType};

pub struct Scorer {
    kind: ScoringType,
    labels: Vec<(String, String)>,
    extract: Option<Regex>,
    label_words: Option<Regex>,
    normalize: Normalize,
}

impl Scorer {
    /// The config is validated, so `extract` compiles; an invalid pattern is reported, not panicked on.
    pub fn new(s: &Scoring) -> Result<Scorer, regex::Error> {
        let extract = s.extract.as_deref().map(Regex::new).transpose()?;
        let normalize = s.normalize.clone();
        let labels: Vec<(String, String)> =
            s.labels.iter().map(|l| (normalize_with(&normalize, l), l.clone())).collect();
        // Longest first, so "very positive" wins over "positive" when both are labels.
        let mut alternatives: Vec<&String> = s.labels.iter().collect();
        alternatives.sort_by_key(|l| std::cmp::Reverse(l.len()));
        let label_words = if alternatives.is_empty() {
            None
        } else {
            let alt: Vec<String> = alternatives.iter().map(|l| regex::escape(l)).collect();
            Some(Regex::new(&format!(r"(?i)\b(?:{})\b", alt.join("|")))?)
        };
        Ok(Scorer { kind: s.kind, labels, extract, label_words, normalize })
    }

    pub fn normalize(&self, s: &str) -> String {
        normalize_with(&self.normalize, s)
    }

    /// (prediction, score).
    pub fn score(&self, output: &str, gold: &str) -> (String, f64) {
        let gold_n = self.normalize(gold);
        let prediction = match self.kind {
            ScoringType::Exact => self.normalize(output),
            ScoringType::Regex => {
                self.extracted(output).map(|p| self.normalize(&p)).unwrap_or_default()
            }
            ScoringType::Label => {
                let candidate = match &self.extract {
                    Some(_) => self.extracted(output),
                    None => self
                        .label_words
                        .as_ref()
                        .and_then(|re| re.find(output))
                        .map(|m| m.as_str().to_string()),
                };
                let candidate = candidate.map(|c| self.normalize(&c)).unwrap_or_default();
                // Only a configured label counts as a prediction; anything else is "no answer".
                self.labels
                    .iter()
                    .find(|(n, _)| *n == candidate)
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default()
            }
        };
        let score = if !prediction.is_empty() && prediction == gold_n { 1.0 } else { 0.0 };
        (prediction, score)
    }

    fn extracted(&self, output: &str) -> Option<String> {
        let re = self.extract.as_ref()?;
        let caps = re.captures(output)?;
        caps.get(1).or_else(|| caps.get(0)).map(|m| m.as_str().to_string())
    }
}

fn normalize_with(n: &Normalize, s: &str) -> String {
    let mut out = s.to_string();
    if n.lowercase {
        out = out.to_lowercase();
    }
    if n.collapse_whitespace {
        out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    if n.trim {
        out = out.trim().to_string();
    }
    if n.strip_punctuation {
        out = out.trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace()).to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoring(yaml: &str) -> Scorer {
        Scorer::new(&serde_yaml::from_str::<Scoring>(yaml).unwrap()).unwrap()
    }

    #[test]
    fn label_scoring_finds_the_first_label_word() {
        let s = scoring("{type: label, labels: [positive, negative, neutral]}");
        assert_eq!(s.score("I think it's Positive.", "positive"), ("positive".into(), 1.0));
        assert_eq!(s.score("negative, not positive", "positive"), ("negative".into(), 0.0));
        assert_eq!(s.score("no idea", "positive"), ("".into(), 0.0));
        assert_eq!(s.score("positively", "positive"), ("".into(), 0.0));
    }

    #[test]
    fn label_scoring_with_extract_uses_the_first_group() {
        let s = scoring(r#"{type: label, labels: [yes, no], extract: "Answer:\\s*(\\w+)"}"#);
        assert_eq!(s.score("yes... Answer: No", "no"), ("no".into(), 1.0));
        assert_eq!(s.score("Answer: maybe", "no"), ("".into(), 0.0));
    }

    #[test]
    fn exact_and_regex_scoring_normalize_both_sides() {
        let s = scoring("{type: exact}");
        assert_eq!(s.score("  Paris. ", "paris"), ("paris".into(), 1.0));
        assert_eq!(s.score("Paris, France", "paris").1, 0.0);
        let s = scoring(r#"{type: regex, extract: "\\{(.*?)\\}"}"#);
        assert_eq!(s.score("the answer is {42}", "42"), ("42".into(), 1.0));
        assert_eq!(s.score("no braces", "42"), ("".into(), 0.0));
    }

    #[test]
    fn normalization_can_be_turned_off() {
        let s = scoring("{type: exact, normalize: {lowercase: false, strip_punctuation: false}}");
        assert_eq!(s.score("Paris", "paris").1, 0.0);
    }
}
