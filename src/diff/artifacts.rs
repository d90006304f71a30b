//! Parsers for the run files a diff or an import understands, in today's shape
//! (docs/RUN_FILES.md) and in the older shapes the Python scripts wrote (`run_all.py`).
//! `metrics.json` and `costs.json` are read by `crate::eval::artifacts` (both shapes); here they
//! become the figures a diff compares.
//!
//! Every parser takes bytes and returns the parsed artifact or a one-line reason: an artifact
//! that cannot be read is something to report, never a reason to fail the whole diff.
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::eval::artifacts;

/// One condition's metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CondMetrics {
    pub n: u64,
    pub scored: u64,
    pub failed: u64,
    pub correct: f64,
    /// `correct / scored`; None when nothing was scored.
    pub accuracy: Option<f64>,
}

/// A trial's metrics, keyed by condition.
pub type Metrics = BTreeMap<String, CondMetrics>;

/// Tokens and money for one condition, or for the whole trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub usd: f64,
    pub usd_per_correct: Option<f64>,
}

/// A trial's costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Costs {
    pub total: Cost,
    pub conditions: BTreeMap<String, Cost>,
}

/// Per-item scores of one trial, from one or more files. Built for tens of thousands of rows
/// per file: texts live back to back in one buffer and rows hold ranges into it, conditions and
/// datasets are interned, so parsing allocates per file, not per row.
#[derive(Debug, Clone, Default)]
pub struct ScoreTable {
    text: String,
    names: Vec<String>,
    pub rows: Vec<ScoreRow>,
}

/// One scored item of one condition; its texts are read through the [`ScoreTable`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRow {
    condition: u32,
    dataset: u32,
    item: (usize, usize),
    pub repeat: u32,
    gold: (usize, usize),
    prediction: (usize, usize),
    /// Empty when the item has no cluster.
    cluster: (usize, usize),
    /// None when the request failed: a failure, never a wrong answer.
    pub score: Option<f64>,
}

impl ScoreTable {
    pub fn condition(&self, r: &ScoreRow) -> &str {
        &self.names[r.condition as usize]
    }
    pub fn dataset(&self, r: &ScoreRow) -> &str {
        &self.names[r.dataset as usize]
    }
    pub fn item(&self, r: &ScoreRow) -> &str {
        &self.text[r.item.0..r.item.1]
    }
    pub fn gold(&self, r: &ScoreRow) -> &str {
        &self.text[r.gold.0..r.gold.1]
    }
    pub fn prediction(&self, r: &ScoreRow) -> &str {
        &self.text[r.prediction.0..r.prediction.1]
    }
    pub fn cluster(&self, r: &ScoreRow) -> &str {
        &self.text[r.cluster.0..r.cluster.1]
    }
    /// What pairs a row with its counterpart in another run.
    pub fn key<'t>(&'t self, r: &ScoreRow) -> (&'t str, &'t str, &'t str, u32) {
        (self.condition(r), self.dataset(r), self.item(r), r.repeat)
    }

    fn intern(&mut self, name: &str) -> u32 {
        match self.names.iter().position(|n| n == name) {
            Some(i) => i as u32,
            None => {
                self.names.push(name.to_string());
                (self.names.len() - 1) as u32
            }
        }
    }

    fn push_text(&mut self, bytes: &[u8]) -> (usize, usize) {
        let start = self.text.len();
        match std::str::from_utf8(bytes) {
            Ok(s) => self.text.push_str(s),
            Err(_) => self.text.push_str(&String::from_utf8_lossy(bytes)),
        }
        (start, self.text.len())
    }
}

fn json(bytes: &[u8]) -> Result<Value, String> {
    artifacts::parse_json(bytes).map_err(|e| e.to_string())
}

