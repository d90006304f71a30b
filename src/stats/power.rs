//! Power of the headline test: exact for McNemar, by seeded simulation for the sign-flip test.
//!
//! The normal formula (z_{1−α/2} + z_power)·SE₀ ignores that an exact test on few discordant
//! items cannot reject at all (b + c = 5 never reaches p < 0.05), and promises effects larger
//! than the data allow: a treatment cannot gain more than the share of items whose outcome
//! differs. So power here is the probability that the headline test itself rejects, and the
//! minimum detectable effect exists only where that probability reaches the target within the
//! largest effect the data allow.
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::dist::{binom_cdf, binom_half_cdf, binom_pmf, norm_ppf};
use super::paired::POWER_STREAM;

/// The largest k with exact McNemar p = 2·P(X ≤ k) < alpha for m discordant items, if any.
fn mcnemar_critical(m: u64, alpha: f64) -> Option<u64> {
    if m == 0 || 2.0 * binom_half_cdf(0, m) >= alpha {
        return None;
    }
    let (mut lo, mut hi) = (0u64, m / 2);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if 2.0 * binom_half_cdf(mid, m) < alpha { lo = mid } else { hi = mid - 1 }
    }
    Some(lo)
}

/// Exact power of the two-sided exact McNemar test at level `alpha` with `n` paired items, a
/// discordance rate `discordance` (share of items whose outcomes differ) and a true effect
/// `effect` (treatment − control, at most the discordance in size): the number of discordant
/// items m is Binomial(n, discordance), and given m the items favouring treatment are
/// Binomial(m, π) with π = (1 + effect/discordance)/2 (the conditional binomial). Summed over
/// every m with non-negligible probability.
pub fn mcnemar_power(n: u64, discordance: f64, effect: f64, alpha: f64) -> f64 {
    McnemarPower::new(n, discordance, alpha).at(effect)
}

/// The part of [`mcnemar_power`] that does not depend on the effect: every number of
/// discordant items m with non-negligible probability, its probability and the test's
/// critical value there. Built once, it serves every effect of a bisection; re-deriving the
/// critical values at each step cost minutes at 10^6 items.
pub struct McnemarPower {
    discordance: f64,
    /// (m, weight P(M = m), largest k with 2·P(X ≤ k) < alpha) for every m that can reject.
    terms: Vec<(u64, f64, u64)>,
}

impl McnemarPower {
    pub fn new(n: u64, discordance: f64, alpha: f64) -> McnemarPower {
        let pd = discordance.min(1.0);
        let mut terms = Vec::new();
        if n > 0 && pd > 0.0 {
            let mean = n as f64 * pd;
            let sd = (mean * (1.0 - pd)).sqrt();
            let first = (mean - 12.0 * sd - 10.0).max(0.0) as u64;
            let last = ((mean + 12.0 * sd + 10.0).min(n as f64)) as u64;
            let mut critical: Option<u64> = None;
            for m in first..=last {
                // One more discordant item moves the critical value by at most one
                // (P(X_{m+1} ≤ j) lies between P(X_m ≤ j − 1) and P(X_m ≤ j)), so one check
                // per m replaces a search.
                critical = match critical {
                    Some(k) if 2.0 * binom_half_cdf(k + 1, m) < alpha => Some(k + 1),
                    Some(k) => Some(k),
                    None => mcnemar_critical(m, alpha),
                };
                let Some(k) = critical else { continue };
                let weight = binom_pmf(m, n, pd);
                if weight > 0.0 {
                    terms.push((m, weight, k));
                }
            }
        }
        McnemarPower { discordance: pd, terms }
    }

    /// The power at a true effect of `effect`.
    pub fn at(&self, effect: f64) -> f64 {
        if self.terms.is_empty() {
            return 0.0;
        }
        let pd = self.discordance;
        let pi = ((1.0 + (effect / pd).clamp(-1.0, 1.0)) / 2.0).clamp(0.0, 1.0);
        let power: f64 = self
            .terms
            .iter()
            .map(|&(m, weight, k)| {
                // Reject when the items favouring treatment are ≤ k or ≥ m − k.
                let low = binom_cdf(k, m, pi);
                let high = 1.0 - binom_cdf(m - k - 1, m, pi);
                weight * (low + high)
            })
            .sum();
        power.min(1.0)
    }

