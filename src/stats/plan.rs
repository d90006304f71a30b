//! Planning from a pilot: how many items a trial needs for its headline test to detect a
//! target effect with a target power (`exp power`). The pilot supplies what the effect alone
//! cannot: how often items disagree between conditions (McNemar) or how much item and cluster
//! differences spread (sign-flip tests).
use serde::Serialize;

use super::dist::norm_ppf;
use super::headline::{self, Design, Paired, Test};
use super::power;

/// Items needed per trial, and what the pilot says now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub test: Test,
    /// Target effect (treatment − control per item) and power, at level alpha.
    pub effect: f64,
    pub power: f64,
    pub alpha: f64,
    /// Items of the pilot scored in both conditions.
    pub pilot_items: usize,
    /// Share of pilot items whose scores differ between conditions.
    pub pilot_discordance: f64,
    /// Power the pilot's own size has for the target effect.
    pub power_at_pilot_size: f64,
    pub items_needed: Option<u64>,
    /// With clusters: clusters needed (of the pilot's mean size).
    pub clusters_needed: Option<u64>,
    pub method: String,
    /// Why there is no figure, or what was assumed.
    pub note: Option<String>,
}

/// The plan for `design` from the pilot's per-item differences `p`.
pub fn plan(design: Design, p: &Paired, effect: f64, target: f64, alpha: f64) -> Plan {
    let n = p.d.len();
    let design = headline::effective(design, p);
    let effect = effect.abs();
    let discordance = p.d.iter().filter(|v| **v != 0.0).count() as f64 / n.max(1) as f64;
    let mut out = Plan {
        test: design.test(),
        effect,
        power: target,
        alpha,
        pilot_items: n,
        pilot_discordance: discordance,
        power_at_pilot_size: 0.0,
        items_needed: None,
        clusters_needed: None,
        method: String::new(),
        note: None,
    };
    if out.test == Test::ExactMcnemar {
        let pd = discordance.max(effect);
        if pd > discordance {
            out.note = Some(format!(
                "the pilot's discordance ({:.1}%) is below the effect: assumed {:.1}% (every \
                 discordant item favouring treatment)",
                discordance * 100.0,
                pd * 100.0
            ));
        }
        out.power_at_pilot_size = power::mcnemar_power(n as u64, pd, effect, alpha);
        out.items_needed = power::mcnemar_items_needed(pd, effect, alpha, target);
        out.method = "exact power of the exact McNemar test at the pilot's discordance".into();
        return out;
    }
    let (sums, sizes) = headline::unit_sums(p);
    let g = sums.len() as f64;
    let items: f64 = sizes.iter().sum();
    let mean = sums.iter().sum::<f64>() / items.max(1.0);
    let unit_var =
        sums.iter().zip(&sizes).map(|(s, m)| (s - mean * m).powi(2)).sum::<f64>() / g.max(1.0);
    let mean_size = items / g.max(1.0);
    out.power_at_pilot_size = power::normal_power(g, unit_var, mean_size, effect, alpha);
    let units = power::normal_units_needed(unit_var, mean_size, effect, alpha, target);
    out.items_needed = units.map(|u| (u as f64 * mean_size).ceil() as u64);
    if out.test.clustered() {
        out.clusters_needed = units;
    }
    if unit_var == 0.0 {
        out.note = Some(
            "the pilot's items never differ between conditions: no spread to plan from".into(),
        );
    }
    out.method = format!(
        "normal approximation of the {}: units = ((z(1−α/2) + z(power))·σ_unit / (effect·m))², \
         σ_unit from the pilot (z sum {:.3})",
        out.test.label(),
        norm_ppf(1.0 - alpha / 2.0) + norm_ppf(target)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mcnemar_plan_reaches_the_target_power() {
        let mut d = vec![0.0; 400];
        d[..50].iter_mut().for_each(|v| *v = 1.0);
        d[50..80].iter_mut().for_each(|v| *v = -1.0);
        let design = Design { binary: true, repeats: 1, clustered: false };
        let p = plan(design, &Paired { d: &d, groups: None }, 0.05, 0.8, 0.05);
        let n = p.items_needed.unwrap();
        assert!(power::mcnemar_power(n, 0.2, 0.05, 0.05) >= 0.8);
        assert!(p.power_at_pilot_size < 0.8 && n > 400);
    }
}
