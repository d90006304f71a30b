//! exp's statistics against numbers computed independently with scipy, statsmodels and numpy
//! (tests/data/stats_reference.json, written by scripts/stats_reference.py). Closed forms must
//! agree to 1e-9; Monte-Carlo figures within their Monte-Carlo error.
use exp::stats::significance::{CONTROL, ScoreKind, TREATMENT};
use exp::stats::{ScoreRow, Settings, Significance, analyze, dist, estimate, holm, paired};
use serde_json::Value;

const CLOSE: f64 = 1e-9;

fn reference() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/stats_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference file")).expect("json")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(f).collect()
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol, "{what}: got {got}, reference {want}, tolerance {tol}");
}

fn rows_of(case: &Value) -> Vec<ScoreRow> {
    let c = floats(&case["control"]);
    let t = floats(&case["treatment"]);
    let clusters: Option<Vec<String>> = case["clusters"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().expect("label").to_string()).collect());
    let mut rows = Vec::new();
    for (i, (cv, tv)) in c.iter().zip(&t).enumerate() {
        let cluster = clusters.as_ref().map(|cl| cl[i].clone());
        for (cond, score) in [(CONTROL, *cv), (TREATMENT, *tv)] {
            rows.push(ScoreRow {
                item: format!("item{i}"),
                condition: cond.into(),
                score: Some(score),
                cluster: cluster.clone(),
            });
        }
    }
    rows
}

fn settings(alpha: f64) -> Settings {
    Settings { alpha, bootstrap_resamples: 10_000, seed: 0 }
}

#[test]
fn normal_quantiles_match_scipy() {
    for case in reference()["norm_ppf"].as_array().unwrap() {
        let p = f(&case["p"]);
        close(&format!("norm_ppf({p})"), dist::norm_ppf(p), f(&case["x"]), CLOSE);
    }
}

#[test]
fn wilson_intervals_match_statsmodels() {
    for case in reference()["wilson"].as_array().unwrap() {
        let (k, n, alpha) =
            (f(&case["k"]), case["n"].as_u64().unwrap() as usize, f(&case["alpha"]));
        let (lo, hi) = estimate::wilson(k, n, alpha).unwrap();
        close(&format!("wilson lo {k}/{n}"), lo, f(&case["lo"]), CLOSE);
        close(&format!("wilson hi {k}/{n}"), hi, f(&case["hi"]), CLOSE);
    }
}

#[test]
fn exact_mcnemar_matches_statsmodels_and_binomtest() {
    for case in reference()["mcnemar"].as_array().unwrap() {
        let (b, c) = (case["b"].as_u64().unwrap(), case["c"].as_u64().unwrap());
        let p = paired::mcnemar_exact(b, c);
        close(&format!("mcnemar({b},{c}) vs statsmodels"), p, f(&case["p_statsmodels"]), CLOSE);
        close(&format!("mcnemar({b},{c}) vs binomtest"), p, f(&case["p_binomtest"]), CLOSE);
    }
}

#[test]
fn clt_intervals_match_numpy() {
    for case in reference()["clt"].as_array().unwrap() {
        let x = floats(&case["x"]);
        let e = estimate::clt(&x, None, f(&case["alpha"])).unwrap();
        close("clt mean", e.mean, f(&case["mean"]), CLOSE);
        close("clt se", e.se, f(&case["se"]), CLOSE);
        close("clt lo", e.lo, f(&case["lo"]), CLOSE);
        close("clt hi", e.hi, f(&case["hi"]), CLOSE);
    }
}