    /// The smallest effect (≥ 0) detected with probability `target`, by bisection (power
    /// grows with the effect at fixed discordance). `None` when even the largest effect the
    /// data allow (the whole discordance favouring one side) falls short.
    pub fn mde(&self, target: f64) -> Option<f64> {
        if self.at(self.discordance) < target {
            return None;
        }
        let (mut lo, mut hi) = (0.0, self.discordance);
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if self.at(mid) >= target { hi = mid } else { lo = mid }
        }
        Some(hi)
    }
}

/// The smallest effect the exact McNemar test detects with probability `target`
/// ([`McnemarPower::mde`]).
pub fn mcnemar_mde(n: u64, discordance: f64, alpha: f64, target: f64) -> Option<f64> {
    McnemarPower::new(n, discordance, alpha).mde(target)
}

/// Paired items the exact McNemar test needs to detect `effect` with probability `target`,
/// at `discordance` (raised to |effect| when smaller: an effect needs at least that many
/// discordant items). Doubling then bisection on n; an exact test's power is saw-toothed in n,
/// so this is the first n on that path reaching the target, within a few items of the least.
/// `None` for a zero effect or beyond 10^9 items.
pub fn mcnemar_items_needed(discordance: f64, effect: f64, alpha: f64, target: f64) -> Option<u64> {
    let effect = effect.abs();
    if effect == 0.0 || effect > 1.0 {
        return None;
    }
    let pd = discordance.max(effect);
    let ok = |n: u64| mcnemar_power(n, pd, effect, alpha) >= target;
    search_n(8, 1_000_000_000, ok)
}

/// The first n reaching `ok` on a path doubling from `start` (up to `limit`), then bisecting
/// between the last two points.
fn search_n(start: u64, limit: u64, ok: impl Fn(u64) -> bool) -> Option<u64> {
    let mut hi = start.max(2);
    while !ok(hi) {
        if hi > limit {
            return None;
        }
        hi *= 2;
    }
    let mut lo = hi / 2;
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) { hi = mid } else { lo = mid }
    }
    Some(hi)
}

/// Simulated experiments for the power of the sign-flip test on units.
pub const POWER_SIMULATIONS: u32 = 400;
/// Sign patterns per simulated test: (count + 1)/200 is a level-alpha test for alpha = 0.05.
const PATTERNS_PER_TEST: usize = 199;
/// Units up to which a simulated test enumerates every sign pattern.
const EXACT_UNITS: usize = 10;
/// Above this many units the simulation would cost seconds; the sign-flip test then behaves
/// as the normal test of the mean and its power is computed so.
pub const SIMULATION_UNITS_LIMIT: usize = 5_000;

/// One simulated experiment, reduced to what its test needs at any shift: the observed sum of
/// centered values C₀ and item count N, and per sign pattern (C_b, M_b).
struct Simulated {
    c0: f64,
    n: f64,
    exact: bool,
    patterns: Vec<(f64, f64)>,
    tol: f64,
}

/// Power of the sign-flip test on units by simulation: experiments of G units drawn with
/// replacement from the observed units, centered (no effect) and then shifted by `effect`
/// per item; seeded, and the same draws serve every effect (common random numbers), so power
/// grows smoothly with the effect and the minimum detectable effect can be bisected.
pub struct SignFlipPower {
    sims: Vec<Simulated>,
    alpha: f64,
}

impl SignFlipPower {
    /// `sums[u]` and `sizes[u]`: each unit's sum of item differences and item count; the
    /// simulated experiments have as many units as observed.
    pub fn new(sums: &[f64], sizes: &[f64], alpha: f64, seed: u64) -> SignFlipPower {
        SignFlipPower::of_size(sums, sizes, sums.len(), alpha, seed)
    }

