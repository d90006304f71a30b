//! Tests and intervals on paired differences d_i = treatment_i − control_i (one value per item,
//! or per cluster where noted): exact McNemar, the paired bootstrap, the sign-flip permutation
//! test and the minimum detectable effect.
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::classes::Classes;
use super::dist::{binom_half_cdf, norm_ppf};

/// Above this many non-zero differences the sign-flip test samples instead of enumerating
/// (2^20 ≈ 10^6 sign patterns is still well under a second).
pub const EXACT_PERMUTATION_LIMIT: usize = 20;

/// ChaCha streams, so the bootstrap and the permutation test draw independent numbers from the
/// one configured seed, and adding draws to one never changes the other.
const BOOTSTRAP_STREAM: u64 = 1;
const PERMUTATION_STREAM: u64 = 2;
/// The headline sign-flip test and its interval (`super::signflip`).
pub(super) const HEADLINE_STREAM: u64 = 3;
/// Simulated experiments of the power analysis (`super::power`).
pub(super) const POWER_STREAM: u64 = 4;

/// Resamples are drawn in chunks, each from its own ChaCha stream, so they can run in parallel
/// and still give the same numbers for a seed whatever the number of threads.
const CHUNK: u32 = 1024;

fn chunk_rng(seed: u64, kind: u64, chunk: u32) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(kind << 32 | u64::from(chunk));
    rng
}

/// Runs `per_resample` `resamples` times, chunk by chunk in parallel, in a fixed order.
pub(super) fn resample<T: Send>(
    resamples: u32,
    seed: u64,
    kind: u64,
    per_resample: impl Fn(&mut ChaCha8Rng) -> T + Sync,
) -> Vec<T> {
    let chunks: Vec<Vec<T>> = (0..resamples.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut rng = chunk_rng(seed, kind, c);
            let count = CHUNK.min(resamples - c * CHUNK);
            (0..count).map(|_| per_resample(&mut rng)).collect()
        })
        .collect();
    chunks.into_iter().flatten().collect()
}

/// Exact McNemar p-value: two-sided binomial test of min(b, c) successes in b + c trials at
/// 1/2, where b and c count the two kinds of discordant pairs. Equal to statsmodels'
/// `mcnemar(table, exact=True)` and scipy's `binomtest(min(b, c), b + c)`. No discordant pair
/// gives p = 1: nothing contradicts "no difference".
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    (2.0 * binom_half_cdf(b.min(c), b + c)).min(1.0)
}

/// The interval of the paired difference that inverts the exact McNemar test, so it excludes
/// 0 exactly when `mcnemar_exact(b, c) < alpha`. The difference is (c − b)/n = (2π − 1)·δ,
/// where π is the share of discordant items favouring treatment and δ the discordance. π gets
/// the Clopper–Pearson interval of c out of b + c (the conditional exact test, inverted:
/// it holds 1/2 iff the two-sided exact binomial test does not reject), and δ its own
/// Clopper–Pearson interval of b + c out of n; each end of (2π − 1) is scaled by the end of
/// δ that widens it, so the sign of each bound (hence the agreement with the test) is that of
/// the conditional interval and the uncertainty of the discordance is not ignored
/// (cf. the conditional approach of Agresti & Min 2005, "Simple improved confidence intervals
/// for comparing matched proportions", Statistics in Medicine 24:729–740). `None` when n = 0.
pub fn mcnemar_interval(b: u64, c: u64, n: u64, alpha: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (pi_lo, pi_hi) = super::estimate::clopper_pearson(c, b + c, alpha);
    let (w_lo, w_hi) = super::estimate::clopper_pearson(b + c, n, alpha);
    let scale = |x: f64, widen_up: bool| {
        let w = if (x > 0.0) == widen_up { w_hi } else { w_lo };
        x * w
    };
    Some((scale(2.0 * pi_lo - 1.0, false), scale(2.0 * pi_hi - 1.0, true)))
}

/// The q-quantile of sorted values with linear interpolation between order statistics
/// (numpy's default, so intervals compare with numpy references).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// A paired difference resampled by units: items, or whole clusters when `groups` is given.
pub struct Units {
    /// Sum of the differences in each unit.
    sums: Vec<f64>,
    /// Number of items in each unit.
    sizes: Vec<f64>,
}

