//! A stored run as the pilot of the next one (`exp power`): each trial's per-item scores, read
//! from the commit as `exp diff` reads them (no checkout needed), become a plan of how many
//! items the trial needs (`crate::stats::plan`).
use serde::Serialize;

use super::Error;
use super::store::TreeSource;
use crate::runfiles::layout;
use crate::runfiles::tables::ScoreTable;
use crate::stats::plan::Plan;
use crate::stats::significance::Tally;
use crate::store::Repo;

/// The plan of every trial of a pilot run.
#[derive(Debug, Clone, Serialize)]
pub struct PilotPlan {
    pub commit: String,
    pub run_id: String,
    pub effect: f64,
    pub power: f64,
    pub alpha: f64,
    pub trials: Vec<TrialPlan>,
}

/// One trial's plan, or why there is none.
#[derive(Debug, Clone, Serialize)]
pub struct TrialPlan {
    pub trial: String,
    pub plan: Option<Plan>,
    pub not_computed: Option<String>,
}

/// Plans every trial of the run `rev` names for a target `effect` and `power` at `alpha`.
pub fn plan_run(
    repo: &Repo,
    rev: &str,
    effect: f64,
    power: f64,
    alpha: f64,
) -> Result<PilotPlan, Error> {
    let (id, commit) = repo.resolve_commit(rev).map_err(Error::Rev)?;
    let src = TreeSource::new(repo, commit.tree);
    let files = layout::scan(&src)?;
    let mut trials = Vec::new();
    for t in &files.trials {
        let (table, problems) = super::read_scores(&src, t)?;
        let (plan, not_computed) = match table {
            Some(table) => {
                let plan = pilot_tally(&table).plan(effect, power, alpha);
                let why = plan
                    .is_none()
                    .then(|| "no item is scored in both control and treatment".to_string());
                (plan, why)
            }
            None => (
                None,
                Some(match problems.first() {
                    Some((path, reason)) => format!("{path}: {reason}"),
                    None => "no per-item scores".into(),
                }),
            ),
        };
        trials.push(TrialPlan { trial: t.slug.clone(), plan, not_computed });
    }
    Ok(PilotPlan { commit: id.to_hex(), run_id: commit.run_id, effect, power, alpha, trials })
}

/// The pilot trial's rows as its own analysis would tally them.
fn pilot_tally(table: &ScoreTable) -> Tally {
    let mut tally = Tally::new();
    for r in &table.rows {
        let cluster = Some(table.cluster(r)).filter(|c| !c.is_empty());
        let key = format!("{}:{}", table.dataset(r), table.item(r));
        tally.add(&key, table.condition(r), r.score.filter(|s| s.is_finite()), cluster);
    }
    tally
}
