//! The paired comparison of two runs' per-item scores, by the rules of a trial's own headline
//! (`crate::stats::between`): items paired by (dataset, item id), an item's repeats averaged
//! on each side, clusters as units. "Paired" counts items, never rows: repeat r of run A has
//! no natural partner in run B.
//!
//! The statistics live in `stats` (one implementation in the crate, checked against scipy
//! there); this turns score tables into tallies and the results into diff rows. No item that
//! changed means the test has nothing to say, which a diff reports as "no item flipped"
//! rather than as p = 1.
use std::collections::HashMap;

use super::{EffectChangeRow, FlippedItem, PairedRow};
use crate::runfiles::tables::{ScoreRow, ScoreTable};
use crate::stats::Settings;
use crate::stats::between::{self, RUN_A, RUN_B};
use crate::stats::significance::{CONTROL, TREATMENT, Tally};

/// What identifies an item across runs: its dataset and id.
fn item_key(t: &ScoreTable, r: &ScoreRow) -> String {
    format!("{}:{}", t.dataset(r), t.item(r))
}

/// A score that is not a finite number (a legacy file may say `nan`) is no score.
fn finite(score: Option<f64>) -> Option<f64> {
    score.filter(|s| s.is_finite())
}

/// One between-run tally per condition, conditions in first-seen order.
fn tallies(ta: &ScoreTable, tb: &ScoreTable) -> Vec<(String, Tally)> {
    let mut out: Vec<(String, Tally)> = Vec::new();
    for (table, slot) in [(ta, RUN_A), (tb, RUN_B)] {
        for r in &table.rows {
            let cond = table.condition(r);
            let k = match out.iter().position(|(c, _)| c == cond) {
                Some(k) => k,
                None => {
                    out.push((cond.to_string(), Tally::new()));
                    out.len() - 1
                }
            };
            let cluster = Some(table.cluster(r)).filter(|c| !c.is_empty());
            out[k].1.add(&item_key(table, r), slot, finite(r.score), cluster);
        }
    }
    out
}

/// Per condition, run B against run A; the change in the treatment effect when both runs have
/// both conditions; and, when asked for, the items whose score changed. `settings` are the
/// runs' own (see [`super::settings`]).
pub fn paired_rows(
    trial: &str,
    (ta, tb): (&ScoreTable, &ScoreTable),
    want_items: bool,
    settings: &Settings,
) -> (Vec<PairedRow>, Vec<FlippedItem>, Option<EffectChangeRow>) {
    let tallies = tallies(ta, tb);
    let mut rows: Vec<PairedRow> =
        tallies.iter().map(|(cond, t)| paired_row(trial, cond, t, settings)).collect();
    rows.sort_by(|x, y| x.condition.cmp(&y.condition));
    let of = |name: &str| tallies.iter().find(|(c, _)| c == name).map(|(_, t)| t);
    let effect = match (of(CONTROL), of(TREATMENT)) {
        (Some(c), Some(t)) => between::effect_change(c, t, settings).map(|e| EffectChangeRow {
            trial: trial.to_string(),
            items: e.items,
            effect_a: e.effect_a,
            effect_b: e.effect_b,
            change: e.headline.effect,
            ci: e.headline.ci,
            p_value: e.headline.p_value,
            test: e.headline.test.label().to_string(),
            method: e.headline.method,
        }),
        _ => None,
    };
    let items = if want_items { flipped_items(trial, ta, tb, &tallies) } else { Vec::new() };
    (rows, items, effect)
}

fn paired_row(trial: &str, condition: &str, tally: &Tally, settings: &Settings) -> PairedRow {
    let change = between::compare(tally, settings);
    let head = change.headline.as_ref();
    let (fixed, broken) = match (change.outcomes, head) {
        (Some(o), _) => (o.fixed, o.broken),
        _ => changed_items(tally),
    };
    let mut row = PairedRow {
        trial: trial.to_string(),
        condition: condition.to_string(),
        paired: change.items_paired as u64,
        both_correct: change.outcomes.map_or(0, |o| o.both_correct),
        both_wrong: change.outcomes.map_or(0, |o| o.both_wrong),
        fixed,
        broken,
        failed_either: change.failed_either as u64,
        unmatched: change.unmatched as u64,
        change: head.map(|h| h.effect),
        ci: head.and_then(|h| h.ci),
        p_value: head.map(|h| h.p_value),
        test: head.map(|h| h.test.label().to_string()),
        method: head.map_or_else(String::new, |h| h.method.clone()),
        not_computed: change.not_computed.clone(),
    };
    if head.is_some() && fixed + broken == 0 {
        row.p_value = None;
        row.ci = None;
        row.not_computed = Some("no item flipped: nothing to test".into());
    }
    row
}

