//! What the pages show, read from commits: the history of every run, and one run's trials with
//! their statistics and costs (as the aggregate report reads them, so the same charts draw).
use std::collections::BTreeMap;

use serde_json::Value;

use super::{Error, Result};
use crate::diff::store::TreeSource;
use crate::eval::report::{AggTrial, Aggregate};
use crate::runfiles::figures;
use crate::runfiles::layout::{self, RunFiles, TrialFiles};
use crate::runfiles::source::{Entry, Kind, Source};
use crate::store::{Commit, ObjectId, Repo};

/// One commit in the history, with the refs that name it.
pub(crate) struct HistoryEntry {
    pub id: ObjectId,
    pub commit: Commit,
    pub refs: Vec<String>,
}

/// Every commit reachable from a ref, newest first.
pub(crate) fn history(repo: &Repo) -> Result<Vec<HistoryEntry>> {
    let refs = repo.refs.list("")?;
    let mut tips: Vec<ObjectId> = refs.iter().map(|(_, id)| *id).collect();
    // A detached HEAD (a commit checked out by id) may be named by no ref.
    tips.extend(repo.refs.read(&crate::store::RefName::head())?);
    let mut names: BTreeMap<ObjectId, Vec<String>> = BTreeMap::new();
    for (name, id) in &refs {
        names.entry(*id).or_default().push(name.to_string());
    }
    Ok(repo
        .log(&tips, None)?
        .into_iter()
        .map(|(id, commit)| HistoryEntry {
            refs: names.remove(&id).unwrap_or_default(),
            id,
            commit,
        })
        .collect())
}

/// A commit, checked to be one (a 404 otherwise).
pub(crate) fn commit(repo: &Repo, id: &ObjectId) -> Result<Commit> {
    match repo.read_commit(id) {
        Ok(c) => Ok(c),
        Err(crate::store::Error::MissingObject { .. } | crate::store::Error::WrongKind { .. }) => {
            Err(Error::not_found(format!("commit {}", id.short())))
        }
        Err(e) => Err(e.into()),
    }
}

/// One run as its pages show it.
pub(crate) struct Run {
    pub id: ObjectId,
    pub commit: Commit,
    pub files: RunFiles,
    /// The trials' statistics and costs, in `files.trials` order.
    pub agg: Aggregate,
}

impl Run {
    pub fn trial(&self, slug: &str) -> Result<&TrialFiles> {
        self.files
            .trials
            .iter()
            .find(|t| t.slug == slug)
            .ok_or_else(|| Error::not_found(format!("trial {slug} in run {}", self.commit.run_id)))
    }
}

pub(crate) fn run(repo: &Repo, id: &ObjectId) -> Result<Run> {
    let commit = commit(repo, id)?;
    let src = TreeSource::new(repo, commit.tree);
    let files = layout::scan(&src)?;
    let mut trials = Vec::with_capacity(files.trials.len());
    for t in &files.trials {
        let info = match &t.trial_json {
            Some(e) => serde_json::from_slice::<Value>(&src.read(e)?).ok(),
            None => None,
        };
        let text = |k: &str| info.as_ref()?.get(k)?.as_str().map(str::to_string);
        let sig: Option<crate::stats::Significance> = match &t.significance {
            Some(e) => serde_json::from_slice(&src.read(e)?).ok(),
            None => None,
        };
        let costs = match &t.costs {
            Some(e) => figures::parse_costs(&src.read(e)?).ok(),
            None => None,
        };
        let summary = commit.summary.trials.iter().find(|s| s.slug == t.slug);
        trials.push(AggTrial {
            slug: t.slug.clone(),
            path: t.path.clone(),
            status: summary.and_then(|s| s.status.clone()),
            model: text("model"),
            prompt_set: text("prompt_set"),
            decoding: info.as_ref().and_then(|i| i.get("decoding")?.as_object().cloned()),
            holm_p: sig.as_ref().and_then(|s| s.holm_p).or(summary.and_then(|s| s.holm_p)),
            manifest_usd: summary.and_then(|s| s.usd),
            sig,
            costs,
        });
    }
    let alpha = trials.iter().find_map(|t| t.sig.as_ref().map(|s| s.alpha)).unwrap_or(0.05);
    let agg = Aggregate {
        run_id: Some(commit.run_id.clone()),
        status: commit.status.clone(),
        alpha,
        trials,
        totals: None,
    };
    Ok(Run { id: *id, commit, files, agg })
}

/// The text of a file in a snapshot (lossy UTF-8), for config and prompt views.
pub(crate) fn text(src: &dyn Source, e: &Entry) -> Result<String> {
    Ok(super::items::capped(&String::from_utf8_lossy(&src.read(e)?)))
}

/// Every prompt file of a run (`config/prompts/…`), path and text, for the prompt diff.
pub(crate) fn prompts(repo: &Repo, commit: &Commit) -> Result<BTreeMap<String, String>> {
    let src = TreeSource::new(repo, commit.tree);
    let mut out = BTreeMap::new();
    let root = src.root();
    let Some(config) = src.list(&root)?.into_iter().find(|e| e.name == "config") else {
        return Ok(out);
    };
    let mut stack = vec![("config".to_string(), config)];
    while let Some((path, dir)) = stack.pop() {
        for e in src.list(&dir)? {
            let p = format!("{path}/{}", e.name);
            match e.kind {
                Kind::Dir if stack.len() < 64 => stack.push((p, e)),
                Kind::File if p != "config/eval_config.yaml" => {
                    out.insert(p, text(&src, &e)?);
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The resolved config's text, when the run has one.
pub(crate) fn config_text(
    repo: &Repo,
    commit: &Commit,
    files: &RunFiles,
) -> Result<Option<String>> {
    let src = TreeSource::new(repo, commit.tree);
    files.config.as_ref().map(|(_, e)| text(&src, e)).transpose()
}
