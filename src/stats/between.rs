//! Two runs compared item by item (`exp diff`), by the rules of one run's headline: items
//! paired by id, an item's repeats averaged (repeat r of run A has no natural partner in run
//! B), clusters as units, and the test and interval from [`super::headline`]. "Items paired"
//! counts items, never rows.
//!
//! A run's rows of one condition go into a [`Tally`] with run A in the [`RUN_A`] slot and run
//! B in the [`RUN_B`] slot, so the pairing, item means and clusters are the ones a trial's own
//! analysis uses.
use serde::Serialize;

use super::headline::{self, Design, Headline, Paired};
use super::significance::{CONTROL, Settings, TREATMENT, Tally};

/// The slot of run A's rows in a between-run [`Tally`].
pub const RUN_A: &str = CONTROL;
/// The slot of run B's rows in a between-run [`Tally`].
pub const RUN_B: &str = TREATMENT;

/// One condition of one trial, run B against run A.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunChange {
    /// Items scored on both sides (repeats averaged: one per item).
    pub items_paired: usize,
    /// Items on both sides without a score on at least one.
    pub failed_either: usize,
    /// Items on one side only.
    pub unmatched: usize,
    /// With one 0/1 outcome per item: right on both sides, wrong on both, wrong → right,
    /// right → wrong.
    pub outcomes: Option<Outcomes>,
    /// Run B − run A per item, tested by the design's headline test.
    pub headline: Option<Headline>,
    /// Why there is no headline, when there is none.
    pub not_computed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    pub both_correct: u64,
    pub both_wrong: u64,
    pub fixed: u64,
    pub broken: u64,
}

/// Did the treatment's effect change between the runs? Per item
/// e = (treatment − control in B) − (treatment − control in A), over items scored in all four.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectChange {
    pub items: usize,
    pub effect_a: f64,
    pub effect_b: f64,
    /// Test and interval of the mean of e (sign-flip on items or clusters).
    pub headline: Headline,
}

/// What a between-run tally holds, item by item.
struct Items<'t> {
    tally: &'t Tally,
    /// Dense unit index per item (its cluster, or itself).
    units: Vec<usize>,
    clustered: bool,
}

