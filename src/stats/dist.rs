//! The two distributions the estimators need: the standard normal quantile (for z-based
//! intervals and power) and the Binomial(n, 1/2) lower tail (for the exact McNemar test).

/// The standard normal quantile Φ⁻¹(p) for 0 < p < 1, by Wichura's algorithm AS 241
/// (Applied Statistics 37(3), 1988), accurate to about 1e-16 relative; ±∞ at p = 0 or 1.
///
/// Why not a table of z values: alpha is user-configurable, and the reports must agree with
/// scipy's `norm.ppf` to 1e-9 for any alpha.
// The coefficients are copied verbatim from the published algorithm, so they can be checked
// against it digit by digit; the extra digits round to the same f64.
#[allow(clippy::excessive_precision)]
pub fn norm_ppf(p: f64) -> f64 {
    const A: [f64; 8] = [
        3.387_132_872_796_366_608,
        133.141_667_891_784_377_45,
        1_971.590_950_306_551_442_7,
        13_731.693_765_509_461_125,
        45_921.953_931_549_871_457,
        67_265.770_927_008_700_853,
        33_430.575_583_588_128_105,
        2_509.080_928_730_122_672_7,
    ];
    const B: [f64; 8] = [
        1.0,
        42.313_330_701_600_911_252,
        687.187_007_492_057_908_3,
        5_394.196_021_424_751_107_7,
        21_213.794_301_586_595_867,
        39_307.895_800_092_710_61,
        28_729.085_735_721_942_674,
        5_226.495_278_852_854_561,
    ];
    const C: [f64; 8] = [
        1.423_437_110_749_683_577_34,
        4.630_337_846_156_545_295_9,
        5.769_497_221_460_691_405_5,
        3.647_848_324_763_204_605_04,
        1.270_458_252_452_368_382_58,
        0.241_780_725_177_450_611_77,
        0.022_723_844_989_269_184_583_3,
        7.745_450_142_783_414_076_4e-4,
    ];
    const D: [f64; 8] = [
        1.0,
        2.053_191_626_637_758_821_87,
        1.676_384_830_183_803_849_4,
        0.689_767_334_985_100_004_55,
        0.148_103_976_427_480_074_59,
        0.015_198_666_563_616_457_196_6,
        5.475_938_084_995_344_946e-4,
        1.050_750_071_644_416_843_24e-9,
    ];
    const E: [f64; 8] = [
        6.657_904_643_501_103_777_2,
        5.463_784_911_164_114_369_9,
        1.784_826_539_917_291_335_8,
        0.296_560_571_828_504_891_23,
        0.026_532_189_526_576_123_093,
        0.001_242_660_947_388_078_438_6,
        2.711_555_568_743_487_578_15e-5,
        2.010_334_399_292_288_132_65e-7,
    ];
    const F: [f64; 8] = [
        1.0,
        0.599_832_206_555_887_937_69,
        0.136_929_880_922_735_805_31,
        0.014_875_361_290_850_614_852_5,
        7.868_691_311_456_132_591e-4,
        1.846_318_317_510_054_681_8e-5,
        1.421_511_758_316_445_888_7e-7,
        2.044_263_103_389_939_785_64e-15,
    ];
    fn poly(c: &[f64; 8], x: f64) -> f64 {
        c.iter().rev().fold(0.0, |acc, &k| acc * x + k)
    }
    if p.is_nan() {
        return f64::NAN;
    }
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q * poly(&A, r) / poly(&B, r);
    }
    let tail = if q < 0.0 { p } else { 1.0 - p };
    let r = (-tail.ln()).sqrt();
    let value = if r <= 5.0 {
        let r = r - 1.6;
        poly(&C, r) / poly(&D, r)
    } else {
        let r = r - 5.0;
        poly(&E, r) / poly(&F, r)
    };
    if q < 0.0 { -value } else { value }
}

/// P(X ≤ k) for X ~ Binomial(n, 1/2).
///
/// The k-th term comes from Loader's saddle-point formula (as R's `dbinom` and, in effect,
/// scipy), accurate to a few ulps for any n; the terms below it follow by the exact ratio
/// C(n, i−1)/C(n, i) = i/(n − i + 1). Summing log-factorials instead loses ~1e-11 at n = 20 000.
pub fn binom_half_cdf(k: u64, n: u64) -> f64 {
    if k >= n {
        return 1.0;
    }
    let mut term = binom_half_pmf(k, n);
    let mut sum = 0.0;
    let mut i = k;
    loop {
        sum += term;
        if i == 0 || term < sum * 1e-17 {
            break;
        }
        term *= i as f64 / (n - i + 1) as f64;
        i -= 1;
    }
    sum.min(1.0)
}

