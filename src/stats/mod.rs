//! Statistics of paired prompt experiments: pure estimators and tests, no I/O.
//!
//! Every trial runs control and treatment on the same items, so its results are paired; the
//! methods follow Miller (2024), "Adding Error Bars to Evals" (arXiv 2411.00640). This module
//! owns the numbers, never files or printing: `crate::eval::report` reads the run files, calls
//! [`analyze`] and writes what it returns. Every closed form is checked against scipy/statsmodels
//! in `tests/stats.rs` (numbers from `scripts/stats_reference.py`).
//!
//! - [`dist`]: normal quantile, Binomial(n, ½) tail.
//! - [`estimate`]: mean, SE and CI per condition (Wilson for proportions, CLT otherwise),
//!   cluster-robust SE.
//! - [`paired`]: exact McNemar, paired bootstrap, sign-flip permutation test, minimum detectable
//!   effect.
//! - [`multiple`]: Holm across trials.
//! - [`significance`]: all of the above for one trial, as `results/significance.json`.
//!
//! # `results/significance.json` (format 1)
//! ```json
//! {"format": 1,
//!  "effect": 0.0667, "p_value": 0.0386, "p_method": "exact McNemar (…)", "holm_p": 0.077,
//!  "alpha": 0.05, "seed": 0, "bootstrap_resamples": 10000, "power": 0.8,
//!  "score_kind": "binary" | "continuous" | null, "repeats": 1,
//!  "n_items": 120, "n_paired": 118, "clusters": 15 | null,
//!  "conditions": {"control": {"rows": 120, "scored": 118, "failed": 2, "items": 118,
//!                             "mean": 0.69, "se": 0.042, "ci": [0.60, 0.77], "method": "95% Wilson score interval"},
//!                 "treatment": {…}},
//!  "difference": {"n": 118, "mean": 0.0667, "se": 0.028, "ci": [0.011, 0.122], "method": "…",
//!                 "improved": 12, "worsened": 4, "unchanged": 102},
//!  "mcnemar": {"control_only": 4, "treatment_only": 12, "n_discordant": 16, "p_value": 0.0386, "method": "…"},
//!  "bootstrap": {"ci": [0.017, 0.125], "resamples": 10000, "seed": 0, "unit": "items", "method": "…"},
//!  "permutation": {"p_value": 0.04, "n_nonzero": 16, "exact": true, "resamples": null, "seed": null,
//!                  "unit": "items", "method": "…"},
//!  "mde": {"value": 0.081, "power": 0.8, "discordance": 0.136, "method": "…"},
//!  "not_computed": [{"what": "…", "reason": "…"}]}
//! ```
//! `effect` is treatment − control. `p_value`/`p_method` are the headline test: exact McNemar
//! for 0/1 scores with one repeat, the sign-flip permutation test on item means otherwise.
//! `holm_p` is null until the run's aggregate step adjusts across trials. Any block or figure
//! that cannot be computed is null and `not_computed` says why; no field is ever NaN.
pub mod between;
pub mod dist;
pub mod estimate;
pub mod headline;
pub mod multiple;
pub mod paired;
pub mod power;
pub mod repeats;
pub mod signflip;
pub mod significance;

pub use multiple::holm;
pub use significance::{ScoreRow, Settings, Significance, Tally, analyze};