impl<'t> Items<'t> {
    fn new(tally: &'t Tally) -> Items<'t> {
        let clustered = (0..tally.len()).any(|i| tally.cluster_of(i).is_some());
        let labels: Vec<String> = (0..tally.len())
            .map(|i| match tally.cluster_of(i) {
                Some(c) => format!("c{c}"),
                None => format!("i{i}"),
            })
            .collect();
        let (units, _) = super::estimate::group_indices(&labels);
        Items { tally, units, clustered }
    }

    fn mean(&self, i: usize, slot: &str) -> Option<f64> {
        self.tally.item_mean(i, slot)
    }
}

/// Dense groups for a subset of items, from their unit indices.
fn groups_of(units: &[usize]) -> (Vec<usize>, usize) {
    let labels: Vec<String> = units.iter().map(usize::to_string).collect();
    super::estimate::group_indices(&labels)
}

/// Run B against run A for one condition (see the module docs for the tally's slots).
pub fn compare(tally: &Tally, settings: &Settings) -> RunChange {
    let items = Items::new(tally);
    let mut change = RunChange {
        items_paired: 0,
        failed_either: 0,
        unmatched: 0,
        outcomes: None,
        headline: None,
        not_computed: None,
    };
    let (mut d, mut units) = (Vec::new(), Vec::new());
    let binary_single = tally.is_binary() && tally.repeats() <= 1;
    let mut outcomes = Outcomes { both_correct: 0, both_wrong: 0, fixed: 0, broken: 0 };
    for i in 0..tally.len() {
        let [a, b] = tally.rows_and_scored(i);
        match (items.mean(i, RUN_A), items.mean(i, RUN_B)) {
            (Some(x), Some(y)) => {
                d.push(y - x);
                units.push(items.units[i]);
                let k = match (x == 1.0, y == 1.0) {
                    (true, true) => &mut outcomes.both_correct,
                    (false, false) => &mut outcomes.both_wrong,
                    (false, true) => &mut outcomes.fixed,
                    (true, false) => &mut outcomes.broken,
                };
                *k += 1;
            }
            _ if a.0 > 0 && b.0 > 0 => change.failed_either += 1,
            _ => change.unmatched += 1,
        }
    }
    change.items_paired = d.len();
    change.outcomes = binary_single.then_some(outcomes);
    if d.is_empty() {
        change.not_computed = Some("no item was scored on both sides".into());
        return change;
    }
    let design =
        Design { binary: tally.is_binary(), repeats: tally.repeats(), clustered: items.clustered };
    let (g, k) = groups_of(&units);
    let groups = items.clustered.then_some((g.as_slice(), k));
    change.headline = Some(headline::headline(
        design,
        &Paired { d: &d, groups },
        settings.alpha,
        settings.bootstrap_resamples,
        settings.seed,
    ));
    change
}

/// The change in the treatment effect between the runs, from the between-run tallies of the
/// control and the treatment condition. `None` when no item is scored in all four cells.
pub fn effect_change(
    control: &Tally,
    treatment: &Tally,
    settings: &Settings,
) -> Option<EffectChange> {
    let (c, t) = (Items::new(control), Items::new(treatment));
    let keys = control.keys();
    let (mut e, mut units, mut ea, mut eb) = (Vec::new(), Vec::new(), 0.0, 0.0);
    for (i, key) in keys.iter().enumerate() {
        let Some(j) = treatment.index_of(key) else { continue };
        let cells = (c.mean(i, RUN_A), t.mean(j, RUN_A), c.mean(i, RUN_B), t.mean(j, RUN_B));
        let (Some(ca), Some(ta), Some(cb), Some(tb)) = cells else { continue };
        e.push((tb - cb) - (ta - ca));
        ea += ta - ca;
        eb += tb - cb;
        // A cluster label on either condition's rows makes the item's unit.
        units.push(match (control.cluster_of(i), treatment.cluster_of(j)) {
            (Some(_), _) | (None, None) => c.units[i],
            (None, Some(_)) => t.units[j] + keys.len(),
        });
    }
    if e.is_empty() {
        return None;
    }
    let n = e.len() as f64;
    let clustered = c.clustered || t.clustered;
    let (g, k) = groups_of(&units);
    let design = Design {
        // Differences of differences are never one 0/1 outcome: always a sign-flip test.
        binary: false,
        repeats: control.repeats().max(treatment.repeats()),
        clustered,
    };
    let headline = headline::headline(
        design,
        &Paired { d: &e, groups: clustered.then_some((g.as_slice(), k)) },
        settings.alpha,
        settings.bootstrap_resamples,
        settings.seed,
    );
    Some(EffectChange { items: e.len(), effect_a: ea / n, effect_b: eb / n, headline })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Settings = Settings { alpha: 0.05, bootstrap_resamples: 999, seed: 0 };

    #[test]
    fn repeats_are_averaged_so_items_paired_counts_items() {
        // 200 items, 3 identical repeats on each side: the repeats add no information.
        let mut t = Tally::new();
        let mut once = Tally::new();
        for i in 0..200 {
            let (a, b) = (f64::from(i % 2), if i < 20 { 1.0 } else { f64::from(i % 2) });
            let (a, b) = if (20..28).contains(&i) { (1.0, 0.0) } else { (a, b) };
            for r in 0..3 {
                t.add(&i.to_string(), RUN_A, Some(a), None);
                t.add(&i.to_string(), RUN_B, Some(b), None);
                if r == 0 {
                    once.add(&i.to_string(), RUN_A, Some(a), None);
                    once.add(&i.to_string(), RUN_B, Some(b), None);
                }
            }
        }
        let rep = compare(&t, &S);
        let one = compare(&once, &S);
        assert_eq!(rep.items_paired, 200);
        let (p_rep, p_one) = (rep.headline.unwrap().p_value, one.headline.unwrap().p_value);
        // Identical repeats: item means are 0/1, the sign-flip on them is McNemar's p.
        assert!((p_rep - p_one).abs() < 1e-12, "{p_rep} vs {p_one}");
    }
}
