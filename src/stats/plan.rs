//! Planning from a pilot: how many items a trial needs for its headline test to detect a
//! target effect with a target power (`exp power`). The pilot supplies what the effect alone
//! cannot: how often items disagree between conditions (McNemar) or how much item and cluster
//! differences spread (sign-flip tests).
use serde::Serialize;

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

/// What a plan aims for: an effect per item detected with probability `power` by the test at
/// level `alpha`; `seed` seeds the simulated sign-flip tests.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub effect: f64,
    pub power: f64,
    pub alpha: f64,
    pub seed: u64,
}

/// The plan for `design` from the pilot's per-item differences `p`.
pub fn plan(design: Design, p: &Paired, aim: Target) -> Plan {
    let Target { effect, power: target, alpha, seed } = aim;
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
                "the pilot's discordance ({}) is below the effect: assumed {} (every \
                 discordant item favouring treatment)",
                crate::display::percent(discordance),
                crate::display::percent(pd)
            ));
        }
        out.power_at_pilot_size = power::mcnemar_power(n as u64, pd, effect, alpha);
        out.items_needed = power::mcnemar_items_needed(pd, effect, alpha, target);
        out.method = "exact power of the exact McNemar test at the pilot's discordance".into();
        return out;
    }
    let (sums, sizes) = headline::unit_sums(p);
    let g = sums.len();
    let items: f64 = sizes.iter().sum();
    let mean = sums.iter().sum::<f64>() / items.max(1.0);
    let unit_var = sums.iter().zip(&sizes).map(|(s, m)| (s - mean * m).powi(2)).sum::<f64>()
        / (g as f64).max(1.0);
    let mean_size = items / (g as f64).max(1.0);
    out.power_at_pilot_size = if g <= power::SIMULATION_UNITS_LIMIT {
        power::SignFlipPower::new(&sums, &sizes, alpha, seed).power(effect)
    } else {
        power::normal_power(g as f64, unit_var, mean_size, effect, alpha)
    };
    let needed = power::sign_flip_units_needed(&sums, &sizes, effect, alpha, target, seed);
    let units = needed.map(|n| n.units);
    out.items_needed = units.map(|u| (u as f64 * mean_size).ceil() as u64);
    if out.test.clustered() {
        out.clusters_needed = units;
    }
    if unit_var == 0.0 {
        out.note = Some(
            "the pilot's items never differ between conditions: no spread to plan from".into(),
        );
    }
    let at_pilot = if g <= power::SIMULATION_UNITS_LIMIT {
        "pilot power simulated"
    } else {
        "pilot power by the normal approximation"
    };
    out.method = format!(
        "power of the {} from the pilot's {g} units resampled (seed {seed}): {at_pilot}; {}",
        out.test.label(),
        super::significance::units_needed_method(needed)
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
        let aim = Target { effect: 0.05, power: 0.8, alpha: 0.05, seed: 0 };
        let p = plan(design, &Paired { d: &d, groups: None }, aim);
        let n = p.items_needed.unwrap();
        assert!(power::mcnemar_power(n, 0.2, 0.05, 0.05) >= 0.8);
        assert!(p.power_at_pilot_size < 0.8 && n > 400);
    }
}