/// P(X = k) for X ~ Binomial(n, 1/2), by Loader (2000), "Fast and accurate computation of
/// binomial probabilities".
fn binom_half_pmf(k: u64, n: u64) -> f64 {
    if k == 0 || k == n {
        return (-(n as f64) * std::f64::consts::LN_2).exp();
    }
    let (k, n) = (k as f64, n as f64);
    let half = n / 2.0;
    let lc = stirlerr(n) - stirlerr(k) - stirlerr(n - k) - bd0(k, half) - bd0(n - k, half);
    let lf = (2.0 * std::f64::consts::PI).ln() + k.ln() + (-k / n).ln_1p();
    (lc - 0.5 * lf).exp()
}

/// ln(n!) − ((n + ½) ln n − n + ln √(2π)): the error of Stirling's formula.
fn stirlerr(n: f64) -> f64 {
    const S0: f64 = 1.0 / 12.0;
    const S1: f64 = 1.0 / 360.0;
    const S2: f64 = 1.0 / 1260.0;
    const S3: f64 = 1.0 / 1680.0;
    const S4: f64 = 1.0 / 1188.0;
    if n <= 15.0 {
        let ln_fact: f64 = (2..=n as u64).map(|j| (j as f64).ln()).sum();
        return ln_fact - (n + 0.5) * n.ln() + n - 0.5 * (2.0 * std::f64::consts::PI).ln();
    }
    let nn = n * n;
    (S0 - (S1 - (S2 - (S3 - S4 / nn) / nn) / nn) / nn) / n
}

/// x ln(x/np) + np − x, without the cancellation when x ≈ np.
fn bd0(x: f64, np: f64) -> f64 {
    if (x - np).abs() < 0.1 * (x + np) {
        let mut v = (x - np) / (x + np);
        let mut s = (x - np) * v;
        let mut ej = 2.0 * x * v;
        v *= v;
        for j in 1..1000 {
            ej *= v;
            let s1 = s + ej / f64::from(2 * j + 1);
            if s1 == s {
                return s1;
            }
            s = s1;
        }
        return s;
    }
    x * (x / np).ln() + np - x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_ppf_is_antisymmetric_and_known_at_the_usual_points() {
        assert_eq!(norm_ppf(0.5), 0.0);
        assert!((norm_ppf(0.975) - 1.959_963_984_540_054).abs() < 1e-14);
        assert!((norm_ppf(0.1) + norm_ppf(0.9)).abs() < 1e-15);
        assert_eq!(norm_ppf(0.0), f64::NEG_INFINITY);
        assert_eq!(norm_ppf(1.0), f64::INFINITY);
    }

    #[test]
    fn binom_half_cdf_matches_small_exact_sums() {
        // n = 4: 1, 4, 6, 4, 1 over 16.
        assert_eq!(binom_half_cdf(0, 4), 1.0 / 16.0);
        assert!((binom_half_cdf(1, 4) - 5.0 / 16.0).abs() < 1e-16);
        assert!((binom_half_cdf(2, 4) - 11.0 / 16.0).abs() < 1e-16);
        assert_eq!(binom_half_cdf(4, 4), 1.0);
        assert_eq!(binom_half_cdf(0, 0), 1.0);
    }

    #[test]
    fn binom_half_cdf_survives_large_n_without_underflow() {
        // For even n, symmetry gives P(X <= n/2 - 1) + P(X <= n/2) = 1, and the mass at the
        // median is close to sqrt(2 / (pi n)): both fail if the far tail underflowed.
        let n = 20_000;
        let below = binom_half_cdf(n / 2 - 1, n);
        let upto = binom_half_cdf(n / 2, n);
        let median_mass = upto - below;
        let approx = (2.0 / (std::f64::consts::PI * n as f64)).sqrt();
        assert!((median_mass - approx).abs() / approx < 1e-4);
        assert!((below + upto - 1.0).abs() < 1e-12);
    }
}
