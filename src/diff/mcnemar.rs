//! The exact McNemar test between two runs, on the items whose correctness flipped.
//!
//! The test itself lives in `stats` (one implementation in the crate, checked against scipy
//! there); this adds what a diff needs: no discordant pair means the test has nothing to say,
//! which a diff reports as "no item flipped" rather than as p = 1.

/// Two-sided exact McNemar p-value for `b` pairs that went one way and `c` the other.
/// `None` when there is no discordant pair.
pub fn exact_p(b: u64, c: u64) -> Option<f64> {
    (b + c > 0).then(|| crate::stats::paired::mcnemar_exact(b, c))
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