#[test]
fn paired_differences_match_statsmodels_including_cluster_robust_se() {
    let reference = reference();
    for case in reference["paired"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let alpha = f(&case["alpha"]);
        let sig = analyze(&rows_of(case), &settings(alpha));
        let d = sig.difference.as_ref().unwrap_or_else(|| panic!("{name}: no difference"));
        close(&format!("{name} mean"), d.mean, f(&case["mean_diff"]), CLOSE);
        let want_se =
            if case["se_cluster"].is_null() { &case["se_iid"] } else { &case["se_cluster"] };
        close(&format!("{name} se"), d.se.unwrap(), f(want_se), CLOSE);
        let ci = d.ci.unwrap();
        close(&format!("{name} ci lo"), ci[0], f(&case["ci_lo"]), CLOSE);
        close(&format!("{name} ci hi"), ci[1], f(&case["ci_hi"]), CLOSE);
        close(&format!("{name} mde"), sig.mde.as_ref().unwrap().value, f(&case["mde_80"]), CLOSE);
        assert_eq!(
            sig.clusters,
            case["n_clusters"].as_u64().map(|n| n as usize),
            "{name} clusters"
        );
        for cond in [CONTROL, TREATMENT] {
            let want = &case["conditions"][cond];
            let got = &sig.conditions[cond];
            close(&format!("{name} {cond} mean"), got.mean.unwrap(), f(&want["mean"]), CLOSE);
            close(&format!("{name} {cond} se"), got.se.unwrap(), f(&want["se"]), CLOSE);
            close(&format!("{name} {cond} lo"), got.ci.unwrap()[0], f(&want["lo"]), CLOSE);
            close(&format!("{name} {cond} hi"), got.ci.unwrap()[1], f(&want["hi"]), CLOSE);
        }
        if case["binary"].as_bool().unwrap() {
            let m = sig.mcnemar.as_ref().unwrap_or_else(|| panic!("{name}: no McNemar"));
            close(&format!("{name} mcnemar"), m.p_value, f(&case["mcnemar_p"]), CLOSE);
            assert_eq!(sig.p_value, Some(m.p_value), "{name}: McNemar is the headline test");
            assert_eq!(sig.score_kind, Some(ScoreKind::Binary));
        } else {
            assert!(sig.mcnemar.is_none(), "{name}: no McNemar on continuous scores");
            assert_eq!(sig.p_value, Some(sig.permutation.as_ref().unwrap().p_value));
        }
        if let Some(p) = case.get("perm_p_clusters") {
            let perm = sig.permutation.as_ref().unwrap();
            assert_eq!(perm.unit, "clusters");
            assert!(perm.exact, "{name}: few enough clusters to enumerate");
            close(&format!("{name} cluster sign-flip p"), perm.p_value, f(p), CLOSE);
        }
    }
}

#[test]
fn clusters_of_size_one_give_the_same_figures_as_no_clusters() {
    let reference = reference();
    let cases = reference["paired"].as_array().unwrap();
    let by = |n: &str| cases.iter().find(|c| c["name"] == n).unwrap();
    let plain = analyze(&rows_of(by("binary_120")), &settings(0.05));
    let single = analyze(&rows_of(by("binary_120_singleton_clusters")), &settings(0.05));
    let (a, b) = (plain.difference.unwrap(), single.difference.unwrap());
    close("se", a.se.unwrap(), b.se.unwrap(), 1e-12);
    close("mde", plain.mde.unwrap().value, single.mde.unwrap().value, 1e-12);
    assert_eq!(single.clusters, Some(120));
    assert_eq!(plain.p_value, single.p_value);
}

#[test]
fn exact_sign_flip_p_values_match_scipy_permutation_test() {
    for case in reference()["permutation_exact"].as_array().unwrap() {
        let d = floats(&case["d"]);
        let r = paired::sign_flip_test(&d, 1000, 0);
        assert!(r.exact);
        close(&format!("sign-flip {d:?}"), r.p_value, f(&case["p"]), CLOSE);
    }
}

#[test]
fn sampled_sign_flip_p_values_are_within_monte_carlo_error_of_scipy() {
    const B: u32 = 200_000;
    for case in reference()["permutation_mc"].as_array().unwrap() {
        let d = floats(&case["d"]);
        let want = f(&case["p"]);
        let r = paired::sign_flip_test(&d, B, 0);
        assert!(!r.exact);
        // Four standard errors of our estimate plus four of scipy's.
        let tol =
            4.0 * (want * (1.0 - want) / f64::from(B)).sqrt() + 4.0 * f(&case["reference_sd"]);
        eprintln!(
            "sign-flip n={}: p {:.5} vs scipy {want:.5} (tolerance {tol:.5})",
            d.len(),
            r.p_value
        );
        close(&format!("sign-flip n={}", d.len()), r.p_value, want, tol);
    }
}

#[test]
fn bootstrap_intervals_are_within_monte_carlo_error_of_numpy() {
    for case in reference()["bootstrap"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let alpha = f(&case["alpha"]);
        let sig = analyze(&rows_of(case), &settings(alpha));
        let b = sig.bootstrap.unwrap_or_else(|| panic!("{name}: no bootstrap"));
        assert_eq!(b.resamples, case["resamples"].as_u64().unwrap() as u32);
        let n = floats(&case["control"]).len() as f64;
        // 0/1 scores put the resampled means on a lattice of step 1/n, so a percentile can move
        // by one step from sampling noise alone; continuous scores have no lattice.
        let lattice = if sig.score_kind == Some(ScoreKind::Binary) { 1.0 / n } else { 0.0 };
        let tol_lo = 4.0 * f(&case["mc_sd_lo"]) + lattice + 1e-12;
        let tol_hi = 4.0 * f(&case["mc_sd_hi"]) + lattice + 1e-12;
        eprintln!(
            "{name}: bootstrap [{:.5}, {:.5}] vs numpy [{:.5}, {:.5}] (tolerance {tol_lo:.5}, {tol_hi:.5})",
            b.ci[0],
            b.ci[1],
            f(&case["lo"]),
            f(&case["hi"])
        );
        close(&format!("{name} bootstrap lo"), b.ci[0], f(&case["lo"]), tol_lo);
        close(&format!("{name} bootstrap hi"), b.ci[1], f(&case["hi"]), tol_hi);
    }
}

