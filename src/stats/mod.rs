//! Statistics of paired prompt experiments: pure estimators and tests, no I/O.
//!
//! Every trial runs control and treatment on the same items, so its results are paired; the
//! methods follow Miller (2024), "Adding Error Bars to Evals" (arXiv 2411.00640). This module
//! owns the numbers, never files or printing: `crate::eval::report` reads the run files, calls
//! [`analyze`] and writes what it returns. Every closed form is checked against scipy/statsmodels
//! in `tests/stats.rs` (numbers from `scripts/stats_reference.py`).
//!
//! - [`dist`]: normal quantile, Binomial(n, ½) tail, incomplete beta (binomial, Beta, Student t).
//! - [`estimate`]: mean, SE and CI per condition (Wilson or Clopper–Pearson for proportions,
//!   CLT otherwise, t on G − 1 df with clusters), cluster-robust SE.
//! - [`classes`]: resampling by counts when units take few distinct values (0/1 scores).
//! - [`paired`]: exact McNemar and its interval, paired bootstrap, sign-flip test on non-zero
//!   differences.
//! - [`signflip`]: the headline sign-flip test on items or clusters and the interval inverting it.
//! - [`headline`]: the decision table — which test and interval the design calls for, and why.
//! - [`power`]: exact power of exact McNemar, simulated power of the sign-flip test, and the
//!   items each needs (exact search; simulated search on the number of units).
//! - [`plan`]: items a trial needs for a target effect, from a pilot (`exp power`).
//! - [`repeats`]: pass@k, pass^k, per-item pass rates, within/between-item variance.
//! - [`between`]: run B against run A item by item (`exp diff`), and the change in the effect.
//! - [`multiple`]: Holm across trials.
//! - [`significance`]: all of the above for one trial, as `results/significance.json`.
//!
//! docs/STATISTICS.md explains every method, with references.
//!
//! # `results/significance.json` (format 2)
//! ```json
//! {"format": 2,
//!  "effect": 0.0667, "p_value": 0.0768, "p_method": "exact McNemar (…)", "holm_p": 0.15,
//!  "alpha": 0.05, "seed": 0, "bootstrap_resamples": 10000, "power": 0.8,
//!  "score_kind": "binary" | "continuous" | null, "repeats": 1,
//!  "n_items": 120, "n_paired": 118, "clusters": 15 | null,
//!  "headline": {"test": "exact_mcnemar" | "sign_flip_items" | "sign_flip_clusters"
//!                      | "t_items" | "t_clusters",
//!               "why": "0/1 scores, one repeat, no clusters: …", "unit": "items", "n_units": 118,
//!               "n_items": 118, "effect": 0.0667, "p_value": 0.0768, "ci": [-0.01, 0.18],
//!               "ci_method": "…", "ci_note": null, "method": "…", "exact": true,
//!               "resamples": null, "seed": null},
//!  "failures": {"control_failed": 2, "treatment_failed": 0, "unpaired_items": 2},
//!  "conditions": {"control": {"rows": 120, "scored": 118, "failed": 2, "items": 118,
//!                             "mean": 0.69, "se": 0.042, "ci": [0.60, 0.77], "method": "95% Wilson score interval"},
//!                 "treatment": {…}},
//!  "difference": {"n": 118, "mean": 0.0667, "se": 0.028, "ci": [0.011, 0.122], "method": "… (secondary …)",
//!                 "improved": 12, "worsened": 4, "unchanged": 102},
//!  "mcnemar": {"control_only": 4, "treatment_only": 12, "n_discordant": 16, "p_value": 0.0768, "method": "…"},
//!  "bootstrap": {"ci": [0.017, 0.125], "resamples": 10000, "seed": 0, "unit": "items", "method": "…"},
//!  "permutation": {"p_value": 0.077, "n_nonzero": 16, "exact": true, "resamples": null, "seed": null,
//!                  "unit": "items", "method": "…"},
//!  "mde": {"value": 0.095, "power": 0.8, "discordance": 0.136, "method": "…"} | null,
//!  "power_analysis": {"test": "exact_mcnemar", "target": 0.8, "max_effect": 0.136,
//!                     "power_at_max": 0.999, "mde": 0.095, "needed_for_effect": 0.0667,
//!                     "items_needed": 250, "clusters_needed": null, "method": "…"},
//!  "repeats_by_condition": {"control": {"k": 3, "items_with_k": 118, "pass_at_k": 0.8,
//!                           "pass_all_k": 0.5, "item_pass_rate": {"mean": 0.66, "always": 59,
//!                           "never": 20, "mixed": 39}, "within_item_variance": 0.09,
//!                           "between_item_variance": 0.14, "within_share": 0.39, "method": "…"}, …},
//!  "not_computed": [{"what": "…", "reason": "…"}]}
//! ```
//! `effect` is treatment − control over items scored in both conditions (failures beside it in
//! `failures`). `effect`, `p_value` and `p_method` repeat the `headline` block: the test the
//! design calls for (see [`headline`]) and the interval that inverts it. `difference`,
//! `bootstrap`, `permutation` and (with clusters) `mcnemar` are secondary figures.
//! `holm_p` is null until the run's aggregate step adjusts across trials. Any block or figure
//! that cannot be computed is null and `not_computed` says why; no field is ever NaN.
pub mod between;
pub mod classes;
pub mod dist;
pub mod estimate;
pub mod headline;
pub mod multiple;
pub mod paired;
pub mod plan;
pub mod power;
pub mod repeats;
pub mod signflip;
pub mod significance;

pub use multiple::holm;
pub use significance::{ScoreRow, Settings, Significance, Tally, analyze};
