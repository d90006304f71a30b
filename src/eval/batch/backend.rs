//! The Batch API backend (`models[].backend: batch`): every pending request of the batch jobs
//! goes into batch input files (`<run>/batches/<model>/NNNN.jsonl`), each is uploaded and made a
//! batch, the batches are polled every `execution.batch_poll_s`, and their output and error files
//! are downloaded next to the input (`NNNN.output.jsonl`, `NNNN.error.jsonl`) and journaled by
//! custom_id into the same journals live answers go to.
//!
//! Every step is in the ledger before it is relied on, so a resume (after Ctrl-C, `kill -9`, a
//! reboot) polls the batches that exist and never pays for a request twice. A batch that
//! expired, was cancelled or failed is submitted again for the requests it left unanswered only,
//! up to `execution.max_retries` times; then they are journaled as failures.
//!
//! A budget (`execution.max_usd`) counts every batched request at its maximum cost at batch
//! prices (body bytes as input tokens, its `max_tokens` as output) from the moment it is put in a
//! batch, open batches of earlier invocations included: a request that does not fit is not
//! batched, and the run ends incomplete, as a live run does.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::api::{Api, ApiError, Batch};
use super::chunks::{self, Chunk};
use super::ledger::{ChunkState, Ledger, Record};
use super::lines::Outcome;
use super::outputs::{self, Bounds};
use super::{BatchError, BatchJob, Limits, Routes};
use crate::eval::budget::{self, Budget};
use crate::eval::config::{ModelConfig, Pricing};
use crate::eval::journal::{self, Entry, Journal, Status, Syncer};
use crate::progress::Progress;

/// Where the backend writes its batch files, in the run folder.
pub const FOLDER: &str = "batches";

#[derive(Debug, Clone)]
pub struct Settings {
    pub poll: Duration,
    pub limits: Limits,
    pub max_retries: u32,
    pub timeout: Duration,
    pub max_response_bytes: u64,
    pub fsync: bool,
    pub stop_on_ctrl_c: bool,
    pub budget: Option<Arc<Budget>>,
}

/// What the backend did in this invocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivered {
    pub journaled: u64,
    pub failures: u64,
    /// Batches created now (not found in the ledger).
    pub created: u64,
    pub interrupted: bool,
    /// The budget held requests back.
    pub budget_stopped: bool,
}

pub fn run(
    run_dir: &Path,
    jobs: &[BatchJob],
    models: &[ModelConfig],
    settings: &Settings,
    progress: &dyn Progress,
) -> Result<Delivered, BatchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BatchError::Runtime)?;
    rt.block_on(async {
        let mut apis = HashMap::new();
        for m in models.iter().filter(|m| jobs.iter().any(|j| j.model == m.name)) {
            apis.insert(m.name.clone(), Api::new(m, settings.timeout)?);
        }
        let prices: HashMap<&str, Option<Pricing>> =
            models.iter().map(|m| (m.name.as_str(), m.pricing.map(|p| p.batch()))).collect();
        let mut b = Backend::open(run_dir, jobs, apis, settings, &prices)?;
        b.deliver(progress).await
    })
}

struct Backend<'a> {
    run_dir: &'a Path,
    jobs: &'a [BatchJob],
    apis: HashMap<String, Api>,
    settings: &'a Settings,
    ledger: Ledger,
    states: Vec<ChunkState>,
    routes: Routes,
    journals: HashMap<usize, Arc<Journal>>,
    syncer: Syncer,
    /// The last status each open batch reported, for the progress line.
    seen: HashMap<String, String>,
    /// Consecutive failed calls per chunk; more than `max_retries` stops the run.
    failures: HashMap<String, u32>,
    out: Delivered,
}

