//! Multiple-comparison correction across the trials of a run.

/// Holm's step-down adjustment (as statsmodels' `multipletests(method="holm")`): sort the m
/// p-values ascending, multiply the k-th smallest by (m − k + 1), make the sequence
/// non-decreasing and cap at 1. Controls the family-wise error rate under any dependence
/// between trials, which share items and often a model. `None` entries (trials whose p-value
/// could not be computed) are left out of the family and stay `None`.
pub fn holm(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut present: Vec<(usize, f64)> =
        p.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v))).collect();
    present.sort_by(|a, b| a.1.total_cmp(&b.1));
    let m = present.len();
    let mut out = vec![None; p.len()];
    let mut running: f64 = 0.0;
    for (k, (i, v)) in present.into_iter().enumerate() {
        running = running.max(((m - k) as f64 * v).min(1.0));
        out[i] = Some(running);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_skips_missing_p_values_and_keeps_order() {
        let adj = holm(&[Some(0.01), None, Some(0.04), Some(0.03)]);
        assert_eq!(adj[1], None);
        assert!((adj[0].unwrap() - 0.03).abs() < 1e-15);
        assert!((adj[3].unwrap() - 0.06).abs() < 1e-15);
        assert!((adj[2].unwrap() - 0.06).abs() < 1e-15);
        assert!(holm(&[]).is_empty());
    }
}
