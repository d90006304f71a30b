//! How figures read wherever a person reads them: every command's output and every report.
//! One convention per figure, used everywhere (the reports set them; commands follow):
//!
//! | figure | reads | function |
//! | --- | --- | --- |
//! | US dollars | three significant digits, at least cents: `$0.00841`, `$0.500`, `$12.35`; zero is `$0` | [`usd`] |
//! | a change in dollars | signed: `+$0.00120`, `-$1.50` | [`usd_change`] |
//! | a share (accuracy) | percent, one decimal: `69.2%` | [`percent`] |
//! | a difference of shares | signed percentage points, one decimal: `+6.7 pp`; no difference is `+0.0 pp` | [`points`], [`points_range`] |
//! | a confidence level | percent, a decimal only when needed: `95%`, `99.9%` | [`confidence`] |
//! | a p-value | three decimals, `< 0.001` below that: `0.039`, `< 0.001` | [`p_value`], [`p_eq`] |
//! | a count | digits grouped by commas: `51,234` | [`count`] |
//! | a counted noun | `1 part`, `2 parts`, `1,200 items` | [`plural`] |
//! | a missing figure | an em dash: `—` | [`MISSING`], [`or_missing`] |
//!
//! Rounding happens only here: the JSON files keep exact figures. This module depends on nothing
//! else in the crate, so any layer may use it; it never decides *whether* a figure is shown.

/// What stands in a table cell or sentence for a figure that does not exist.
pub const MISSING: &str = "—";

/// US dollars with three significant digits and at least cents: "$0.00841", "$12.35", "$0".
pub fn usd(x: f64) -> String {
    if x == 0.0 {
        return "$0".into();
    }
    let digits = (2 - x.abs().log10().floor() as i32).clamp(2, 10) as usize;
    format!("${x:.digits$}")
}

/// A change in dollars, signed: "+$0.00120", "-$1.50", "+$0".
pub fn usd_change(x: f64) -> String {
    let sign = if x < 0.0 { '-' } else { '+' };
    format!("{sign}{}", usd(x.abs()))
}

/// A share in percent, one decimal: 0.6917 -> "69.2%".
pub fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A difference of shares in signed percentage points: 0.0667 -> "+6.7 pp" ("+0.0 pp" for -0).
pub fn points(x: f64) -> String {
    format!("{:+.1} pp", x * 100.0 + 0.0)
}

/// An interval of differences: "+1.1 to +12.2 pp".
pub fn points_range(lo: f64, hi: f64) -> String {
    // `+ 0.0` turns -0.0 into +0.0.
    format!("{:+.1} to {:+.1} pp", lo * 100.0 + 0.0, hi * 100.0 + 0.0)
}

/// The confidence level of an interval at significance level `alpha`: 0.05 -> "95%",
/// 0.001 -> "99.9%".
pub fn confidence(alpha: f64) -> String {
    share(1.0 - alpha)
}

/// A proportion someone chose (a target power, a level, an axis tick), in whole percent unless
/// that would hide a digit they wrote: 0.8 -> "80%", 0.975 -> "97.5%". A measured proportion is
/// [`percent`], whose fixed decimal says how precise it is.
pub fn share(x: f64) -> String {
    let level = format!("{:.1}", x * 100.0);
    format!("{}%", level.strip_suffix(".0").unwrap_or(&level))
}

/// A p-value: "0.039", or "< 0.001" (three decimals cannot say more, and more would be noise).
pub fn p_value(x: f64) -> String {
    if x < 0.001 { "< 0.001".into() } else { format!("{x:.3}") }
}

/// A p-value in a sentence: "p = 0.012", "p < 0.001".
pub fn p_eq(x: f64) -> String {
    if x < 0.001 { "p < 0.001".into() } else { format!("p = {x:.3}") }
}

/// A count with its digits grouped: 51234 -> "51,234".
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A counted noun with a regular plural: "1 part", "2 parts", "0 parts", "1,200 items".
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{} {noun}s", count(n)) }
}

/// `show(x)`, or [`MISSING`] when there is no `x`.
pub fn or_missing<T>(x: Option<T>, show: impl FnOnce(T) -> String) -> String {
    x.map(show).unwrap_or_else(|| MISSING.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_levels_show_a_decimal_only_when_needed() {
        assert_eq!(confidence(0.05), "95%");
        assert_eq!(confidence(0.1), "90%");
        assert_eq!(confidence(0.001), "99.9%");
    }

    #[test]
    fn a_chosen_share_reads_as_written_and_a_measured_one_keeps_its_decimal() {
        assert_eq!(share(0.8), "80%");
        assert_eq!(share(0.975), "97.5%");
        assert_eq!(share(0.7000000000000001), "70%");
        assert_eq!(percent(0.8), "80.0%");
    }

    #[test]
    fn dollars_have_three_significant_digits_and_at_least_cents() {
        assert_eq!(usd(0.0084123), "$0.00841");
        assert_eq!(usd(0.0000920), "$0.0000920");
        assert_eq!(usd(0.5), "$0.500");
        assert_eq!(usd(12.3456), "$12.35");
        assert_eq!(usd(1234.5), "$1234.50");
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd_change(-0.0012), "-$0.00120");
        assert_eq!(usd_change(1.5), "+$1.50");
        assert_eq!(usd_change(0.0), "+$0");
    }

    #[test]
    fn shares_read_as_percent_and_differences_as_points() {
        assert_eq!(percent(0.6917), "69.2%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(points(0.0667), "+6.7 pp");
        assert_eq!(points(-0.08), "-8.0 pp");
        assert_eq!(points(-0.0), "+0.0 pp");
        assert_eq!(points_range(0.011, 0.122), "+1.1 to +12.2 pp");
        assert_eq!(points_range(-0.0, 0.0004), "+0.0 to +0.0 pp");
    }

    #[test]
    fn p_values_stop_at_three_decimals() {
        assert_eq!(p_value(0.0004), "< 0.001");
        assert_eq!(p_value(0.0386), "0.039");
        assert_eq!(p_value(0.72656), "0.727");
        assert_eq!(p_eq(0.012), "p = 0.012");
        assert_eq!(p_eq(0.0), "p < 0.001");
    }

    #[test]
    fn counts_group_digits_and_nouns_agree_with_them() {
        assert_eq!(count(51234), "51,234");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(12), "12");
        assert_eq!(count(0), "0");
        assert_eq!(plural(1, "part"), "1 part");
        assert_eq!(plural(2, "part"), "2 parts");
        assert_eq!(plural(0, "file"), "0 files");
        assert_eq!(plural(1200, "item"), "1,200 items");
        assert_eq!(or_missing(None::<f64>, percent), "—");
        assert_eq!(or_missing(Some(0.5), percent), "50.0%");
    }
}