impl<'a> Backend<'a> {
    /// Reads the ledger and writes new batch input files for every pending request that no
    /// open batch holds.
    fn open(
        run_dir: &'a Path,
        jobs: &'a [BatchJob],
        apis: HashMap<String, Api>,
        settings: &'a Settings,
        prices: &HashMap<&str, Option<Pricing>>,
    ) -> Result<Backend<'a>, BatchError> {
        let (ledger, states) = Ledger::open(run_dir)?;
        let routes = Routes::new(jobs)?;
        let mut b = Backend {
            run_dir,
            jobs,
            apis,
            settings,
            ledger,
            states,
            routes,
            journals: HashMap::new(),
            syncer: Syncer::start(settings.fsync),
            seen: HashMap::new(),
            failures: HashMap::new(),
            out: Delivered::default(),
        };
        let mut in_flight = HashSet::new();
        let max_cost = |model: &str, body: &[u8]| {
            budget::max_cost(prices.get(model).copied().flatten(), body.len(), max_tokens(body))
        };
        for s in b.states.iter().filter(|s| s.ended.is_none()) {
            chunks::for_each_request(&run_dir.join(&s.chunk), |id, body| {
                // Submitted already: it counts whether or not it fits.
                if let Some(budget) = &settings.budget {
                    budget.reserve(max_cost(&s.model, &body));
                }
                in_flight.insert(id.to_string());
                Ok(())
            })?;
        }
        let mut held_back = false;
        let mut admit = |model: &str, body: &[u8]| match &settings.budget {
            Some(budget) if !budget.reserve(max_cost(model, body)) => {
                held_back = true;
                false
            }
            _ => true,
        };
        let fresh = chunks::write(run_dir, FOLDER, jobs, &in_flight, settings.limits, &mut admit)?;
        b.out.budget_stopped = held_back;
        b.add_chunks(fresh, 0)?;
        Ok(b)
    }

    fn add_chunks(&mut self, fresh: Vec<Chunk>, round: u32) -> Result<(), BatchError> {
        for c in fresh {
            self.ledger.append(&Record::Chunk {
                chunk: c.path.clone(),
                model: c.model.clone(),
                requests: c.requests,
                round,
            })?;
            self.states.push(ChunkState {
                chunk: c.path,
                model: c.model,
                requests: c.requests,
                round,
                ..Default::default()
            });
        }
        Ok(())
    }

    async fn deliver(&mut self, progress: &dyn Progress) -> Result<Delivered, BatchError> {
        let total: usize =
            self.states.iter().filter(|s| s.ended.is_none()).map(|s| s.requests).sum();
        progress.start("batched requests", total as u64, false);
        let ctrl_c = crate::eval::execute::ctrl_c_if(self.settings.stop_on_ctrl_c);
        tokio::pin!(ctrl_c);
        let mut first = true;
        loop {
            let before = self.out.journaled;
            let result = self.step(first).await;
            first = false;
            progress.advance(self.out.journaled - before);
            progress.status(&self.status_line());
            if let Err(e) = result {
                progress.finish();
                self.syncer.finish()?;
                return Err(e);
            }
            if self.states.iter().all(|s| s.ended.is_some()) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll) => {}
                _ = &mut ctrl_c => {
                    self.out.interrupted = true;
                    break;
                }
            }
        }
        progress.finish();
        self.syncer.finish()?;
        Ok(self.out.clone())
    }

    /// One round over the open batch files: upload, create, or poll each, as far as it got.
    /// The first round only submits (a batch just created is not polled at once).
    async fn step(&mut self, submit_only: bool) -> Result<(), BatchError> {
        let open: Vec<usize> =
            (0..self.states.len()).filter(|&i| self.states[i].ended.is_none()).collect();
        for i in open {
            let s = self.states[i].clone();
            let result = match (&s.file_id, &s.batch_id) {
                (None, _) => self.upload(i).await.and(Ok(None)),
                (Some(file_id), None) => self.create(i, file_id).await.and(Ok(None)),
                (Some(_), Some(batch_id)) if !submit_only => {
                    self.api(&s.model)?.get(batch_id).await.map(Some).map_err(ApiOrBatch::Api)
                }
                _ => Ok(None),
            };
            let batch = match result {
                Ok(b) => {
                    self.failures.remove(&s.chunk);
                    b
                }
                Err(e) => {
                    self.call_failed(&s, e)?;
                    continue;
                }
            };
            if let Some(batch) = batch {
                self.seen.insert(s.chunk.clone(), batch.status.clone());
                // A download that fails is tried again at the next poll: nothing is recorded as
                // ended before both files are in, and answers already journaled are not again.
                if batch.ended()
                    && let Err(e) = self.collect(i, &batch).await
                {
                    self.call_failed(&s, e)?;
                }
            }
        }
        Ok(())
    }

    fn api(&self, model: &str) -> Result<&Api, BatchError> {
        self.apis.get(model).ok_or_else(|| BatchError::Api {
            model: model.to_string(),
            problem: "the model is no longer in the config, or no longer `backend: batch`".into(),
        })
    }

    async fn upload(&mut self, i: usize) -> Result<(), ApiOrBatch> {
        let s = self.states[i].clone();
        let path = self.run_dir.join(&s.chunk);
        let content = std::fs::read(&path)
            .map_err(|source| ApiOrBatch::Batch(BatchError::Read { path: path.clone(), source }))?;
        let name = s.chunk.replace('/', "-");
        let file_id = self.api(&s.model)?.upload(&name, content).await?;
        self.ledger
            .append(&Record::Uploaded { chunk: s.chunk.clone(), file_id: file_id.clone() })?;
        self.states[i].file_id = Some(file_id.clone());
        self.create(i, &file_id).await
    }

    /// Creates the batch of an uploaded file, unless the provider already has one made from it
    /// (created just before a crash, never journaled).
    async fn create(&mut self, i: usize, file_id: &str) -> Result<(), ApiOrBatch> {
        let s = self.states[i].clone();
        let api = self.api(&s.model)?;
        let batch = match api.find(file_id).await? {
            Some(b) => b,
            None => {
                let b = api.create(file_id, &s.chunk).await?;
                self.out.created += 1;
                b
            }
        };
        self.ledger
            .append(&Record::Created { chunk: s.chunk.clone(), batch_id: batch.id.clone() })?;
        self.seen.insert(s.chunk.clone(), batch.status.clone());
        self.states[i].batch_id = Some(batch.id);
        Ok(())
    }

    /// A call that failed: retried at the next poll while it may heal, up to `max_retries`
    /// times in a row.
    fn call_failed(&mut self, s: &ChunkState, e: ApiOrBatch) -> Result<(), BatchError> {
        let e = match e {
            ApiOrBatch::Batch(e) => return Err(e),
            ApiOrBatch::Api(e) => e,
        };
        let n = self.failures.entry(s.chunk.clone()).or_default();
        *n += 1;
        if !e.retryable || *n > self.settings.max_retries {
            return Err(BatchError::Api { model: s.model.clone(), problem: e.message });
        }
        tracing::warn!(chunk = %s.chunk, attempt = *n, "batch API call failed, retrying at the next poll: {}", e.message);
        Ok(())
    }

    /// An ended batch: its output and error files into the journals, then what it left
    /// unanswered into a new batch (or, after `max_retries` rounds, into the journals as failures).
    async fn collect(&mut self, i: usize, batch: &Batch) -> Result<(), ApiOrBatch> {
        let s = self.states[i].clone();
        let ids = chunks::ids(self.run_dir, &s.chunk)?;
        let mut answered = HashSet::new();
        let stem = s.chunk.trim_end_matches(".jsonl").to_string();
        let limit =
            (s.requests as u64).saturating_mul(self.settings.max_response_bytes + (64 << 10));
        let bounds = Bounds::for_run(self.settings.max_response_bytes, s.requests);
        let mut journaled = 0;
        for (kind, file) in [("output", &batch.output_file_id), ("error", &batch.error_file_id)] {
            let Some(file) = file else { continue };
            let path = self.run_dir.join(format!("{stem}.{kind}.jsonl"));
            let api = self.api(&s.model)?;
            api.download(file, &path, limit).await?;
            let redactor = api.redactor.clone();
            let mut entries = Vec::new();
            outputs::read(&path, bounds, &redactor, |_, id, outcome| {
                if let (true, Outcome::Answered(entry)) = (ids.contains(&id), outcome) {
                    entries.push((id, entry));
                }
                Ok(())
            })?;
            for (id, entry) in entries {
                if answered.insert(id.clone()) {
                    journaled += self.journal(&id, entry)?;
                }
            }
        }
        let unanswered: HashSet<String> = ids.difference(&answered).cloned().collect();
        self.ledger.append(&Record::Ended {
            chunk: s.chunk.clone(),
            batch_id: batch.id.clone(),
            status: batch.status.clone(),
            journaled,
            not_run: unanswered.len() as u64,
        })?;
        self.states[i].ended = Some(batch.status.clone());
        self.seen.remove(&s.chunk);
        if unanswered.is_empty() {
            return Ok(());
        }
        if s.round < self.settings.max_retries {
            let chunk = Chunk {
                path: s.chunk.clone(),
                model: s.model.clone(),
                requests: s.requests,
                bytes: 0,
            };
            let again = chunks::rewrite(self.run_dir, &chunk, &unanswered, self.settings.limits)?;
            return Ok(self.add_chunks(again, s.round + 1)?);
        }
        let why = format!(
            "batch {} {}: {} (submitted {} times)",
            batch.id,
            batch.status,
            self.api(&s.model)?.redactor.clean_owned(batch.error_messages()),
            s.round + 1
        );
        for id in unanswered {
            let entry = Entry::failed(id.clone(), s.round + 1, 0, why.clone());
            self.journal(&id, entry)?;
        }
        Ok(())
    }

    /// Appends one answer to its job's journal (1), unless it answers nothing pending (0).
    fn journal(&mut self, id: &str, mut entry: Entry) -> Result<u64, BatchError> {
        let Some((job, cid)) = self.routes.route(id, self.jobs) else { return Ok(0) };
        if !self.routes.is_pending(job, &cid) {
            return Ok(0);
        }
        entry.custom_id = cid.clone();
        let j = match self.journals.get(&job) {
            Some(j) => j.clone(),
            None => {
                let j = journal::open(&self.jobs[job].journal)?;
                self.journals.insert(job, j.clone());
                j
            }
        };
        j.append(&entry, &self.syncer)?;
        if entry.status == Status::Error {
            self.out.failures += 1;
        }
        self.out.journaled += 1;
        self.routes.answered(job, &cid);
        Ok(1)
    }

    /// "batches: 1 validating · 2 in_progress · 3 done".
    fn status_line(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &self.states {
            let state = match (&s.ended, self.seen.get(&s.chunk)) {
                (Some(_), _) => "done",
                (None, Some(status)) => status.as_str(),
                (None, None) if s.file_id.is_none() => "to upload",
                (None, None) => "submitted",
            };
            *counts.entry(state).or_default() += 1;
        }
        let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        format!("batches: {}", parts.join(" · "))
    }
}

/// A request body's output limit (`max_tokens`, or `max_completion_tokens` for endpoints that
/// take that), 0 when it has none.
fn max_tokens(body: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_u64))
        .unwrap_or(0)
}

/// A step's failure: the provider's (maybe retried) or exp's own (never retried).
enum ApiOrBatch {
    Api(ApiError),
    Batch(BatchError),
}

impl From<ApiError> for ApiOrBatch {
    fn from(e: ApiError) -> Self {
        ApiOrBatch::Api(e)
    }
}

impl From<BatchError> for ApiOrBatch {
    fn from(e: BatchError) -> Self {
        ApiOrBatch::Batch(e)
    }
}
