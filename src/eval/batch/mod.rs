//! Requests through batch files instead of one by one: the Batch API backend
//! (`models[].backend: batch`, [`backend`]), file mode (`exp run --backend files`, [`files`]) and
//! `exp ingest` ([`ingest`]), which share how requests become batch input files ([`chunks`]) and
//! how output files become journal entries ([`outputs`]).
//!
//! Within a batch file a request's `custom_id` is `<trial slug>/<custom_id of inputs/>`: the
//! same item is asked in every trial, and an output file names no trial, so only the prefix says
//! whose journal an answer belongs to. Answers go to the same journals as live answers, so
//! results, statistics, resume and costs do not know how they were obtained.
//!
//! Never here: printing, sending a key anywhere but the `Authorization` header, trusting an
//! output file's sizes or nesting.
pub mod api;
pub mod backend;
pub mod chunks;
pub mod files;
pub mod ingest;
pub mod ledger;
pub mod lines;
pub mod outputs;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::error::Hint;
use crate::eval::journal::JournalError;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Provider(#[from] crate::eval::providers::ProviderError),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}, line {line}: {problem}")]
    Line { path: PathBuf, line: usize, problem: String },
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("batch API of model `{model}`: {problem}")]
    Api { model: String, problem: String },
    #[error("none of the {lines} output lines answers a pending request of run `{run_id}`")]
    NothingMatched { run_id: String, lines: usize },
    #[error("no run awaits batch outputs in {dir}")]
    NoRunAwaiting { dir: PathBuf },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl Hint for BatchError {
    fn hint(&self) -> Option<String> {
        match self {
            BatchError::Journal(e) => e.hint(),
            BatchError::Provider(e) => e.hint(),
            BatchError::Read { .. } => Some("check the path and its permissions".into()),
            BatchError::Write { .. } => {
                Some("check the disk has space and the run folder is writable".into())
            }
            BatchError::Line { .. } | BatchError::File { .. } => Some(
                "give exp ingest the output or error files of a batch (JSONL, one {\"custom_id\", \"response\", \"error\"} a line), unedited".into(),
            ),
            BatchError::Api { .. } => Some(
                "check base_url and the key; nothing is lost: `exp run --resume` polls the batches already created"
                    .into(),
            ),
            BatchError::NothingMatched { .. } => Some(
                "these outputs belong to another run: name it with --run-id (see experiments/)"
                    .into(),
            ),
            BatchError::NoRunAwaiting { .. } => Some(
                "start one with `exp run --backend files`, or name a run with --run-id".into(),
            ),
            BatchError::Runtime(_) => None,
        }
    }
}

/// Batch file limits: no input file holds more requests or bytes (OpenAI: 50,000 and 200 MB).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_requests: usize,
    pub max_bytes: u64,
}

/// A job whose requests go through batch files.
#[derive(Debug, Clone)]
pub struct BatchJob {
    pub slug: String,
    /// The model's name in the config (batch files never mix models).
    pub model: String,
    pub inputs: PathBuf,
    pub journal: PathBuf,
    /// custom_ids (of inputs/) answered already: never in a batch again.
    pub done: HashSet<String>,
}

/// The custom_id of a request in a batch file.
pub fn batch_id(slug: &str, custom_id: &str) -> String {
    format!("{slug}/{custom_id}")
}

/// Which job a batch file's custom_id belongs to, and its custom_id in that job.
pub struct Routes {
    slugs: HashMap<String, usize>,
    /// A bare custom_id (no trial prefix) is accepted when exactly one job has it: the output of
    /// an `inputs/` file sent as is. `None` marks an id several jobs share.
    bare: HashMap<String, Option<usize>>,
    /// custom_ids of each job that are not answered yet.
    pending: Vec<HashSet<String>>,
}

impl Routes {
    /// Reads every job's request ids (not their bodies).
    pub fn new(jobs: &[BatchJob]) -> Result<Routes, BatchError> {
        let mut routes =
            Routes { slugs: HashMap::new(), bare: HashMap::new(), pending: Vec::new() };
        for (i, job) in jobs.iter().enumerate() {
            let mut pending = HashSet::new();
            chunks::for_each_request(&job.inputs, |id, _| {
                if !job.done.contains(id) {
                    pending.insert(id.to_string());
                }
                routes
                    .bare
                    .entry(id.to_string())
                    .and_modify(|j| {
                        if *j != Some(i) {
                            *j = None
                        }
                    })
                    .or_insert(Some(i));
                Ok(())
            })?;
            routes.pending.push(pending);
            routes.slugs.entry(job.slug.clone()).or_insert(i);
        }
        Ok(routes)
    }

    /// The job and custom_id a batch file's custom_id names, if it names a request of the run.
    /// Jobs of one trial share its slug: the custom_id itself (dataset, item, condition) says
    /// which of them.
    pub fn route(&self, id: &str, jobs: &[BatchJob]) -> Option<(usize, String)> {
        if let Some((slug, rest)) = id.split_once('/')
            && self.slugs.contains_key(slug)
        {
            let job = jobs.iter().enumerate().position(|(i, j)| {
                j.slug == slug && (self.pending[i].contains(rest) || j.done.contains(rest))
            })?;
            return Some((job, rest.to_string()));
        }
        match self.bare.get(id) {
            Some(Some(job)) => Some((*job, id.to_string())),
            _ => None,
        }
    }

    pub fn is_pending(&self, job: usize, id: &str) -> bool {
        self.pending[job].contains(id)
    }

    pub fn answered(&mut self, job: usize, id: &str) {
        self.pending[job].remove(id);
    }

    pub fn pending_count(&self) -> usize {
        self.pending.iter().map(HashSet::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_custom_ids_route_by_trial_and_bare_ids_only_when_unambiguous() {
        let d = tempfile::tempdir().unwrap();
        let line = |id: &str| {
            format!(
                "{{\"custom_id\":\"{id}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{}}}}\n"
            )
        };
        let job = |slug: &str, file: &str, ids: &[&str], done: &[&str]| {
            let inputs = d.path().join(file);
            std::fs::write(&inputs, ids.iter().map(|i| line(i)).collect::<String>()).unwrap();
            BatchJob {
                slug: slug.into(),
                model: "m".into(),
                inputs,
                journal: d.path().join(format!("{file}.journal")),
                done: done.iter().map(|s| s.to_string()).collect(),
            }
        };
        let jobs = [
            job("t0", "a", &["d:1:control:r0", "d:2:control:r0"], &["d:2:control:r0"]),
            job("t0", "b", &["d:1:treatment:r0"], &[]),
            job("t1", "c", &["d:1:control:r0", "d:9:control:r0"], &[]),
        ];
        let mut r = Routes::new(&jobs).unwrap();
        assert_eq!(r.pending_count(), 4);
        assert_eq!(r.route("t0/d:1:treatment:r0", &jobs), Some((1, "d:1:treatment:r0".into())));
        assert_eq!(r.route("t1/d:1:control:r0", &jobs), Some((2, "d:1:control:r0".into())));
        assert_eq!(r.route("t0/d:2:control:r0", &jobs), Some((0, "d:2:control:r0".into())));
        assert!(!r.is_pending(0, "d:2:control:r0"), "answered before");
        assert_eq!(r.route("t2/d:1:control:r0", &jobs), None, "no such trial");
        assert_eq!(r.route("d:1:control:r0", &jobs), None, "two trials have it");
        assert_eq!(r.route("d:9:control:r0", &jobs), Some((2, "d:9:control:r0".into())));
        r.answered(2, "d:9:control:r0");
        assert_eq!(r.pending_count(), 3);
    }
}