/// `results/metrics.json` or the old shape (read by [`artifacts::parse_metrics`]), with the
/// figures a diff shows filled in where the file leaves them out. A condition with neither a
/// count correct nor an accuracy has nothing to compare and is left out.
pub fn metrics(bytes: &[u8]) -> Result<Metrics, String> {
    let file = artifacts::parse_metrics(bytes).map_err(|e| e.to_string())?;
    let mut out = Metrics::new();
    for (cond, m) in file.conditions {
        if m.correct.is_none() && m.accuracy.is_none() {
            continue;
        }
        let n = m.n.unwrap_or(0);
        let failed = m.failed.unwrap_or(0);
        let scored = m.scored.unwrap_or(n.saturating_sub(failed));
        let correct =
            m.correct.or_else(|| m.accuracy.map(|a| (a * scored as f64).round())).unwrap_or(0.0);
        let exact = if scored > 0 { Some(correct / scored as f64) } else { None };
        // The file's own figure wins; the exact ratio replaces it only when the file merely
        // rounded it (the old scripts wrote 4 decimals), so nothing is shown that the file
        // does not say.
        let accuracy = match (m.accuracy, exact) {
            (Some(file), Some(exact)) if (file - exact).abs() <= 5e-5 => Some(exact),
            (Some(file), _) => Some(file),
            (None, exact) => exact,
        };
        out.insert(cond, CondMetrics { n, scored, failed, correct, accuracy });
    }
    if out.is_empty() {
        return Err("no per-condition metrics in it".into());
    }
    Ok(out)
}

/// `results/costs.json` or the old shape (read by [`artifacts::parse_costs`]). `correct` fills
/// in the cost per correct answer when the file does not have it.
pub fn costs(bytes: &[u8], correct: Option<&Metrics>) -> Result<Costs, String> {
    let file = artifacts::parse_costs(bytes).map_err(|e| e.to_string())?;
    if !file.total.has_figures() && file.conditions.is_empty() {
        return Err("no tokens or USD in it".into());
    }
    let one = |c: &artifacts::CostLine| Cost {
        input_tokens: c.input_tokens.unwrap_or(0),
        output_tokens: c.output_tokens.unwrap_or(0),
        usd: c.usd.unwrap_or(0.0),
        usd_per_correct: c.usd_per_correct,
    };
    let conditions = file
        .conditions
        .iter()
        .filter(|(_, c)| c.has_figures())
        .map(|(cond, c)| (cond.clone(), one(c)))
        .collect();
    let mut out = Costs { total: one(&file.total), conditions };
    if let Some(m) = correct {
        for (cond, c) in &mut out.conditions {
            if c.usd_per_correct.is_none() {
                c.usd_per_correct = m.get(cond).and_then(|m| per_correct(c.usd, m.correct));
            }
        }
        if out.total.usd_per_correct.is_none() {
            out.total.usd_per_correct =
                per_correct(out.total.usd, m.values().map(|m| m.correct).sum());
        }
    }
    Ok(out)
}

fn per_correct(usd: f64, correct: f64) -> Option<f64> {
    (correct > 0.0).then(|| usd / correct)
}

/// The headline p-value of `results/significance.json`.
pub fn significance_p(bytes: &[u8]) -> Result<Option<f64>, String> {
    Ok(json(bytes)?.get("p_value").and_then(Value::as_f64))
}

/// A per-item score table: `results/per_item_scores.csv`
/// (`item_id,dataset,condition,repeat,gold,prediction,score,cluster`) or an old
/// `predictions_<condition>.csv` (`id,gold,prediction,correct`), whose condition comes from its
/// name (`condition`). Columns are found by name, so extra or reordered columns do not matter.
pub fn scores(bytes: &[u8], condition: Option<&str>) -> Result<ScoreTable, String> {
    let mut table = ScoreTable::default();
    add_scores(&mut table, bytes, condition)?;
    Ok(table)
}

