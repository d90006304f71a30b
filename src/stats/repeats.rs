//! Repeats as data: how often an item is solved in k tries, and how much of the score's
//! variance is the model's own noise (within an item) rather than items differing in
//! difficulty (between items).
use serde::{Deserialize, Serialize};

/// One item's scored repeats in one condition: how many, their sum and sum of squares.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ItemRepeats {
    pub scored: u32,
    pub sum: f64,
    pub sum_sq: f64,
}

/// Per-item pass rates of 0/1 scores: their mean and how many items are always, never or
/// sometimes right.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassRates {
    pub mean: f64,
    pub always: usize,
    pub never: usize,
    pub mixed: usize,
}

/// What repeats of one condition show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepeatStats {
    /// The k of pass@k and pass^k: the design's repeats per item.
    pub k: usize,
    /// Items with at least k scored repeats (the others lost repeats to failed requests and
    /// are left out of pass@k and pass^k).
    pub items_with_k: usize,
    /// Share of items solved at least once in k tries (unbiased estimator of Chen et al. 2021,
    /// "Evaluating large language models trained on code"); 0/1 scores only.
    pub pass_at_k: Option<f64>,
    /// Share of items solved in all k tries (pass^k of Yao et al. 2024, "τ-bench"); 0/1 only.
    pub pass_all_k: Option<f64>,
    /// The per-item pass rate (mean over its repeats); 0/1 scores only.
    pub item_pass_rate: Option<PassRates>,
    /// Variance of a score around its item's mean (one-way ANOVA mean square within items).
    pub within_item_variance: Option<f64>,
    /// Variance of the items' true means (ANOVA estimate, 0 when negative).
    pub between_item_variance: Option<f64>,
    /// within / (within + between): 1 means items do not differ, only the draws do.
    pub within_share: Option<f64>,
    pub method: String,
}

/// C(n, k) ratios as products, so no factorial overflows: C(n − c, k)/C(n, k).
fn choose_ratio(top: u32, n: u32, k: u32) -> f64 {
    if top < k {
        return 0.0;
    }
    (0..k).map(|i| f64::from(top - i) / f64::from(n - i)).product()
}

/// Repeats statistics of one condition from its items (items with no score are skipped).
/// `binary`: every score is 0 or 1.
pub fn repeat_stats(items: &[ItemRepeats], k: usize, binary: bool) -> RepeatStats {
    let scored: Vec<&ItemRepeats> = items.iter().filter(|i| i.scored > 0).collect();
    let k32 = u32::try_from(k).unwrap_or(u32::MAX);
    let full: Vec<&&ItemRepeats> = scored.iter().filter(|i| i.scored >= k32 && k32 > 0).collect();
    let mean_of = |f: &dyn Fn(&ItemRepeats) -> f64| {
        (binary && !full.is_empty())
            .then(|| full.iter().map(|i| f(i)).sum::<f64>() / full.len() as f64)
    };
    let correct = |i: &ItemRepeats| i.sum.round() as u32;
    let pass_at_k = mean_of(&|i| 1.0 - choose_ratio(i.scored - correct(i), i.scored, k32));
    let pass_all_k = mean_of(&|i| choose_ratio(correct(i), i.scored, k32));
    let item_pass_rate = (binary && !scored.is_empty()).then(|| {
        let rate = |i: &ItemRepeats| i.sum / f64::from(i.scored);
        PassRates {
            mean: scored.iter().map(|i| rate(i)).sum::<f64>() / scored.len() as f64,
            always: scored.iter().filter(|i| rate(i) == 1.0).count(),
            never: scored.iter().filter(|i| rate(i) == 0.0).count(),
            mixed: scored.iter().filter(|i| rate(i) > 0.0 && rate(i) < 1.0).count(),
        }
    });
    let (within, between) = anova(&scored);
    RepeatStats {
        k,
        items_with_k: full.len(),
        pass_at_k,
        pass_all_k,
        item_pass_rate,
        within_item_variance: within,
        between_item_variance: between,
        within_share: within.zip(between).and_then(|(w, b)| (w + b > 0.0).then(|| w / (w + b))),
        method: "one-way random-effects ANOVA over items (unbalanced: n₀ = (N − Σnᵢ²/N)/(I − 1)); \
                 pass@k and pass^k per item as 1 − C(n−c, k)/C(n, k) and C(c, k)/C(n, k)"
            .into(),
    }
}

/// Within-item mean square and the between-item variance component of a one-way
/// random-effects ANOVA (Searle, Casella & McCulloch 1992, *Variance Components*, §3.6).
/// `None` without at least two items and one item with two scores.
fn anova(items: &[&ItemRepeats]) -> (Option<f64>, Option<f64>) {
    let groups = items.len() as f64;
    let n: f64 = items.iter().map(|i| f64::from(i.scored)).sum();
    if groups < 2.0 || n <= groups {
        return (None, None);
    }
    let grand = items.iter().map(|i| i.sum).sum::<f64>() / n;
    let ss_within: f64 =
        items.iter().map(|i| (i.sum_sq - i.sum * i.sum / f64::from(i.scored)).max(0.0)).sum();
    let ss_between: f64 = items
        .iter()
        .map(|i| {
            let m = i.sum / f64::from(i.scored);
            f64::from(i.scored) * (m - grand) * (m - grand)
        })
        .sum();
    let ms_within = ss_within / (n - groups);
    let ms_between = ss_between / (groups - 1.0);
    let n0 =
        (n - items.iter().map(|i| f64::from(i.scored).powi(2)).sum::<f64>() / n) / (groups - 1.0);
    (Some(ms_within), Some(((ms_between - ms_within) / n0).max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(scores: &[f64]) -> ItemRepeats {
        ItemRepeats {
            scored: scores.len() as u32,
            sum: scores.iter().sum(),
            sum_sq: scores.iter().map(|s| s * s).sum(),
        }
    }

    #[test]
    fn pass_at_k_and_pass_all_k_with_exactly_k_repeats_are_any_and_all() {
        let items = [item(&[1.0, 0.0, 0.0]), item(&[1.0, 1.0, 1.0]), item(&[0.0, 0.0, 0.0])];
        let r = repeat_stats(&items, 3, true);
        assert_eq!(r.pass_at_k, Some(2.0 / 3.0));
        assert_eq!(r.pass_all_k, Some(1.0 / 3.0));
        let rates = r.item_pass_rate.unwrap();
        assert_eq!((rates.always, rates.never, rates.mixed), (1, 1, 1));
    }

    #[test]
    fn identical_repeats_have_no_within_item_variance() {
        let items = [item(&[1.0, 1.0]), item(&[0.0, 0.0]), item(&[1.0, 1.0])];
        let r = repeat_stats(&items, 2, true);
        assert_eq!(r.within_item_variance, Some(0.0));
        assert_eq!(r.within_share, Some(0.0));
    }

    #[test]
    fn a_single_repeat_gives_no_variance_split() {
        let r = repeat_stats(&[item(&[1.0]), item(&[0.0])], 1, true);
        assert_eq!((r.within_item_variance, r.within_share), (None, None));
    }
}
