//! The distributions the estimators need: the standard normal quantile (z-based intervals),
//! the Binomial(n, 1/2) lower tail (the exact McNemar test), and through the regularized
//! incomplete beta function the general binomial (exact power), Beta quantiles
//! (Clopper–Pearson) and Student t (cluster intervals on G − 1 degrees of freedom).

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

/// The standard normal distribution function Φ(x), through the complementary error function
/// of Numerical Recipes (§6.2, Chebyshev fit, relative error below 1.2e-7): enough for the
/// normal-approximation power it serves, never for a p-value.
#[allow(clippy::excessive_precision)]
pub fn norm_cdf(x: f64) -> f64 {
    let z = (x / std::f64::consts::SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 { 1.0 - 0.5 * erfc } else { 0.5 * erfc }
}

/// ln Γ(x) for x > 0, by the Lanczos approximation (g = 7, nine terms, as in Numerical
/// Recipes and Boost), about 1e-15 relative; with the reflection formula below ½.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1, by the
/// continued fraction of Numerical Recipes (§6.4, modified Lentz), using the symmetry
/// I_x(a, b) = 1 − I_{1−x}(b, a) where the fraction converges slowly. It gives the binomial
/// tails of the exact power and the Student t distribution of the cluster interval.
pub fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (-x).ln_1p();
    if x < (a + 1.0) / (a + b + 2.0) {
        (ln_front.exp() * beta_cf(a, b, x) / a).clamp(0.0, 1.0)
    } else {
        (1.0 - ln_front.exp() * beta_cf(b, a, 1.0 - x) / b).clamp(0.0, 1.0)
    }
}

/// The continued fraction of [`beta_inc`]; converges in O(√max(a, b)) terms.
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..100_000 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// The q-quantile of Beta(a, b) for 0 < q < 1: Newton steps on [`beta_inc`] (its derivative
/// is the Beta density), kept inside a bracket that bisection narrows whenever a step would
/// leave it, so it always converges; usually in under ten evaluations. Used for
/// Clopper–Pearson bounds.
pub fn beta_ppf(q: f64, a: f64, b: f64) -> f64 {
    let ln_beta = ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut x = a / (a + b);
    for _ in 0..200 {
        let f = beta_inc(a, b, x) - q;
        if f == 0.0 {
            return x;
        }
        if f < 0.0 {
            lo = x
        } else {
            hi = x
        }
        let density = ((a - 1.0) * x.ln() + (b - 1.0) * (-x).ln_1p() - ln_beta).exp();
        let step = x - f / density;
        let next = if step > lo && step < hi && step.is_finite() { step } else { 0.5 * (lo + hi) };
        if (next - x).abs() <= 1e-15 * x.max(1e-300) || hi - lo <= 1e-300 {
            return next;
        }
        x = next;
    }
    x
}

/// P(X ≤ k) for X ~ Binomial(n, p), as I_{1−p}(n − k, k + 1).
pub fn binom_cdf(k: u64, n: u64, p: f64) -> f64 {
    if k >= n || p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    beta_inc((n - k) as f64, k as f64 + 1.0, 1.0 - p)
}

/// P(X = k) for X ~ Binomial(n, p), through log-gamma; ample for power sums.
pub fn binom_pmf(k: u64, n: u64, p: f64) -> f64 {
    if k > n {
        return 0.0;
    }
    if p <= 0.0 || p >= 1.0 {
        let certain = if p <= 0.0 { 0 } else { n };
        return if k == certain { 1.0 } else { 0.0 };
    }
    let (k, n) = (k as f64, n as f64);
    let ln_choose = ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0);
    (ln_choose + k * p.ln() + (n - k) * (-p).ln_1p()).exp()
}

/// The Student t distribution function with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * beta_inc(df / 2.0, 0.5, df / (df + t * t));
    if t > 0.0 { 1.0 - tail } else { tail }
}

/// The q-quantile of Student t with `df` degrees of freedom, by bisection on [`t_cdf`]; as
/// scipy's `t.ppf` to about 1e-12. Why t: a cluster-robust interval with few clusters has
/// G − 1 degrees of freedom, and z would make it too short (9% instead of 5% rejections with
/// 10 clusters).
pub fn t_ppf(q: f64, df: f64) -> f64 {
    if q == 0.5 {
        return 0.0;
    }
    if q < 0.5 {
        return -t_ppf(1.0 - q, df);
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while t_cdf(hi, df) < q {
        hi *= 2.0;
        if !hi.is_finite() {
            return f64::INFINITY;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < q {
            lo = mid
        } else {
            hi = mid
        }
        if hi - lo <= 1e-15 * hi {
            break;
        }
    }
    0.5 * (lo + hi)
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