impl Units {
    /// One unit per item, or per cluster with `groups = Some((group_of_item, n_groups))`.
    pub fn new(d: &[f64], groups: Option<(&[usize], usize)>) -> Units {
        match groups {
            None => Units { sums: d.to_vec(), sizes: vec![1.0; d.len()] },
            Some((g, n)) => {
                let mut sums = vec![0.0; n];
                let mut sizes = vec![0.0; n];
                for (v, &k) in d.iter().zip(g) {
                    sums[k] += v;
                    sizes[k] += 1.0;
                }
                Units { sums, sizes }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.sums.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    fn n_items(&self) -> f64 {
        self.sizes.iter().sum()
    }
}

/// Percentile bootstrap interval of the mean difference: `resamples` draws of the units with
/// replacement (whole clusters when clustered, so within-cluster correlation is kept), each
/// giving Σ sums / Σ sizes; the alpha/2 and 1 − alpha/2 quantiles. Seeded ChaCha8, so the same
/// seed always gives the same interval. `None` below two units or with zero resamples (or more
/// than 2^32 units, which no run has).
pub fn bootstrap_ci(units: &Units, alpha: f64, resamples: u32, seed: u64) -> Option<(f64, f64)> {
    let g = units.len();
    let g32 = u32::try_from(g).ok()?;
    if g < 2 || resamples == 0 {
        return None;
    }
    let mut means = match Classes::of(&units.sums, &units.sizes) {
        Some(classes) => resample(resamples, seed, BOOTSTRAP_STREAM, |rng| {
            let (s, n) = classes.bootstrap_draw(rng);
            s / n
        }),
        None => resample(resamples, seed, BOOTSTRAP_STREAM, |rng| draw_units(units, g32, rng)),
    };
    means.sort_by(f64::total_cmp);
    Some((quantile_sorted(&means, alpha / 2.0)?, quantile_sorted(&means, 1.0 - alpha / 2.0)?))
}

/// One bootstrap resample drawn unit by unit: the mean of `g` units drawn with replacement.
fn draw_units(units: &Units, g: u32, rng: &mut ChaCha8Rng) -> f64 {
    // Lemire's multiply-shift: an index in 0..g from 32 random bits. Its bias, at most
    // g / 2^32 (2e-6 for 10 000 items), is far below the Monte-Carlo error.
    let draw = |rng: &mut ChaCha8Rng| ((u64::from(rng.next_u32()) * u64::from(g)) >> 32) as usize;
    let (mut s, mut n) = (0.0, 0.0);
    for _ in 0..g {
        let k = draw(rng);
        s += units.sums[k];
        n += units.sizes[k];
    }
    s / n
}

/// The outcome of a sign-flip permutation test.
#[derive(Debug, Clone, PartialEq)]
pub struct SignFlip {
    pub p_value: f64,
    /// Units whose difference is not zero (a zero cannot change sign, so it plays no part).
    pub n_nonzero: usize,
    /// All 2^n_nonzero sign patterns were enumerated.
    pub exact: bool,
    /// Random sign patterns drawn when not exact.
    pub resamples: Option<u32>,
}

/// Two-sided sign-flip permutation test of "the differences are symmetric about zero" for the
/// unit sums `values` (item differences, or cluster sums of them). Statistic |Σ values|; the p-value
/// is the share of sign patterns at least as extreme. Exact enumeration up to
/// [`EXACT_PERMUTATION_LIMIT`] non-zero values (then it equals scipy's
/// `permutation_test(..., permutation_type="samples", n_resamples=inf)`); beyond, `resamples`
/// seeded random patterns with the (count + 1)/(B + 1) estimate, which is never 0.
/// Empty or all-zero input gives p = 1.
pub fn sign_flip_test(values: &[f64], resamples: u32, seed: u64) -> SignFlip {
    let nz: Vec<f64> = values.iter().copied().filter(|v| *v != 0.0).collect();
    let m = nz.len();
    let observed: f64 = nz.iter().sum::<f64>().abs();
    // Sums of the same numbers in another order differ in the last bits; ties must count.
    let tol = observed * 1e-12 + f64::MIN_POSITIVE;
    let at_least = |t: f64| t.abs() >= observed - tol;
    if m == 0 {
        return SignFlip { p_value: 1.0, n_nonzero: 0, exact: true, resamples: None };
    }
    // All differences of one size (0/1 scores, one repeat): the number of flipped signs is
    // Binomial(m, 1/2), so the test is exact at any m and equals the exact McNemar test.
    if nz.iter().all(|v| v.abs() == nz[0].abs()) {
        let pos = nz.iter().filter(|v| **v > 0.0).count() as u64;
        return SignFlip {
            p_value: mcnemar_exact(pos, m as u64 - pos),
            n_nonzero: m,
            exact: true,
            resamples: None,
        };
    }
    if m <= EXACT_PERMUTATION_LIMIT {
        let total = 1u64 << m;
        let count = (0..total)
            .into_par_iter()
            .filter(|mask| {
                let t: f64 = nz
                    .iter()
                    .enumerate()
                    .map(|(i, v)| if mask >> i & 1 == 1 { -v } else { *v })
                    .sum();
                at_least(t)
            })
            .count();
        return SignFlip {
            p_value: (count as f64 / total as f64).min(1.0),
            n_nonzero: m,
            exact: true,
            resamples: None,
        };
    }
    let hits = match Classes::of(&nz, &vec![1.0; m]) {
        Some(classes) => resample(resamples, seed, PERMUTATION_STREAM, |rng| {
            at_least(classes.sign_flip_draw(rng).0)
        }),
        None => resample(resamples, seed, PERMUTATION_STREAM, |rng| {
            // One random bit per sign, 64 signs per draw.
            let mut t = 0.0;
            let mut bits = 0u64;
            for (j, v) in nz.iter().enumerate() {
                if j % 64 == 0 {
                    bits = rng.next_u64();
                }
                t += if bits & 1 == 1 { -v } else { *v };
                bits >>= 1;
            }
            at_least(t)
        }),
    };
    let count = hits.into_iter().filter(|h| *h).count() as u64;
    SignFlip {
        p_value: ((count + 1) as f64 / (f64::from(resamples) + 1.0)).min(1.0),
        n_nonzero: m,
        exact: false,
        resamples: Some(resamples),
    }
}

/// The minimum detectable effect: the true mean difference a two-sided level-alpha test would
/// detect with probability `power`, (z_{1−alpha/2} + z_power)·SE₀, where SE₀ is the standard
/// error of the mean difference *under the null* (E d = 0): sqrt(Σ_u s_u²)/N over units u with
/// difference sums s_u. For 0/1 scores with items as units this is sqrt(discordance/N), the
/// usual McNemar power approximation; clusters widen it as they should. `None` when nothing
/// differs (SE₀ = 0: the data say nothing about the variance).
pub fn minimum_detectable_effect(units: &Units, alpha: f64, power: f64) -> Option<f64> {
    let n = units.n_items();
    if units.is_empty() || n == 0.0 {
        return None;
    }
    let ss: f64 = units.sums.iter().map(|s| s * s).sum();
    if ss == 0.0 {
        return None;
    }
    let se0 = ss.sqrt() / n;
    Some((norm_ppf(1.0 - alpha / 2.0) + norm_ppf(power)) * se0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_without_discordant_pairs_is_one() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert!((mcnemar_exact(0, 9) - 2.0 / 512.0).abs() < 1e-16);
    }

    #[test]
    fn bootstrap_is_reproducible_from_its_seed_and_moves_with_it() {
        let d = [0.13, -0.52, 0.91, 0.07, -0.33, 0.48, 0.29, -0.05, 0.61, 0.17, -0.21, 0.84];
        let u = Units::new(&d, None);
        let a = bootstrap_ci(&u, 0.05, 2000, 7).unwrap();
        assert_eq!(a, bootstrap_ci(&u, 0.05, 2000, 7).unwrap());
        assert_ne!(a, bootstrap_ci(&u, 0.05, 2000, 8).unwrap());
        assert!(a.0 < a.1);
    }

    #[test]
    fn bootstrap_by_counts_agrees_with_drawing_unit_by_unit() {
        // 0/1 differences (three distinct values) take the counting path; adding one odd
        // value per 8 items past the distinct limit forces the unit-by-unit path on nearly
        // the same data. Both are the same bootstrap, so their intervals agree within
        // Monte-Carlo error.
        let d: Vec<f64> = (0..2000).map(|i| [1.0, 0.0, 0.0, -1.0, 1.0][i % 5]).collect();
        let mut spread = d.clone();
        for (k, v) in spread.iter_mut().step_by(8).enumerate() {
            *v += 1e-9 * k as f64;
        }
        assert!(Classes::of(&d, &vec![1.0; d.len()]).is_some());
        assert!(Classes::of(&spread, &vec![1.0; d.len()]).is_none());
        let counted = bootstrap_ci(&Units::new(&d, None), 0.05, 4000, 3).unwrap();
        let drawn = bootstrap_ci(&Units::new(&spread, None), 0.05, 4000, 3).unwrap();
        // The interval's half-width is about 0.033; its ends move by about 0.002 between seeds.
        assert!((counted.0 - drawn.0).abs() < 0.005, "{counted:?} vs {drawn:?}");
        assert!((counted.1 - drawn.1).abs() < 0.005, "{counted:?} vs {drawn:?}");
    }

    #[test]
    fn bootstrap_needs_two_units() {
        assert!(bootstrap_ci(&Units::new(&[1.0], None), 0.05, 100, 0).is_none());
        let one_cluster = Units::new(&[1.0, 0.0, 1.0], Some((&[0, 0, 0], 1)));
        assert!(bootstrap_ci(&one_cluster, 0.05, 100, 0).is_none());
    }

    #[test]
    fn sign_flip_of_all_zero_differences_is_one() {
        let r = sign_flip_test(&[0.0, 0.0], 100, 0);
        assert_eq!(r.p_value, 1.0);
        assert_eq!(r.n_nonzero, 0);
        assert_eq!(sign_flip_test(&[], 100, 0).p_value, 1.0);
    }

    #[test]
    fn sign_flip_exact_counts_both_tails() {
        // Five +1 differences: only all-plus and all-minus reach |sum| = 5, so p = 2/32.
        let r = sign_flip_test(&[1.0; 5], 100, 0);
        assert!(r.exact);
        assert_eq!(r.p_value, 2.0 / 32.0);
    }

    #[test]
    fn sign_flip_of_equal_sized_differences_is_exact_at_any_n() {
        let mut d = vec![1.0; 30];
        d.extend([-1.0; 12]);
        let r = sign_flip_test(&d, 10, 0);
        assert!(r.exact);
        assert_eq!(r.p_value, mcnemar_exact(30, 12));
    }

    #[test]
    fn sign_flip_samples_beyond_the_exact_limit_and_is_never_zero() {
        let d: Vec<f64> = (0..40).map(|i| 1.0 + f64::from(i % 3)).collect();
        let r = sign_flip_test(&d, 999, 3);
        assert!(!r.exact);
        assert_eq!(r.resamples, Some(999));
        assert!(r.p_value > 0.0 && r.p_value <= 2.0 / 1000.0);
    }

    #[test]
    fn mde_is_undefined_without_any_difference() {
        assert!(minimum_detectable_effect(&Units::new(&[0.0, 0.0], None), 0.05, 0.8).is_none());
        let m = minimum_detectable_effect(&Units::new(&[1.0, 0.0, -1.0, 0.0], None), 0.05, 0.8);
        // discordance 1/2, n = 4: (1.95996 + 0.84162) * sqrt(0.5 / 4)
        assert!((m.unwrap() - 2.801_585_218_113 * (0.125f64).sqrt()).abs() < 1e-9);
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&x, 0.0), Some(1.0));
        assert_eq!(quantile_sorted(&x, 1.0), Some(4.0));
        assert_eq!(quantile_sorted(&x, 0.5), Some(2.5));
        assert_eq!(quantile_sorted(&[], 0.5), None);
    }
}
