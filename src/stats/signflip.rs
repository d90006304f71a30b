//! The sign-flip permutation test on units (items, or clusters of items) together with the
//! confidence interval that inverts it, so the headline interval excludes 0 exactly when the
//! headline test rejects.
//!
//! Units carry the sum of their item differences s_u and their item count m_u. Under "no
//! effect" each unit's sum is symmetric about 0, so flipping signs gives the null distribution
//! of T = Σ s_u (Good 2005, *Permutation, Parametric and Bootstrap Tests of Hypotheses*, §3;
//! for clusters, Canay, Romano & Shaikh 2017, "Randomization tests under an approximate
//! symmetry assumption"). Testing a shift δ (every item difference lowered by δ) gives, for
//! each sign pattern b, T_b(δ) = A_b − δ·M_b with A_b = Σ ε_u s_u and M_b = Σ ε_u m_u, against
//! the observed N·(d̄ − δ). Both sides are linear in δ, so the set of δ where pattern b is at
//! least as extreme as the data is one closed interval around d̄ with closed-form ends, and the
//! (1 − α) interval {δ : p(δ) ≥ α} is read off order statistics of those ends: no search, no
//! re-running the test (Hodges–Lehmann-style inversion; Lehmann & Romano, *Testing Statistical
//! Hypotheses*, §3.5).
use rand::RngCore;
use rayon::prelude::*;

use super::classes::Classes;
use super::paired::{EXACT_PERMUTATION_LIMIT, HEADLINE_STREAM, resample};

/// The headline sign-flip test with its interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Inverted {
    pub p_value: f64,
    /// Every shift the test does not reject at alpha; `None` when that set is unbounded (too
    /// few units for any sign pattern to reach p < alpha).
    pub ci: Option<(f64, f64)>,
    /// All 2^G sign patterns were enumerated.
    pub exact: bool,
    /// Random sign patterns drawn when not exact.
    pub resamples: Option<u32>,
    pub n_units: usize,
}

/// One sign pattern reduced to what the inversion needs: A_b and M_b.
#[derive(Debug, Clone, Copy)]
struct Pattern {
    a: f64,
    m: f64,
}

fn pattern_of(sums: &[f64], sizes: &[f64], mut sign: impl FnMut(usize) -> bool) -> Pattern {
    let (mut a, mut m) = (0.0, 0.0);
    for (u, (s, n)) in sums.iter().zip(sizes).enumerate() {
        if sign(u) {
            a -= s;
            m -= n;
        } else {
            a += s;
            m += n;
        }
    }
    Pattern { a, m }
}

/// Every sign pattern when there are at most [`EXACT_PERMUTATION_LIMIT`] units, else
/// `resamples` seeded random ones.
fn patterns(sums: &[f64], sizes: &[f64], resamples: u32, seed: u64) -> (Vec<Pattern>, bool) {
    let g = sums.len();
    if g <= EXACT_PERMUTATION_LIMIT {
        let all = (0..1u64 << g)
            .into_par_iter()
            .map(|mask| pattern_of(sums, sizes, |u| mask >> u & 1 == 1))
            .collect();
        return (all, true);
    }
    let drawn = match Classes::of(sums, sizes) {
        Some(classes) => resample(resamples, seed, HEADLINE_STREAM, |rng| {
            let (a, m) = classes.sign_flip_draw(rng);
            Pattern { a, m }
        }),
        None => resample(resamples, seed, HEADLINE_STREAM, |rng| {
            let mut bits = 0u64;
            pattern_of(sums, sizes, |u| {
                if u % 64 == 0 {
                    bits = rng.next_u64();
                }
                let flip = bits & 1 == 1;
                bits >>= 1;
                flip
            })
        }),
    };
    (drawn, false)
}