#[test]
fn holm_adjustment_matches_statsmodels_multipletests() {
    for case in reference()["holm"].as_array().unwrap() {
        let p: Vec<Option<f64>> = floats(&case["p"]).into_iter().map(Some).collect();
        let got = holm(&p);
        for (g, w) in got.iter().zip(floats(&case["adjusted"])) {
            close("holm", g.unwrap(), w, CLOSE);
        }
    }
}

// ---- edge cases ----

fn row(item: &str, cond: &str, score: Option<f64>) -> ScoreRow {
    ScoreRow { item: item.into(), condition: cond.into(), score, cluster: None }
}

fn reason(sig: &Significance, what: &str) -> String {
    sig.not_computed
        .iter()
        .find(|n| n.what == what)
        .map(|n| n.reason.clone())
        .unwrap_or_else(|| panic!("no reason for {what:?} in {:?}", sig.not_computed))
}

/// Every figure present is a finite number (serde_json would quietly write NaN as null), and
/// every missing headline comes with a reason.
fn no_nan(sig: &Significance) {
    let mut figures: Vec<f64> =
        [sig.effect, sig.p_value, sig.holm_p].into_iter().flatten().collect();
    for c in sig.conditions.values() {
        figures.extend(c.mean.into_iter().chain(c.se).chain(c.ci.into_iter().flatten()));
    }
    if let Some(d) = &sig.difference {
        figures.extend([d.mean].into_iter().chain(d.se).chain(d.ci.into_iter().flatten()));
    }
    figures.extend(sig.bootstrap.iter().flat_map(|b| b.ci));
    figures.extend(sig.mcnemar.iter().map(|m| m.p_value));
    figures.extend(sig.permutation.iter().map(|p| p.p_value));
    figures.extend(sig.mde.iter().flat_map(|m| [m.value, m.discordance]));
    assert!(figures.iter().all(|v| v.is_finite()), "{figures:?}");
    if sig.difference.is_none() || sig.p_value.is_none() {
        assert!(!sig.not_computed.is_empty());
    }
}

#[test]
fn all_concordant_items_give_p_one_and_no_nan() {
    let rows: Vec<ScoreRow> = (0..30)
        .flat_map(|i| {
            let s = Some(if i % 3 == 0 { 0.0 } else { 1.0 });
            [row(&i.to_string(), CONTROL, s), row(&i.to_string(), TREATMENT, s)]
        })
        .collect();
    let sig = analyze(&rows, &settings(0.05));
    no_nan(&sig);
    assert_eq!(sig.p_value, Some(1.0));
    assert_eq!(sig.mcnemar.as_ref().unwrap().n_discordant, 0);
    assert_eq!(sig.permutation.as_ref().unwrap().p_value, 1.0);
    let d = sig.difference.as_ref().unwrap();
    assert_eq!((d.mean, d.se, d.ci), (0.0, Some(0.0), Some([0.0, 0.0])));
    assert_eq!(sig.bootstrap.as_ref().unwrap().ci, [0.0, 0.0]);
    assert!(sig.mde.is_none());
    assert!(reason(&sig, "minimum detectable effect").contains("no item scored differently"));
}

#[test]
fn a_single_item_gives_what_it_can_and_says_why_not_the_rest() {
    let rows = vec![row("a", CONTROL, Some(0.0)), row("a", TREATMENT, Some(1.0))];
    let sig = analyze(&rows, &settings(0.05));
    no_nan(&sig);
    assert_eq!(sig.n_paired, 1);
    assert_eq!(sig.effect, Some(1.0));
    assert_eq!(sig.p_value, Some(1.0)); // one discordant pair can never be significant
    // Wilson works at n = 1; the spread of a difference does not.
    assert!(sig.conditions[CONTROL].ci.is_some());
    assert_eq!(sig.difference.as_ref().unwrap().se, None);
    assert!(reason(&sig, "difference standard error").contains("at least 2 items"));
    assert!(sig.bootstrap.is_none());
    assert!(reason(&sig, "bootstrap").contains("at least 2 items"));
}

#[test]
fn one_condition_missing_reports_that_condition_alone() {
    let rows: Vec<ScoreRow> =
        (0..10).map(|i| row(&i.to_string(), TREATMENT, Some(f64::from(i % 2)))).collect();
    let sig = analyze(&rows, &settings(0.05));
    no_nan(&sig);
    assert!(sig.conditions.contains_key(TREATMENT) && !sig.conditions.contains_key(CONTROL));
    close("treatment mean", sig.conditions[TREATMENT].mean.unwrap(), 0.5, 0.0);
    assert!(sig.difference.is_none() && sig.p_value.is_none() && sig.effect.is_none());
    let why = reason(&sig, "paired comparison");
    assert!(why.contains("only the treatment") && why.contains("--baseline"), "{why}");
}