    /// Simulated experiments of `g` units drawn from the observed ones (a pilot's units for a
    /// trial of another size).
    pub fn of_size(sums: &[f64], sizes: &[f64], g: usize, alpha: f64, seed: u64) -> SignFlipPower {
        let observed = sums.len();
        let n: f64 = sizes.iter().sum();
        let mean = if n > 0.0 { sums.iter().sum::<f64>() / n } else { 0.0 };
        let centered: Vec<f64> = sums.iter().zip(sizes).map(|(s, m)| s - mean * m).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(POWER_STREAM << 32);
        let sims = (0..if g == 0 || observed == 0 { 0 } else { POWER_SIMULATIONS })
            .map(|_| {
                let draw: Vec<usize> = (0..g)
                    .map(|_| ((u64::from(rng.next_u32()) * observed as u64) >> 32) as usize)
                    .collect();
                let c: Vec<f64> = draw.iter().map(|&u| centered[u]).collect();
                let m: Vec<f64> = draw.iter().map(|&u| sizes[u]).collect();
                let exact = g <= EXACT_UNITS;
                let count = if exact { 1usize << g } else { PATTERNS_PER_TEST };
                let patterns = (0..count)
                    .map(|k| {
                        let mut bits = if exact { k as u64 } else { rng.next_u64() };
                        let (mut a, mut b) = (0.0, 0.0);
                        for u in 0..g {
                            if !exact && u % 64 == 0 && u > 0 {
                                bits = rng.next_u64();
                            }
                            let sign = if bits & 1 == 1 { -1.0 } else { 1.0 };
                            bits >>= 1;
                            a += sign * c[u];
                            b += sign * m[u];
                        }
                        (a, b)
                    })
                    .collect();
                let tol = c.iter().map(|v| v.abs()).sum::<f64>() * 1e-12 + f64::MIN_POSITIVE;
                Simulated { c0: c.iter().sum(), n: m.iter().sum(), exact, patterns, tol }
            })
            .collect();
        SignFlipPower { sims, alpha }
    }

    /// The share of simulated experiments whose test rejects at a true effect of `effect`.
    pub fn power(&self, effect: f64) -> f64 {
        if self.sims.is_empty() {
            return 0.0;
        }
        let rejected = self
            .sims
            .iter()
            .filter(|s| {
                let t0 = (s.c0 + effect * s.n).abs() - s.tol;
                let hits = s.patterns.iter().filter(|(a, m)| (a + effect * m).abs() >= t0).count();
                let b = s.patterns.len() as f64;
                let p = if s.exact { hits as f64 / b } else { (hits as f64 + 1.0) / (b + 1.0) };
                p < self.alpha
            })
            .count();
        rejected as f64 / self.sims.len() as f64
    }

    /// The smallest effect in [0, `max_effect`] detected with probability `target`, by
    /// bisection; `None` when `max_effect` itself falls short.
    pub fn mde(&self, max_effect: f64, target: f64) -> Option<f64> {
        if max_effect.is_nan() || max_effect <= 0.0 || self.power(max_effect) < target {
            return None;
        }
        let (mut lo, mut hi) = (0.0, max_effect);
        for _ in 0..30 {
            let mid = 0.5 * (lo + hi);
            if self.power(mid) >= target { hi = mid } else { lo = mid }
        }
        Some(hi)
    }
}

/// Above this many units (by the normal formula) a search by simulation would cost seconds;
/// the sign-flip test on that many units behaves as the normal test of the mean.
pub const SEARCH_UNITS_LIMIT: u64 = 500;

/// Units a trial needs, and whether the simulated test or the normal formula said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitsNeeded {
    pub units: u64,
    pub simulated: bool,
}

