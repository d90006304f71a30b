//! `exp ingest`: batch output files from anywhere (OpenAI's output and error files, vLLM's
//! `run-batch` output; any name, recognized by content) answer the pending requests of a run.
//!
//! Two passes over the files: the first checks every line (bounds, shape, whose request it
//! answers) and writes nothing, so a malformed file leaves the run as it was; the second appends
//! the answers to the journals, exactly as live answers are appended.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::lines::Outcome;
use super::outputs::{self, Bounds};
use super::{BatchError, BatchJob, Routes};
use crate::eval::journal::{self, Journal, Status, Syncer};
use crate::eval::providers::redact::Redactor;
use crate::runfiles::{RunJson, RunStatus};

/// Warnings shown one by one; the rest are counted.
const MAX_WARNINGS: usize = 20;

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ingested {
    /// Lines journaled: answers and recorded failures.
    pub journaled: u64,
    pub failures: u64,
    /// Lines saying the batch never ran the request (expired, cancelled): still pending.
    pub not_run: u64,
    pub warnings: Vec<String>,
}

/// The newest run (by start time) whose status is `awaiting_outputs`.
pub fn latest_awaiting(experiments: &Path) -> Result<RunJson, BatchError> {
    let mut best: Option<RunJson> = None;
    for entry in std::fs::read_dir(experiments).into_iter().flatten().flatten() {
        let path = entry.path().join(crate::runfiles::RUN_JSON);
        let Ok(Some(rj)) = crate::runfiles::read_json::<RunJson>(&path) else { continue };
        if rj.status == RunStatus::AwaitingOutputs
            && best.as_ref().is_none_or(|b| rj.started_at > b.started_at)
        {
            best = Some(rj);
        }
    }
    best.ok_or_else(|| BatchError::NoRunAwaiting { dir: experiments.to_path_buf() })
}

/// Journals the answers in `files` to the pending requests of `jobs`.
pub fn ingest(
    run_id: &str,
    files: &[PathBuf],
    jobs: &[BatchJob],
    max_response_bytes: u64,
    fsync: bool,
) -> Result<Ingested, BatchError> {
    let mut routes = Routes::new(jobs)?;
    let bounds = Bounds::for_run(max_response_bytes, routes.pending_count() + done_count(jobs));
    // Outputs carry no key of ours, but may quote anyone's credentials.
    let redactor = Redactor::new(None);
    let mut out = Ingested::default();
    let mut warnings = Vec::new();
    let mut seen: HashSet<(usize, String)> = HashSet::new();
    let mut lines = 0;
    let mut matched = 0;
    for path in files {
        lines += outputs::read(path, bounds, &redactor, |line, id, outcome| {
            let at = format!("{}:{line}", path.display());
            match routes.route(&id, jobs) {
                None => warnings.push(format!(
                    "{at}: custom_id `{id}` is not a request of run `{run_id}`; skipped"
                )),
                Some((job, cid)) => {
                    matched += 1;
                    if jobs[job].done.contains(&cid) {
                        warnings.push(format!(
                            "{at}: `{id}` was answered already; the earlier answer is kept"
                        ));
                    } else if !seen.insert((job, cid)) && !matches!(outcome, Outcome::NotRun { .. })
                    {
                        warnings.push(format!(
                            "{at}: `{id}` is answered twice; the first answer is kept"
                        ));
                    }
                }
            }
            Ok(())
        })?;
    }
    if matched == 0 {
        return Err(BatchError::NothingMatched { run_id: run_id.into(), lines });
    }
    let syncer = Syncer::start(fsync);
    let mut open: HashMap<usize, Arc<Journal>> = HashMap::new();
    for path in files {
        outputs::read(path, bounds, &redactor, |_, id, outcome| {
            let Some((job, cid)) = routes.route(&id, jobs) else { return Ok(()) };
            if !routes.is_pending(job, &cid) {
                return Ok(());
            }
            match outcome {
                Outcome::NotRun { .. } => out.not_run += 1,
                Outcome::Answered(mut entry) => {
                    entry.custom_id = cid.clone();
                    let j = match open.get(&job) {
                        Some(j) => j.clone(),
                        None => {
                            let j = journal::open(&jobs[job].journal)?;
                            open.insert(job, j.clone());
                            j
                        }
                    };
                    j.append(&entry, &syncer)?;
                    out.journaled += 1;
                    if entry.status == Status::Error {
                        out.failures += 1;
                    }
                    routes.answered(job, &cid);
                }
            }
            Ok(())
        })?;
    }
    syncer.finish()?;
    let extra = warnings.len().saturating_sub(MAX_WARNINGS);
    warnings.truncate(MAX_WARNINGS);
    if extra > 0 {
        warnings.push(format!("… and {extra} more such lines"));
    }
    out.warnings = warnings;
    Ok(out)
}

fn done_count(jobs: &[BatchJob]) -> usize {
    jobs.iter().map(|j| j.done.len()).sum()
}