#[test]
fn every_request_failed_gives_no_numbers_and_says_so() {
    let rows: Vec<ScoreRow> = (0..4)
        .flat_map(|i| [row(&i.to_string(), CONTROL, None), row(&i.to_string(), TREATMENT, None)])
        .collect();
    let sig = analyze(&rows, &settings(0.05));
    no_nan(&sig);
    assert_eq!(sig.score_kind, None);
    assert_eq!(sig.conditions[CONTROL].failed, 4);
    assert_eq!(sig.conditions[CONTROL].mean, None);
    assert!(reason(&sig, "control mean").contains("every request failed (4 of 4"));
    assert!(reason(&sig, "paired comparison").contains("no item has a score in both"));
    assert_eq!(sig.p_value, None);
}

#[test]
fn failed_rows_are_left_out_not_counted_as_wrong() {
    let mut rows: Vec<ScoreRow> = (0..6)
        .flat_map(|i| {
            [row(&i.to_string(), CONTROL, Some(1.0)), row(&i.to_string(), TREATMENT, Some(1.0))]
        })
        .collect();
    rows.push(row("7", CONTROL, None));
    rows.push(row("7", TREATMENT, Some(0.0)));
    let sig = analyze(&rows, &settings(0.05));
    assert_eq!(sig.conditions[CONTROL].mean, Some(1.0));
    assert_eq!((sig.conditions[CONTROL].scored, sig.conditions[CONTROL].failed), (6, 1));
    assert_eq!(sig.n_paired, 6);
}

#[test]
fn repeats_use_item_means_and_the_sign_flip_test() {
    // Three repeats per item: item means are thirds, so McNemar does not apply.
    let reference = reference();
    let d_want = floats(&reference["permutation_exact"][4]["d"]);
    let p_want = f(&reference["permutation_exact"][4]["p"]);
    let mut rows = Vec::new();
    for (i, d) in d_want.iter().enumerate() {
        // control k_c of 3 right, treatment k_c + 3d of 3 right.
        let k_c: i64 = if *d < 0.0 { 3 } else { 0 };
        let k_t = k_c + (d * 3.0).round() as i64;
        for r in 0..3 {
            rows.push(row(&i.to_string(), CONTROL, Some(if r < k_c { 1.0 } else { 0.0 })));
            rows.push(row(&i.to_string(), TREATMENT, Some(if r < k_t { 1.0 } else { 0.0 })));
        }
    }
    let sig = analyze(&rows, &settings(0.05));
    no_nan(&sig);
    assert_eq!(sig.repeats, 3);
    assert!(sig.mcnemar.is_none());
    assert!(reason(&sig, "mcnemar").contains("repeats"));
    assert!(sig.p_method.as_deref().unwrap().starts_with("sign-flip"));
    close("repeats sign-flip p", sig.p_value.unwrap(), p_want, CLOSE);
    close("effect", sig.effect.unwrap(), d_want.iter().sum::<f64>() / d_want.len() as f64, 1e-12);
    assert!(sig.conditions[CONTROL].method.as_deref().unwrap().contains("item means over repeats"));
}

#[test]
fn a_single_cluster_has_no_cluster_robust_standard_error() {
    let rows: Vec<ScoreRow> = (0..8)
        .flat_map(|i| {
            let c = ScoreRow {
                cluster: Some("only".into()),
                ..row(&i.to_string(), CONTROL, Some(0.0))
            };
            let t = ScoreRow {
                cluster: Some("only".into()),
                ..row(&i.to_string(), TREATMENT, Some(f64::from(i % 2)))
            };
            [c, t]
        })
        .collect();
    let sig = analyze(&rows, &settings(0.05));
    no_nan(&sig);
    assert_eq!(sig.clusters, Some(1));
    assert_eq!(sig.difference.as_ref().unwrap().se, None);
    assert!(reason(&sig, "difference standard error").contains("at least 2 clusters"));
    assert!(reason(&sig, "bootstrap").contains("at least 2 clusters"));
}

#[test]
fn the_same_seed_gives_the_same_significance_and_another_seed_another_bootstrap() {
    let reference = reference();
    let case = &reference["paired"][4]; // continuous_57
    let a = analyze(&rows_of(case), &settings(0.05));
    let b = analyze(&rows_of(case), &settings(0.05));
    assert_eq!(a, b);
    let c = analyze(&rows_of(case), &Settings { seed: 1, ..settings(0.05) });
    assert_ne!(a.bootstrap.unwrap().ci, c.bootstrap.unwrap().ci);
}