/// Units the sign-flip test needs to detect `effect` per item with probability `target`:
/// the first G whose simulated power ([`SignFlipPower::of_size`], the pilot's units resampled,
/// seeded) reaches it, on a doubling-then-bisection path starting below the normal formula's
/// answer; the normal formula itself beyond [`SEARCH_UNITS_LIMIT`] units. Simulated power is
/// a step function of G up to Monte-Carlo error (400 experiments: ±0.02 at 80%), so the answer
/// is within a few units of the least. `None` for a zero effect or a pilot without spread.
pub fn sign_flip_units_needed(
    sums: &[f64],
    sizes: &[f64],
    effect: f64,
    alpha: f64,
    target: f64,
    seed: u64,
) -> Option<UnitsNeeded> {
    let g = sums.len() as f64;
    let items: f64 = sizes.iter().sum();
    if g == 0.0 || items == 0.0 {
        return None;
    }
    let mean = sums.iter().sum::<f64>() / items;
    let unit_var = sums.iter().zip(sizes).map(|(s, m)| (s - mean * m).powi(2)).sum::<f64>() / g;
    let normal = normal_units_needed(unit_var, items / g, effect, alpha, target)?;
    if normal > SEARCH_UNITS_LIMIT {
        return Some(UnitsNeeded { units: normal, simulated: false });
    }
    let ok = |units: u64| {
        let sim = SignFlipPower::of_size(sums, sizes, units as usize, alpha, seed);
        sim.power(effect.abs()) >= target
    };
    let units = search_n(normal * 3 / 5, 4 * SEARCH_UNITS_LIMIT, ok)?;
    Some(UnitsNeeded { units, simulated: true })
}

/// Power of the two-sided level-alpha normal test of the mean for G units whose centered sums
/// have mean square `unit_var`, at an effect `effect` per item with `mean_size` items per unit.
pub fn normal_power(g: f64, unit_var: f64, mean_size: f64, effect: f64, alpha: f64) -> f64 {
    if g <= 0.0 || unit_var <= 0.0 {
        return 0.0;
    }
    let shift = effect.abs() * mean_size * g.sqrt() / unit_var.sqrt();
    let z = norm_ppf(1.0 - alpha / 2.0);
    super::dist::norm_cdf(shift - z) + super::dist::norm_cdf(-shift - z)
}