/// Two-sided sign-flip test of "no effect" on units with difference sums `sums` and item
/// counts `sizes`, and the (1 − alpha) interval of the mean item difference that inverts it.
/// Exact (all 2^G patterns) up to [`EXACT_PERMUTATION_LIMIT`] units, else `resamples` seeded
/// patterns with the (count + 1)/(B + 1) p-value, which keeps the test's level at most alpha.
pub fn test_and_interval(
    sums: &[f64],
    sizes: &[f64],
    alpha: f64,
    resamples: u32,
    seed: u64,
) -> Inverted {
    let g = sums.len();
    let n: f64 = sizes.iter().sum();
    let total: f64 = sums.iter().sum();
    if g == 0 || n == 0.0 || (g > EXACT_PERMUTATION_LIMIT && resamples == 0) {
        return Inverted { p_value: 1.0, ci: None, exact: true, resamples: None, n_units: g };
    }
    let (pats, exact) = patterns(sums, sizes, resamples, seed);
    let mean = total / n;
    // Sums of the same numbers in another order differ in the last bits; ties must count.
    let tol = sums.iter().map(|s| s.abs()).sum::<f64>() * 1e-12 + f64::MIN_POSITIVE;
    let hits = pats.iter().filter(|p| p.a.abs() >= total.abs() - tol).count() as f64;
    let b = pats.len() as f64;
    let p_value = if exact { hits / b } else { (hits + 1.0) / (b + 1.0) }.min(1.0);

    // Pattern b is at least as extreme at shift mean + v iff |R − v·M| ≥ N·|v| with
    // R = A − mean·M: v between R/(N + M) and −R/(N − M). The all-plus and all-minus patterns
    // (M = ±N) are always as extreme as the data.
    let mut lows = Vec::with_capacity(pats.len());
    let mut highs = Vec::with_capacity(pats.len());
    for p in &pats {
        if n + p.m < 0.5 || n - p.m < 0.5 {
            lows.push(f64::NEG_INFINITY);
            highs.push(f64::INFINITY);
            continue;
        }
        let r = p.a - mean * p.m;
        let (v1, v2) = (r / (n + p.m), -r / (n - p.m));
        lows.push(mean + v1.min(v2));
        highs.push(mean + v1.max(v2));
    }
    // p(δ) ≥ alpha iff at least `need` patterns hold δ.
    let need = if exact { (alpha * b).ceil() } else { (alpha * (b + 1.0)).ceil() - 1.0 };
    let need = need.max(0.0) as usize;
    let ci = if need == 0 || need > pats.len() {
        None
    } else {
        let (_, lo, _) = lows.select_nth_unstable_by(need - 1, f64::total_cmp);
        let lo = *lo;
        let (_, hi, _) = highs.select_nth_unstable_by(pats.len() - need, f64::total_cmp);
        let hi = *hi;
        (lo.is_finite() && hi.is_finite()).then(|| agree_with_test(lo, hi, p_value, alpha))
    };
    Inverted { p_value, ci, exact, resamples: (!exact).then_some(resamples), n_units: g }
}

/// Where a pattern ties the data exactly at δ = 0 the interval's end is 0 up to rounding; the
/// test counts ties as extreme, so a non-rejecting test keeps 0 inside the interval.
fn agree_with_test(lo: f64, hi: f64, p: f64, alpha: f64) -> (f64, f64) {
    if p >= alpha { (lo.min(0.0), hi.max(0.0)) } else { (lo, hi) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_excludes_zero_exactly_when_the_test_rejects() {
        let sums = [0.5, 1.0, 0.25, 0.75, -0.25, 1.0, 0.5, 0.0, 0.75];
        let sizes = [1.0; 9];
        for alpha in [0.01, 0.05, 0.1, 0.2] {
            let r = test_and_interval(&sums, &sizes, alpha, 0, 0);
            let (lo, hi) = r.ci.unwrap();
            assert_eq!(r.p_value < alpha, lo > 0.0 || hi < 0.0, "alpha {alpha}: {r:?}");
            assert!(lo < 0.5 && 0.5 < hi);
        }
    }

    #[test]
    fn too_few_units_give_no_interval() {
        // Four units: the smallest p is 2/16 > 0.05, so no shift is ever rejected.
        let r = test_and_interval(&[1.0, 1.0, 1.0, 1.0], &[1.0; 4], 0.05, 0, 0);
        assert_eq!(r.p_value, 0.125);
        assert_eq!(r.ci, None);
    }

    #[test]
    fn the_interval_ends_are_where_the_shifted_test_crosses_alpha() {
        let sums: Vec<f64> = (0..12).map(|i| f64::from(i * 7 % 5) - 1.2).collect();
        let sizes = vec![1.0; 12];
        let r = test_and_interval(&sums, &sizes, 0.05, 0, 0);
        let (lo, hi) = r.ci.unwrap();
        let shifted = |d: f64| {
            let s: Vec<f64> = sums.iter().map(|v| v - d).collect();
            test_and_interval(&s, &sizes, 0.05, 0, 0).p_value
        };
        assert!(shifted(lo + 1e-6) >= 0.05 && shifted(lo - 1e-6) < 0.05);
        assert!(shifted(hi - 1e-6) >= 0.05 && shifted(hi + 1e-6) < 0.05);
    }

    #[test]
    fn sampled_patterns_are_reproducible_from_the_seed() {
        let sums: Vec<f64> = (0..40).map(|i| f64::from(i % 7) / 3.0 - 0.8).collect();
        let sizes = vec![2.0; 40];
        let a = test_and_interval(&sums, &sizes, 0.05, 999, 4);
        assert_eq!(a, test_and_interval(&sums, &sizes, 0.05, 999, 4));
        assert!(!a.exact && a.resamples == Some(999));
        assert!(a.p_value > 0.0);
    }
}
