//! The exact McNemar test on discordant pairs, for the paired comparison of two runs.
//!
//! Kept inside `diff` on purpose: the statistics module (`src/stats/`) was written in parallel,
//! and a diff needs only this one test. It is the two-sided exact binomial test of
//! `min(b, c)` out of `b + c` discordant pairs at p = 1/2, the same figure as
//! `statsmodels.stats.contingency_tables.mcnemar(table, exact=True).pvalue`.

/// Two-sided exact McNemar p-value for `b` pairs that went one way and `c` the other.
/// `None` when there is no discordant pair: the test has nothing to say (not p = 1 by fiat).
pub fn exact_p(b: u64, c: u64) -> Option<f64> {
    let n = b + c;
    if n == 0 {
        return None;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space so n in the tens of thousands
    // neither underflows 0.5^n nor overflows the binomial coefficients.
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    let mut ln_coef = 0.0f64; // ln C(n, 0)
    let mut terms = Vec::with_capacity(k as usize + 1);
    for i in 0..=k {
        if i > 0 {
            ln_coef += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        terms.push(ln_coef - ln_half_n);
    }
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let tail = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
    Some((2.0 * tail).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::exact_p;

    // Reference values produced by (scipy 1.x):
    //   python3 -c "from scipy.stats import binomtest
    //   for b,c in [(0,5),(1,5),(3,3),(2,9),(10,25),(4000,6000)]:
    //       print(b, c, repr(binomtest(min(b,c), b+c, 0.5).pvalue))"
    // binomtest is two-sided and symmetric at p = 1/2, the exact McNemar test.
    #[test]
    fn matches_scipy_on_small_tables() {
        let cases = [
            (0u64, 5u64, 0.0625),
            (1, 5, 0.21875),
            (3, 3, 1.0),
            (2, 9, 0.0654296875),
            (10, 25, 0.016673847800120715),
        ];
        for (b, c, want) in cases {
            let got = exact_p(b, c).unwrap();
            assert!((got - want).abs() < 1e-12, "b={b} c={c}: {got} != {want}");
        }
    }

    #[test]
    fn stays_finite_and_tiny_on_large_lopsided_tables() {
        let p = exact_p(4000, 6000).unwrap();
        assert!(p > 0.0 && (p / 1.7404316412268293e-89 - 1.0).abs() < 1e-9, "{p}");
    }

    #[test]
    fn is_symmetric_and_undefined_without_discordant_pairs() {
        assert_eq!(exact_p(0, 0), None);
        assert_eq!(exact_p(4, 11), exact_p(11, 4));
    }
}