/// Items whose mean score rose and fell from run A to run B.
fn changed_items(tally: &Tally) -> (u64, u64) {
    let (mut up, mut down) = (0, 0);
    for i in 0..tally.len() {
        if let (Some(a), Some(b)) = (tally.item_mean(i, RUN_A), tally.item_mean(i, RUN_B)) {
            up += u64::from(b > a);
            down += u64::from(b < a);
        }
    }
    (up, down)
}

/// Items whose mean score changed, with the first row of each side for gold and predictions.
fn flipped_items(
    trial: &str,
    ta: &ScoreTable,
    tb: &ScoreTable,
    tallies: &[(String, Tally)],
) -> Vec<FlippedItem> {
    let first_of = |t: &ScoreTable| {
        let mut first: HashMap<(String, String), usize> = HashMap::new();
        for (k, r) in t.rows.iter().enumerate() {
            first.entry((t.condition(r).to_string(), item_key(t, r))).or_insert(k);
        }
        first
    };
    let (fa, fb) = (first_of(ta), first_of(tb));
    let mut out = Vec::new();
    for (cond, tally) in tallies {
        for (i, key) in tally.keys().into_iter().enumerate() {
            let (Some(a), Some(b)) = (tally.item_mean(i, RUN_A), tally.item_mean(i, RUN_B)) else {
                continue;
            };
            if a == b {
                continue;
            }
            let k = (cond.clone(), key.to_string());
            let (Some(&ra), Some(&rb)) = (fa.get(&k), fb.get(&k)) else { continue };
            let (x, y) = (&ta.rows[ra], &tb.rows[rb]);
            let gold = if tb.gold(y).is_empty() { ta.gold(x) } else { tb.gold(y) };
            out.push(FlippedItem {
                trial: trial.to_string(),
                condition: cond.clone(),
                dataset: tb.dataset(y).to_string(),
                item: tb.item(y).to_string(),
                repeat: y.repeat,
                gold: gold.to_string(),
                prediction_a: ta.prediction(x).to_string(),
                prediction_b: tb.prediction(y).to_string(),
                change: if b > a { "fixed" } else { "broken" },
            });
        }
    }
    out.sort_by(|x, y| {
        (&x.condition, &x.dataset, &x.item).cmp(&(&y.condition, &y.dataset, &y.item))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runfiles::tables::scores;

    fn table(rows: &[(&str, &str, u32, &str, &str)]) -> ScoreTable {
        let mut s =
            String::from("item_id,dataset,condition,repeat,gold,prediction,score,cluster\n");
        for (id, cond, rep, score, cluster) in rows {
            s.push_str(&format!("{id},d,{cond},{rep},x,y,{score},{cluster}\n"));
        }
        scores(s.as_bytes(), None).unwrap()
    }

    #[test]
    fn repeats_count_once_and_no_flip_means_no_test() {
        let a = table(&[
            ("1", "control", 0, "1", ""),
            ("1", "control", 1, "1", ""),
            ("2", "control", 0, "0", ""),
        ]);
        let b = table(&[
            ("1", "control", 0, "1", ""),
            ("1", "control", 1, "1", ""),
            ("2", "control", 0, "nan", ""),
        ]);
        let (rows, items, effect) =
            paired_rows("t", (&a, &b), true, &super::super::settings::DEFAULT);
        assert_eq!((rows[0].paired, rows[0].failed_either), (1, 1));
        assert_eq!(rows[0].p_value, None);
        assert!(items.is_empty() && effect.is_none());
    }
}