/// Adds the rows of one score file to `table` (see [`scores`]).
pub fn add_scores(
    table: &mut ScoreTable,
    bytes: &[u8],
    condition: Option<&str>,
) -> Result<(), String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty".into());
    }
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header = rdr.byte_headers().map_err(|e| format!("not valid CSV ({e})"))?.clone();
    let col = |names: &[&str]| {
        header.iter().position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n.as_bytes())))
    };
    let item = col(&["item_id", "id"]).ok_or("no item_id (or id) column")?;
    let score = col(&["score", "correct"]).ok_or("no score (or correct) column")?;
    let (dataset, repeat, cond) = (col(&["dataset"]), col(&["repeat"]), col(&["condition"]));
    let (gold, pred) = (col(&["gold", "label"]), col(&["prediction", "pred"]));
    let cluster = col(&["cluster"]);
    let fixed_cond = match (cond, condition) {
        (Some(_), _) => None,
        (None, Some(c)) => Some(table.intern(c)),
        (None, None) => return Err("no condition column".into()),
    };
    let no_dataset = table.intern("");
    let mut rec = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut rec).map_err(|e| format!("not valid CSV ({e})"))? {
        let raw = rec.get(score).unwrap_or_default();
        let score = if raw.is_empty() {
            None
        } else {
            let s = std::str::from_utf8(raw).ok().and_then(|s| s.trim().parse::<f64>().ok());
            match s {
                Some(s) => Some(s),
                None => {
                    let line = rec.position().map(|p| p.line()).unwrap_or(0);
                    return Err(format!(
                        "line {line}: score {:?} is not a number",
                        String::from_utf8_lossy(raw)
                    ));
                }
            }
        };
        let name = |i: Option<usize>| {
            std::str::from_utf8(i.and_then(|i| rec.get(i)).unwrap_or_default()).ok()
        };
        let condition = match fixed_cond {
            Some(c) => c,
            None => table.intern(name(cond).unwrap_or_default()),
        };
        let dataset = match name(dataset) {
            Some(d) if !d.is_empty() => table.intern(d),
            _ => no_dataset,
        };
        let repeat = name(repeat).and_then(|r| r.trim().parse().ok()).unwrap_or(0);
        let row = ScoreRow {
            condition,
            dataset,
            item: table.push_text(rec.get(item).unwrap_or_default()),
            repeat,
            gold: table.push_text(gold.and_then(|i| rec.get(i)).unwrap_or_default()),
            prediction: table.push_text(pred.and_then(|i| rec.get(i)).unwrap_or_default()),
            cluster: table.push_text(cluster.and_then(|i| rec.get(i)).unwrap_or_default()),
            score,
        };
        table.rows.push(row);
    }
    Ok(())
}

