//! What one trial's statistics and report need from its CSVs, gathered by streaming them.
//!
//! A trial of 100,000 items has 200,000 score rows and as many predictions; holding them as
//! owned strings (and a view of every item on top) cost a large run hundreds of megabytes in the
//! report step. Instead: one pass over `per_item_scores.csv` folds the rows into a
//! [`Tally`] (a few dozen bytes per item) and keeps the first failures; the discordant items a
//! report lists are picked from the tally and a second pass collects only their rows; and
//! `predictions.csv` is streamed once to find the errors of the failures shown. Memory is
//! proportional to the items, never to the rows or their text; the figures are the same as
//! from the rows held in memory.
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::ReportError;
use crate::runfiles::tables;
use crate::stats::Tally;
use crate::stats::significance::{CONTROL, TREATMENT};

/// How many discordant items a trial report lists per direction, and how many failures.
pub(crate) const SHOW_ITEMS: usize = 8;
pub(crate) const SHOW_FAILURES: usize = 10;

/// Everything known about one item in one trial, for the discordant-items table.
#[derive(Debug, Default)]
pub(crate) struct ItemView {
    pub dataset: String,
    pub item_id: String,
    /// The gold answer of the item's first row.
    pub gold: String,
    /// Per condition, the predictions and scores of the scored rows, in file order.
    pub predictions: BTreeMap<String, Vec<String>>,
    pub scores: BTreeMap<String, Vec<f64>>,
}

/// A failed row (no score) the report lists, with its error from predictions.csv.
#[derive(Debug)]
pub(crate) struct FailedRow {
    pub condition: String,
    pub dataset: String,
    pub item_id: String,
    pub repeat: Option<u32>,
    /// `None` until found in predictions.csv ("not recorded" when it is not there).
    pub error: Option<String>,
}

/// The failed rows of a trial: how many, per condition, and the first [`SHOW_FAILURES`].
#[derive(Debug, Default)]
pub(crate) struct Failures {
    pub total: usize,
    pub by_condition: BTreeMap<String, usize>,
    pub shown: Vec<FailedRow>,
}

/// The discordant items of a trial, largest change first (file order among equals).
#[derive(Debug, Default)]
pub(crate) struct Discordant {
    /// Items treatment scored higher on: how many, and the first [`SHOW_ITEMS`] with their change.
    pub fixed: usize,
    pub fixed_shown: Vec<(ItemView, f64)>,
    /// Items treatment scored lower on.
    pub broken: usize,
    pub broken_shown: Vec<(ItemView, f64)>,
}

/// The first pass over `per_item_scores.csv`.
pub(crate) struct Scan {
    pub tally: Tally,
    /// Rows in the file.
    pub rows: u64,
    pub failures: Failures,
}

/// Reads `per_item_scores.csv` once: the tally of every item, the row count and the failures.
pub(crate) fn scores(path: &Path) -> Result<Scan, ReportError> {
    let mut tally = Tally::new();
    let mut failures = Failures::default();
    let mut key = String::new();
    let rows = tables::for_each_score(path, |line, score| {
        item_key_into(&mut key, line.dataset, line.item_id);
        let cluster = Some(line.cluster).filter(|c| !c.is_empty());
        tally.add(&key, line.condition, score, cluster);
        if score.is_none() {
            failures.total += 1;
            *failures.by_condition.entry(line.condition.to_string()).or_insert(0) += 1;
            if failures.shown.len() < SHOW_FAILURES {
                failures.shown.push(FailedRow {
                    condition: line.condition.to_string(),
                    dataset: line.dataset.to_string(),
                    item_id: line.item_id.to_string(),
                    repeat: line.repeat,
                    error: None,
                });
            }
        }
    })?;
    Ok(Scan { tally, rows, failures })
}

/// The key the statistics pair items on, `dataset:item_id` (the same item id may occur in two
/// datasets), written into a reused buffer: one allocation per file, not per row.
pub(crate) fn item_key_into(buf: &mut String, dataset: &str, item_id: &str) {
    buf.clear();
    buf.push_str(dataset);
    buf.push(':');
    buf.push_str(item_id);
}