/// Units a test of the mean needs to detect `effect` with probability `target`, by the normal
/// approximation G = ((z_{1−α/2} + z_power)·σ_u / (effect·m̄))². `None` for a zero effect or
/// no spread.
pub fn normal_units_needed(
    unit_var: f64,
    mean_size: f64,
    effect: f64,
    alpha: f64,
    target: f64,
) -> Option<u64> {
    if effect == 0.0 || unit_var <= 0.0 || mean_size <= 0.0 {
        return None;
    }
    let z = norm_ppf(1.0 - alpha / 2.0) + norm_ppf(target);
    let g = (z * unit_var.sqrt() / (effect.abs() * mean_size)).powi(2).ceil();
    (g.is_finite() && g < 1e12).then_some(g.max(2.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_discordant_items_can_never_reach_significance() {
        assert_eq!(mcnemar_critical(5, 0.05), None);
        assert_eq!(mcnemar_critical(6, 0.05), Some(0));
        assert_eq!(mcnemar_power(5, 1.0, 1.0, 0.05), 0.0);
        assert!((mcnemar_power(6, 1.0, 1.0, 0.05) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn power_is_alpha_or_less_without_an_effect_and_grows_with_it() {
        let p0 = mcnemar_power(400, 0.2, 0.0, 0.05);
        assert!(p0 > 0.03 && p0 <= 0.05, "{p0}");
        let (a, b) = (mcnemar_power(400, 0.2, 0.05, 0.05), mcnemar_power(400, 0.2, 0.1, 0.05));
        assert!(p0 < a && a < b && b < 1.0);
    }

    #[test]
    fn no_mde_beyond_what_the_discordance_allows() {
        assert_eq!(mcnemar_mde(1100, 5.0 / 1100.0, 0.05, 0.8), None);
        let m = mcnemar_mde(400, 0.2, 0.05, 0.8).unwrap();
        assert!(m > 0.0 && m < 0.2 && mcnemar_power(400, 0.2, m, 0.05) >= 0.8);
    }

    #[test]
    fn items_needed_reach_the_target_power() {
        let n = mcnemar_items_needed(0.2, 0.05, 0.05, 0.8).unwrap();
        assert!(mcnemar_power(n, 0.2, 0.05, 0.05) >= 0.8);
        assert!(mcnemar_power(n * 9 / 10, 0.2, 0.05, 0.05) < 0.8);
        assert_eq!(mcnemar_items_needed(0.2, 0.0, 0.05, 0.8), None);
    }

    #[test]
    fn simulated_sign_flip_power_is_seeded_and_grows_with_the_effect() {
        let sums: Vec<f64> = (0..30).map(|i| f64::from(i % 5) / 4.0 - 0.4).collect();
        let sizes = vec![1.0; 30];
        let p = SignFlipPower::new(&sums, &sizes, 0.05, 1);
        let (a, b, c) = (p.power(0.0), p.power(0.2), p.power(0.5));
        assert!(a < 0.1 && a < b && b < c, "{a} {b} {c}");
        assert_eq!(c, SignFlipPower::new(&sums, &sizes, 0.05, 1).power(0.5));
        assert!(p.mde(1.0, 0.8).is_some_and(|m| m > 0.0 && m < 1.0));
    }

    /// A pilot of 60 continuous units spread by about 0.3 around a small mean.
    fn spread_pilot() -> (Vec<f64>, Vec<f64>) {
        let sums: Vec<f64> = (0..60).map(|i| f64::from(i * 37 % 60) / 59.0 - 0.48).collect();
        (sums, vec![1.0; 60])
    }

    #[test]
    fn a_large_effect_needs_the_fewest_units_the_sign_flip_test_can_reject_with() {
        // Every unit gains about 0.5: six units is the first size where 2/2^G < 0.05.
        let sums: Vec<f64> = (0..20).map(|i| 0.45 + f64::from(i % 5) * 0.025).collect();
        let needed = sign_flip_units_needed(&sums, &[1.0; 20], 0.5, 0.05, 0.8, 0).unwrap();
        assert_eq!(needed, UnitsNeeded { units: 6, simulated: true });
        let again = sign_flip_units_needed(&sums, &[1.0; 20], 0.5, 0.05, 0.8, 0);
        assert_eq!(again, Some(needed), "seeded: the same answer every time");
    }

    #[test]
    fn simulated_power_grows_with_the_trial_size() {
        let (sums, sizes) = spread_pilot();
        let at = |g| SignFlipPower::of_size(&sums, &sizes, g, 0.05, 3).power(0.06);
        let powers: Vec<f64> = [8, 16, 32, 64, 128, 256].into_iter().map(at).collect();
        assert!(powers.windows(2).all(|w| w[0] <= w[1]), "{powers:?}");
        assert!(powers[0] < 0.2 && powers[5] > 0.8, "{powers:?}");
    }

    #[test]
    fn units_needed_by_simulation_agree_with_the_normal_formula_when_many_are_needed() {
        let (sums, sizes) = spread_pilot();
        let mean = sums.iter().sum::<f64>() / 60.0;
        let var = sums.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / 60.0;
        let normal = normal_units_needed(var, 1.0, 0.06, 0.05, 0.8).unwrap();
        let needed = sign_flip_units_needed(&sums, &sizes, 0.06, 0.05, 0.8, 7).unwrap();
        assert!(needed.simulated && (150..=260).contains(&normal), "{normal}");
        let ratio = needed.units as f64 / normal as f64;
        assert!((0.85..=1.15).contains(&ratio), "simulated {} vs normal {normal}", needed.units);
        let sim = SignFlipPower::of_size(&sums, &sizes, needed.units as usize, 0.05, 7);
        assert!(sim.power(0.06) >= 0.8);
    }

    #[test]
    fn beyond_the_search_limit_the_normal_formula_is_named() {
        let (sums, sizes) = spread_pilot();
        let needed = sign_flip_units_needed(&sums, &sizes, 0.01, 0.05, 0.8, 0).unwrap();
        assert!(!needed.simulated && needed.units > SEARCH_UNITS_LIMIT, "{needed:?}");
        assert_eq!(sign_flip_units_needed(&sums, &sizes, 0.0, 0.05, 0.8, 0), None);
    }
}