/// Flattens a JSON object into `a.b.c -> value` pairs (values rendered compactly).
pub fn flatten(v: &Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(v, &key, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The parameters of a trial, flattened (`model`, `prompt_set`, `decoding.temperature`, …):
/// from `trial.json` when there is one.
pub fn trial_params(trial_json: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let v = json(trial_json)?;
    let mut out = BTreeMap::new();
    flatten(&v, "", &mut out);
    out.remove("slug");
    Ok(out)
}

/// The parameters of an old trial: `<model>__<prompt_set>__…` from its folder name and the
/// decoding settings from its first batch request line.
pub fn legacy_trial_params(slug: &str, first_request: Option<&[u8]>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut parts = slug.split("__");
    if let (Some(model), Some(prompt_set)) = (parts.next(), parts.next()) {
        out.insert("model".into(), model.to_string());
        out.insert("prompt_set".into(), prompt_set.to_string());
    }
    let line = first_request.and_then(|b| b.split(|c| *c == b'\n').next());
    if let Some(Ok(req)) = line.map(serde_json::from_slice::<Value>)
        && let Some(body) = req.get("body").and_then(Value::as_object)
    {
        for (k, v) in body {
            match (k.as_str(), v) {
                ("messages", _) => {}
                ("model", Value::String(s)) => {
                    out.insert("model_id".into(), s.clone());
                }
                (_, Value::Object(_)) => flatten(v, &format!("decoding.{k}"), &mut out),
                (_, Value::String(s)) => {
                    out.insert(format!("decoding.{k}"), s.clone());
                }
                _ => {
                    out.insert(format!("decoding.{k}"), v.to_string());
                }
            }
        }
    }
    out
}

/// Number of complete lines (requests) in a JSONL file.
pub fn count_lines(bytes: &[u8]) -> u64 {
    bytes.split(|c| *c == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_todays_metrics_and_the_old_shape_alike() {
        let new = br#"{"n_items": 4, "repeats": 1, "conditions": {"control": {"n": 4, "scored": 3, "failed": 1, "correct": 2.0, "accuracy": 0.6667}}}"#;
        let old = br#"{"trial": "x", "control": {"n_items": 4, "n_scored": 3, "n_failed": 1, "n_correct": 2, "accuracy": 0.6667}, "delta": 0.1}"#;
        for bytes in [&new[..], &old[..]] {
            let m = metrics(bytes).unwrap();
            let c = &m["control"];
            assert_eq!((c.n, c.scored, c.failed, c.correct), (4, 3, 1, 2.0));
            assert!((c.accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
            assert_eq!(m.len(), 1, "`delta` and `trial` are not conditions");
        }
        assert_eq!(metrics(b"").unwrap_err(), "the file is empty");
        let edited = metrics(br#"{"conditions": {"control": {"n": 4, "scored": 4, "correct": 3.0, "accuracy": 0.5}}}"#).unwrap();
        assert_eq!(
            edited["control"].accuracy,
            Some(0.5),
            "the file's figure is shown, not recomputed"
        );
        assert!(metrics(b"{nope").unwrap_err().starts_with("not valid JSON"));
    }

    #[test]
    fn old_costs_get_totals_and_cost_per_correct_from_metrics() {
        let old = br#"{"control": {"prompt_tokens": 100, "completion_tokens": 4, "cost_usd": 0.5},
                       "treatment": {"prompt_tokens": 50, "completion_tokens": 2, "cost_usd": 0.25},
                       "total_cost_usd": 0.75}"#;
        let m = metrics(br#"{"control": {"n_items": 4, "n_correct": 2, "accuracy": 0.5}, "treatment": {"n_items": 4, "n_correct": 0, "accuracy": 0.0}}"#).unwrap();
        let c = costs(old, Some(&m)).unwrap();
        assert_eq!((c.total.input_tokens, c.total.output_tokens, c.total.usd), (150, 6, 0.75));
        assert_eq!(c.conditions["control"].usd_per_correct, Some(0.25));
        assert_eq!(
            c.conditions["treatment"].usd_per_correct, None,
            "nothing correct: no cost per correct"
        );
        assert_eq!(c.total.usd_per_correct, Some(0.375));
    }

    #[test]
    fn score_tables_with_crlf_failures_and_either_header_parse() {
        let new = b"item_id,dataset,condition,repeat,gold,prediction,score,cluster\n7,d,control,0,positive,negative,0,\n8,d,control,0,neutral,,,\n";
        let t = scores(new, None).unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!((t.item(&t.rows[0]), t.rows[0].score), ("7", Some(0.0)));
        assert_eq!(t.key(&t.rows[0]), ("control", "d", "7", 0));
        assert_eq!(t.rows[1].score, None, "an empty score is a failure");
        let old = b"id,gold,prediction,correct\r\ns01,positive,positive,1\r\ns02,negative,,\r\n";
        let mut t = scores(old, Some("treatment")).unwrap();
        assert_eq!(t.condition(&t.rows[0]), "treatment");
        assert_eq!((t.gold(&t.rows[0]), t.rows[0].score), ("positive", Some(1.0)));
        assert_eq!(t.prediction(&t.rows[1]), "");
        add_scores(
            &mut t,
            b"id,gold,prediction,correct\ns01,positive,negative,0\n",
            Some("control"),
        )
        .unwrap();
        assert_eq!(t.key(&t.rows[2]), ("control", "", "s01", 0), "two files, one table");
        let bad = scores(b"id,correct\nx,maybe\n", Some("control")).unwrap_err();
        assert!(bad.contains("line 2") && bad.contains("maybe"), "{bad}");
    }

    #[test]
    fn legacy_params_come_from_the_folder_name_and_the_first_request() {
        let req = br#"{"custom_id": "a", "body": {"model": "m/x", "messages": [], "temperature": 0.0, "top_k": 50}}
{"custom_id": "b"}"#;
        let p = legacy_trial_params("gpt-oss-120b__operational_only__temp0.0", Some(req));
        assert_eq!(p["model"], "gpt-oss-120b");
        assert_eq!(p["prompt_set"], "operational_only");
        assert_eq!(p["model_id"], "m/x");
        assert_eq!(p["decoding.temperature"], "0.0");
        assert_eq!(p["decoding.top_k"], "50");
        assert_eq!(count_lines(b"a\nb\n\n"), 2);
    }
}