/// Picks the discordant items from the tally and reads the rows of those shown (a second pass
/// over `per_item_scores.csv`).
pub(crate) fn discordant(path: &Path, tally: &Tally) -> Result<Discordant, ReportError> {
    let mut fixed: Vec<(usize, f64)> = Vec::new();
    let mut broken: Vec<(usize, f64)> = Vec::new();
    for i in 0..tally.len() {
        if let (Some(c), Some(t)) = (tally.item_mean(i, CONTROL), tally.item_mean(i, TREATMENT)) {
            if t > c {
                fixed.push((i, t - c));
            } else if t < c {
                broken.push((i, t - c));
            }
        }
    }
    // Largest changes first; the stable sort keeps file order among equals.
    fixed.sort_by(|a, b| b.1.total_cmp(&a.1));
    broken.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (n_fixed, n_broken) = (fixed.len(), broken.len());
    fixed.truncate(SHOW_ITEMS);
    broken.truncate(SHOW_ITEMS);
    if fixed.is_empty() && broken.is_empty() {
        return Ok(Discordant::default());
    }

    // Item index -> slot in `views`.
    let slots: HashMap<usize, usize> =
        fixed.iter().chain(&broken).enumerate().map(|(slot, (i, _))| (*i, slot)).collect();
    let mut views: Vec<Option<ItemView>> = (0..slots.len()).map(|_| None).collect();
    let mut key = String::new();
    tables::for_each_score(path, |line, score| {
        item_key_into(&mut key, line.dataset, line.item_id);
        let Some(slot) = tally.index_of(&key).and_then(|i| slots.get(&i)) else { return };
        let v = views[*slot].get_or_insert_with(|| ItemView {
            dataset: line.dataset.to_string(),
            item_id: line.item_id.to_string(),
            gold: line.gold.to_string(),
            ..ItemView::default()
        });
        if let Some(score) = score {
            v.scores.entry(line.condition.to_string()).or_default().push(score);
            v.predictions
                .entry(line.condition.to_string())
                .or_default()
                .push(line.prediction.to_string());
        }
    })?;
    let mut take = |(i, delta): (usize, f64)| {
        let view = slots.get(&i).and_then(|&slot| views[slot].take()).unwrap_or_default();
        (view, delta)
    };
    Ok(Discordant {
        fixed: n_fixed,
        fixed_shown: fixed.into_iter().map(&mut take).collect(),
        broken: n_broken,
        broken_shown: broken.into_iter().map(&mut take).collect(),
    })
}

/// Fills in the error of each shown failure from `predictions.csv`: the first row of the same
/// item, dataset, condition and repeat.
pub(crate) fn failure_errors(path: &Path, failures: &mut Failures) -> Result<(), ReportError> {
    tables::for_each_prediction(path, |p| {
        for f in failures.shown.iter_mut().filter(|f| f.error.is_none()) {
            if p.item_id == f.item_id
                && p.dataset == f.dataset
                && p.condition == f.condition
                && p.repeat == f.repeat
            {
                f.error = Some(if p.error.is_empty() {
                    format!("finish_reason {}", p.finish_reason)
                } else {
                    p.error.to_string()
                });
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "item_id,dataset,condition,repeat,gold,prediction,score,cluster\n";

    fn file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn discordant_items_are_the_largest_changes_in_file_order_and_counted_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = HEADER.to_string();
        // Items 0..12 improve by 1 (ties: file order decides), item 12 by 0.5, item 13 worsens.
        for i in 0..14 {
            let (c, t) = match i {
                12 => ("0.5", "1"),
                13 => ("1", "0"),
                _ => ("0", "1"),
            };
            csv.push_str(&format!("i{i},d,control,0,g{i},p{i}c,{c},\n"));
            csv.push_str(&format!("i{i},d,treatment,0,g{i},p{i}t,{t},\n"));
        }
        let path = file(dir.path(), "scores.csv", &csv);
        let scan = scores(&path).unwrap();
        assert_eq!((scan.rows, scan.failures.total), (28, 0));
        let d = discordant(&path, &scan.tally).unwrap();
        assert_eq!((d.fixed, d.broken), (13, 1));
        let ids: Vec<&str> = d.fixed_shown.iter().map(|(v, _)| v.item_id.as_str()).collect();
        assert_eq!(ids, ["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7"]);
        let (v, delta) = &d.broken_shown[0];
        assert_eq!((v.item_id.as_str(), v.gold.as_str(), *delta), ("i13", "g13", -1.0));
        assert_eq!(v.predictions[CONTROL], ["p13c"]);
        assert_eq!(v.scores[TREATMENT], [0.0]);
    }

    #[test]
    fn failures_are_counted_per_condition_and_the_first_get_their_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = HEADER.to_string();
        for i in 0..12 {
            csv.push_str(&format!("i{i},d,treatment,0,g,,,\n"));
        }
        csv.push_str("i0,d,control,1,g,,,\n");
        let path = file(dir.path(), "scores.csv", &csv);
        let mut scan = scores(&path).unwrap();
        let f = &scan.failures;
        assert_eq!((f.total, f.shown.len()), (13, SHOW_FAILURES));
        assert_eq!(f.by_condition.get(TREATMENT), Some(&12));
        let preds = file(
            dir.path(),
            "predictions.csv",
            "item_id,dataset,condition,repeat,part,prediction,raw_output,finish_reason,\
             input_tokens,output_tokens,latency_ms,error\n\
             i0,d,treatment,1,0,,,,0,0,5,wrong repeat\n\
             i0,d,treatment,0,0,,,,0,0,5,HTTP 500\n\
             i0,d,treatment,0,0,,,,0,0,5,later line\n\
             i1,d,treatment,0,0,,,length,0,0,5,\n",
        );
        failure_errors(&preds, &mut scan.failures).unwrap();
        let errors: Vec<Option<&str>> =
            scan.failures.shown.iter().take(3).map(|f| f.error.as_deref()).collect();
        assert_eq!(errors, [Some("HTTP 500"), Some("finish_reason length"), None]);
    }
}
