//! Execution: sends every pending request of every job and journals each answer as it arrives.
//!
//! Concurrency has two limits: at most `max_concurrent_jobs` jobs are open (worker tasks dealt
//! out to the sender threads, see `execute`; a worker whose thread has no job left of its own
//! helps send another's, `OpenJob`), and at most `max_connections` requests (the
//! ceiling of `auto`) are open per model, over all of that model's jobs and threads (`Slots`);
//! within that, the provider holds each attempt to the model's own limit (`eval::concurrency`,
//! adaptive under `auto`) and picks its replica.
//! When every replica of a model is down, the request that found out stays unanswered (never
//! journaled as failed) and the run stops, as after Ctrl-C, saying why.
//! A request task holds its model permit from before it is spawned until its answer is journaled,
//! so memory stays bounded by the in-flight count, whatever the dataset size.
//! Retries (429, 5xx, timeouts, dropped connections, bad bodies) back off exponentially with full
//! jitter, or wait what `Retry-After` asks (never longer than `backoff_max`: a server asking for
//! a year must not hang the run), up to `max_retries`; a request that still fails is
//! journaled with its error, so every request ends as a response or a recorded failure.
//! A stop (Ctrl-C) abandons in-flight requests; the journal holds everything answered so far.
use std::collections::{HashSet, VecDeque};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::budget::{self, Budget};
use super::build::{RequestLine, custom_id};
use super::config::Pricing;
use super::journal::{self, Entry, JournalError, Status, Syncer};
use super::plan::Condition;
use super::prepare::Item;
use super::providers::{Failure, Provider, RequestContext};
use crate::error::Hint;
use crate::progress::Progress;
use crate::runfiles::results::EndpointUse;

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{path}, line {line}: {problem}")]
    Inputs { path: PathBuf, line: usize, problem: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("a request task failed: {0}")]
    Task(String),
}

impl Hint for ExecuteError {
    fn hint(&self) -> Option<String> {
        match self {
            ExecuteError::Journal(e) => e.hint(),
            ExecuteError::Inputs { .. } => Some(
                "the inputs no longer match the config and dataset: run without --skip-build so they are rebuilt"
                    .into(),
            ),
            ExecuteError::Read { .. } => {
                Some("run without --skip-build so the request files are rebuilt".into())
            }
            ExecuteError::Runtime(_) | ExecuteError::Task(_) => None,
        }
    }
}

/// One job as execution sees it.
pub struct ExecJob {
    pub inputs: PathBuf,
    pub journal: PathBuf,
    /// Index into the providers (one per model).
    pub model: usize,
    pub condition: Condition,
    pub dataset: String,
    pub items: Arc<Vec<Item>>,
    pub start: usize,
    pub end: usize,
    pub repeats: u32,
    /// The trial's `max_tokens`: what a request may cost at most (the budget).
    pub max_tokens: u64,
    /// custom_ids already answered (resume): never sent again.
    pub done: HashSet<String>,
}

/// A model as execution sees it.
pub struct ExecModel {
    pub provider: Provider,
    pub max_connections: usize,
    pub pricing: Option<Pricing>,
}

#[derive(Debug, Clone)]
pub struct ExecSettings {
    pub max_concurrent_jobs: usize,
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub fsync: bool,
    /// Stop cleanly on Ctrl-C (the binary sets this; library callers and tests may not want it).
    pub stop_on_ctrl_c: bool,
    /// `execution.max_usd`: stop sending before the spend could pass it.
    pub budget: Option<Arc<Budget>>,
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOutcome {
    pub sent: u64,
    pub responses: u64,
    pub failures: u64,
    pub interrupted: bool,
    /// How each real (not sim) model's endpoint was used, in the models' order.
    pub endpoints: Vec<EndpointUse>,
    /// The budget held requests back.
    pub budget_stopped: bool,
    /// With a budget: its cap, and what the run has spent in all its invocations.
    pub budget: Option<(f64, f64)>,
}

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    failures: AtomicU64,
    jobs_done: AtomicU64,
    usd: Mutex<f64>,
}

/// What every sender thread and request task shares.
struct Shared {
    /// Jobs not yet started, and the started ones with request lines left (see [`OpenJob`]).
    jobs: Mutex<Jobs>,
    /// Per model: its provider, its request slots, its pricing.
    providers: Vec<Provider>,
    model_slots: Vec<Slots>,
    pricing: Vec<Option<Pricing>>,
    syncer: Syncer,
    counters: Counters,
    settings: ExecSettings,
    /// No new requests (the endpoint is down, the budget is spent, Ctrl-C, an error): in-flight
    /// requests still finish.
    stopping: AtomicBool,
    /// In-flight requests are abandoned too (Ctrl-C, a journal that cannot be written).
    abort: watch::Sender<bool>,
}

impl Shared {
    /// The job a free worker sends from next: the next job not yet started, or else the
    /// started one with the most request lines left (a share of its lines); `None` when every
    /// line of every job has been read. A job with nothing left to send counts as done here.
    fn next_job(&self) -> Result<Option<Arc<OpenJob>>, ExecuteError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.open.retain(|open| !open.ended.load(Ordering::SeqCst));
        while let Some(job) = jobs.queued.pop_front() {
            let expected = (job.end - job.start) as u64 * job.repeats as u64;
            if expected <= job.done.len() as u64 {
                self.counters.jobs_done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // Opened under the lock, so a worker that finds nothing queued meanwhile sees this
            // job among the open ones instead of ending early.
            let open = Arc::new(OpenJob::open(job)?);
            jobs.open.push(open.clone());
            return Ok(Some(open));
        }
        loop {
            let Some(open) = jobs.open.iter().max_by_key(|open| open.lines_left()) else {
                return Ok(None);
            };
            if open.join() {
                return Ok(Some(open.clone()));
            }
            // Its last worker left as we looked (so it has ended): look again without it.
            jobs.open.retain(|open| !open.ended.load(Ordering::SeqCst));
        }
    }

    fn abort(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.abort.send_replace(true);
    }
}

/// A model's `max_connections` request slots, dealt out to the sender threads: a request waits
/// only for a slot of its own thread, so a slot freed on one thread never wakes another (one
/// semaphore for all threads cost 15% of the sending rate on 2 cores). The slots of a thread
/// that runs no job of the model are free for the others to take, so a model whose jobs all
/// run on one thread still gets all of its slots.
struct Slots {
    per_thread: Vec<Arc<Semaphore>>,
    /// How many of the model's jobs each thread runs now.
    jobs: Vec<AtomicUsize>,
}

impl Slots {
    fn new(max_connections: usize, threads: usize) -> Slots {
        Slots {
            per_thread: (0..threads)
                .map(|t| Arc::new(Semaphore::new(share(max_connections, threads, t))))
                .collect(),
            jobs: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Counts a job of the model on `thread` until the guard is dropped.
    fn job_on(&self, thread: usize) -> JobOn<'_> {
        self.jobs[thread].fetch_add(1, Ordering::SeqCst);
        JobOn { slots: self, thread }
    }

    /// A slot for a request of `thread`: its own, or a free one of a thread that runs none of
    /// the model's jobs, or else the next of its own; `None` once the slots are closed.
    async fn acquire(&self, thread: usize) -> Option<OwnedSemaphorePermit> {
        let own = &self.per_thread[thread];
        if let Ok(permit) = own.clone().try_acquire_owned() {
            return Some(permit);
        }
        let idle = (0..self.per_thread.len())
            .filter(|&t| t != thread && self.jobs[t].load(Ordering::SeqCst) == 0);
        for t in idle {
            if let Ok(permit) = self.per_thread[t].clone().try_acquire_owned() {
                return Some(permit);
            }
        }
        own.clone().acquire_owned().await.ok()
    }
}

struct JobOn<'a> {
    slots: &'a Slots,
    thread: usize,
}

impl Drop for JobOn<'_> {
    fn drop(&mut self) {
        self.slots.jobs[self.thread].fetch_sub(1, Ordering::SeqCst);
    }
}

/// Thread `t`'s share of `total`, dealt out evenly over `threads`.
fn share(total: usize, threads: usize, t: usize) -> usize {
    total / threads + usize::from(t < total % threads)
}

/// Runs `jobs` to completion (or until stopped); `pending` is the number of requests to send, for
/// the progress bar.
///
/// Sending runs on one thread per core (at most one per job slot), each with a single-threaded
/// runtime of its own: a request's work is a few microseconds between waits, so a
/// work-stealing runtime's wakeups handed across threads cost more than they share (measured
/// on 2 cores against a loopback server: slower than one thread), while threads that share
/// nothing but the jobs, the model's slots and the journal's syncer add up (1.6x on 2 cores).
/// The threads share out the request lines of the open jobs in small batches, so a run of one
/// job still uses every core, and no thread idles while another has lines left. Each thread
/// keeps its own idle connections (`providers::http`). This thread shows progress and watches
/// for Ctrl-C.
pub fn execute(
    jobs: Vec<ExecJob>,
    models: Vec<ExecModel>,
    settings: &ExecSettings,
    pending: u64,
    progress: &dyn Progress,
) -> Result<ExecOutcome, ExecuteError> {
    let total_jobs = jobs.len() as u64;
    let job_slots = settings.max_concurrent_jobs.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Every thread needs a slot of each model's (a thread with none could only wait).
    let fewest_slots = models.iter().map(|m| m.max_connections.max(1)).min().unwrap_or(1);
    let threads = cores.min(job_slots).min(fewest_slots).max(1);
    let shared = Arc::new(Shared {
        jobs: Mutex::new(Jobs { queued: jobs.into(), open: Vec::new() }),
        model_slots: models.iter().map(|m| Slots::new(m.max_connections.max(1), threads)).collect(),
        pricing: models.iter().map(|m| m.pricing).collect(),
        providers: models.into_iter().map(|m| m.provider).collect(),
        syncer: Syncer::start(settings.fsync),
        counters: Counters::default(),
        settings: settings.clone(),
        stopping: AtomicBool::new(false),
        abort: watch::Sender::new(false),
    });
    let rt = single_threaded_runtime()?;
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let watched = std::thread::scope(|scope| {
        for t in 0..threads {
            let (shared, ended_tx) = (shared.clone(), ended_tx.clone());
            scope.spawn(move || {
                let _ = ended_tx.send(send_on_this_thread(shared, t, share(job_slots, threads, t)));
            });
        }
        drop(ended_tx);
        rt.block_on(watch_senders(&shared, ended, pending, total_jobs, progress))
    });
    let (interrupted, first_error) = watched;
    shared.syncer.finish()?;
    if let Some(e) = first_error {
        return Err(e);
    }
    let c = &shared.counters;
    let done = c.done.load(Ordering::Relaxed);
    let failures = c.failures.load(Ordering::Relaxed);
    let b = settings.budget.as_ref();
    Ok(ExecOutcome {
        sent: done,
        responses: done - failures,
        failures,
        interrupted,
        endpoints: shared.providers.iter().filter_map(|p| p.report()).collect(),
        budget_stopped: b.is_some_and(|b| b.exhausted()),
        budget: b.map(|b| (b.cap(), b.spent())),
    })
}

/// Shows progress until every sender thread has ended (stopping them all on Ctrl-C); whether
/// Ctrl-C stopped the run, and the first error of any thread.
async fn watch_senders(
    shared: &Shared,
    mut ended: mpsc::UnboundedReceiver<Result<(), ExecuteError>>,
    pending: u64,
    total_jobs: u64,
    progress: &dyn Progress,
) -> (bool, Option<ExecuteError>) {
    let counters = &shared.counters;
    progress.start("requests", pending, false);
    let mut shown = 0u64;
    let show = |shown: &mut u64| {
        let done = counters.done.load(Ordering::Relaxed);
        if done > *shown {
            progress.advance(done - *shown);
            *shown = done;
        }
        let usd = *counters.usd.lock().unwrap_or_else(|e| e.into_inner());
        let adaptive: Vec<String> = shared
            .providers
            .iter()
            .filter_map(|p| p.adaptive_limit())
            .map(|n| format!(" · concurrency {n}"))
            .collect();
        progress.status(&format!(
            "jobs {}/{} · {} errors · {}{}",
            counters.jobs_done.load(Ordering::Relaxed),
            total_jobs,
            counters.failures.load(Ordering::Relaxed),
            crate::display::usd(usd),
            adaptive.concat(),
        ));
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let ctrl_c = ctrl_c_if(shared.settings.stop_on_ctrl_c);
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    let mut first_error = None;
    loop {
        tokio::select! {
            next = ended.recv() => match next {
                None => break,
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
            },
            _ = tick.tick() => show(&mut shown),
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                shared.abort();
            }
        }
    }
    show(&mut shown);
    progress.finish();
    (interrupted, first_error)
}

fn single_threaded_runtime() -> Result<tokio::runtime::Runtime, ExecuteError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ExecuteError::Runtime)
}

/// Resolves at Ctrl-C when `enabled`, never otherwise (library callers and tests may not want
/// the signal taken).
pub async fn ctrl_c_if(enabled: bool) {
    if enabled {
        let _ = tokio::signal::ctrl_c().await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// Sender thread number `thread`: `job_slots` jobs at a time from the shared queue, on a runtime
/// of its own, until the queue is empty or the run is aborted.
fn send_on_this_thread(
    shared: Arc<Shared>,
    thread: usize,
    job_slots: usize,
) -> Result<(), ExecuteError> {
    let rt = single_threaded_runtime()?;
    rt.block_on(async {
        let mut workers = JoinSet::new();
        for _ in 0..job_slots {
            let shared = shared.clone();
            workers.spawn(async move {
                while let Some(open) = shared.next_job()? {
                    send_from(&open, &shared, thread).await?;
                }
                Ok::<(), ExecuteError>(())
            });
        }
        let mut aborted = shared.abort.subscribe();
        let mut first_error = None;
        let mut aborting = false;
        loop {
            tokio::select! {
                next = workers.join_next() => match next {
                    None => break,
                    Some(r) => if let Err(e) = flatten(r) {
                        // A journal that cannot be written makes every further answer a loss:
                        // stop everything rather than keep paying for responses.
                        first_error.get_or_insert(e);
                        shared.abort();
                    }
                },
                // Dropping a job's future drops its request tasks' set, which aborts them.
                Ok(_) = aborted.wait_for(|a| *a), if !aborting => {
                    aborting = true;
                    workers.abort_all();
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

/// Jobs not yet started, and the started ones whose request lines are not all read yet.
struct Jobs {
    queued: VecDeque<ExecJob>,
    open: Vec<Arc<OpenJob>>,
}

/// A job being sent. Its request lines are read in small batches by whichever worker asks
/// next, on any sender thread: with fewer jobs than threads, or jobs that run at different
/// speeds, every thread keeps sending until the last line is read (one job per thread left
/// the faster thread idle for the last fifth of a two-job run).
struct OpenJob {
    job: ExecJob,
    journal: Arc<journal::Journal>,
    lines: Mutex<Lines>,
    /// Every line is read, or the job was cut short.
    ended: AtomicBool,
    /// Workers sending from this job: the last to leave once it has ended counts it done.
    workers: AtomicUsize,
}

/// Where a job's reading stands.
struct Lines {
    reader: std::io::BufReader<std::fs::File>,
    /// One buffer for every line: a job reads up to millions.
    buf: String,
    /// Lines read so far.
    read: usize,
}

/// A request read from a job's inputs, checked against the plan and not answered before.
struct ToSend {
    custom_id: String,
    body: bytes::Bytes,
    gold: String,
}

/// Request lines a worker reads at once: enough that the lock is rarely contended, few enough
/// that the last lines of a job are shared out between the threads.
const BATCH_LINES: usize = 32;

impl OpenJob {
    fn open(job: ExecJob) -> Result<OpenJob, ExecuteError> {
        let journal = journal::open(&job.journal)?;
        let file = std::fs::File::open(&job.inputs)
            .map_err(|source| ExecuteError::Read { path: job.inputs.clone(), source })?;
        let lines = Lines { reader: std::io::BufReader::new(file), buf: String::new(), read: 0 };
        Ok(OpenJob {
            job,
            journal,
            lines: Mutex::new(lines),
            ended: AtomicBool::new(false),
            workers: AtomicUsize::new(1),
        })
    }

    fn expected_lines(&self) -> usize {
        (self.job.end - self.job.start) * self.job.repeats as usize
    }

    fn lines_left(&self) -> usize {
        let read = self.lines.lock().unwrap_or_else(|e| e.into_inner()).read;
        self.expected_lines().saturating_sub(read)
    }

    /// Stop handing out lines (the run is stopping, the budget is spent): what is unread stays
    /// unsent, which is not a mismatch with the plan.
    fn cut_short(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }

    /// The next requests to send, up to `BATCH_LINES` lines' worth (fewer, even none, when
    /// lines were answered before); `None` once the job has ended. A line that does not match
    /// the plan is an error naming it.
    fn next_batch(&self, stopping: &AtomicBool) -> Result<Option<Vec<ToSend>>, ExecuteError> {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if stopping.load(Ordering::Relaxed) {
            self.cut_short();
        }
        if self.ended.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let job = &self.job;
        let mismatch = |line: usize, problem: String| ExecuteError::Inputs {
            path: job.inputs.clone(),
            line,
            problem,
        };
        let Lines { reader, buf, read } = &mut *lines;
        let mut batch = Vec::with_capacity(BATCH_LINES);
        for _ in 0..BATCH_LINES {
            buf.clear();
            let n = reader.read_line(buf);
            if n.map_err(|source| ExecuteError::Read { path: job.inputs.clone(), source })? == 0 {
                self.ended.store(true, Ordering::SeqCst);
                if *read < self.expected_lines() {
                    return Err(mismatch(*read, "has fewer requests than the job's items".into()));
                }
                break;
            }
            let line = buf.strip_suffix('\n').unwrap_or(buf);
            let line = line.strip_suffix('\r').unwrap_or(line);
            let index = *read;
            *read += 1;
            let item_index = job.start + index / job.repeats as usize;
            let repeat = (index % job.repeats as usize) as u32;
            let Some(item) = job.items.get(item_index).filter(|_| item_index < job.end) else {
                return Err(mismatch(*read, "has more requests than the job's items".into()));
            };
            let (custom_id_sent, body) = parse_request(line)
                .map_err(|e| mismatch(*read, format!("not a request line: {e}")))?;
            let want = custom_id(&job.dataset, &item.id, job.condition, repeat);
            if custom_id_sent != want {
                return Err(mismatch(
                    *read,
                    format!("custom_id is `{custom_id_sent}`, the plan expects `{want}`"),
                ));
            }
            if !job.done.contains(&want) {
                batch.push(ToSend { custom_id: want, body, gold: item.label.clone() });
            }
        }
        Ok(Some(batch))
    }

    /// One more worker on this job; false once its last worker has left (it has ended, and
    /// was counted done).
    fn join(&self) -> bool {
        self.workers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| (w > 0).then(|| w + 1))
            .is_ok()
    }

    /// A worker is done with this job; the last one out of an ended job counts it done.
    fn leave(&self, counters: &Counters) {
        if self.workers.fetch_sub(1, Ordering::SeqCst) == 1 && self.ended.load(Ordering::SeqCst) {
            counters.jobs_done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends requests of `open` until its lines run out, then waits for this worker's answers.
async fn send_from(
    open: &Arc<OpenJob>,
    shared: &Arc<Shared>,
    thread: usize,
) -> Result<(), ExecuteError> {
    let result = send_batches(open, shared, thread).await;
    if result.is_err() {
        open.cut_short();
    }
    open.leave(&shared.counters);
    result
}

async fn send_batches(
    open: &Arc<OpenJob>,
    shared: &Arc<Shared>,
    thread: usize,
) -> Result<(), ExecuteError> {
    let job = &open.job;
    let pricing = shared.pricing[job.model];
    let slots = &shared.model_slots[job.model];
    let _on_this_thread = slots.job_on(thread);
    let mut requests = JoinSet::new();
    'lines: while let Some(batch) = open.next_batch(&shared.stopping)? {
        for request in batch {
            if shared.stopping.load(Ordering::Relaxed) {
                open.cut_short();
                break 'lines;
            }
            // Reap finished tasks so a long job does not keep every finished handle.
            while let Some(done) = requests.try_join_next() {
                flatten(done)?;
            }
            let Some(permit) = slots.acquire(thread).await else {
                open.cut_short();
                break 'lines;
            };
            // Reserved once the request is sure to go out, so what is reserved is what is in
            // flight.
            let max_cost = budget::max_cost(pricing, request.body.len(), job.max_tokens);
            let budget = shared.settings.budget.as_ref();
            if budget.is_some_and(|b| !b.reserve(max_cost)) {
                open.cut_short();
                break 'lines;
            }
            let (shared, journal) = (shared.clone(), open.journal.clone());
            let (model, condition) = (job.model, job.condition);
            requests.spawn(async move {
                let _permit = permit;
                let ToSend { custom_id, body, gold } = request;
                let rc = RequestContext { custom_id: &custom_id, condition, gold: &gold };
                let provider = &shared.providers[model];
                let entry = match send_with_retries(provider, &body, &rc, &shared.settings).await {
                    Ok(entry) => entry,
                    Err(_down) => {
                        // Unanswered, so not journaled: the run stops (the endpoint's report
                        // says why) and a resume sends it.
                        shared.stopping.store(true, Ordering::SeqCst);
                        return Ok(());
                    }
                };
                journal.append(&entry, &shared.syncer)?;
                let counters = &shared.counters;
                if entry.status == Status::Error {
                    counters.failures.fetch_add(1, Ordering::Relaxed);
                }
                let usd = pricing.map(|p| p.usd(entry.input_tokens, entry.output_tokens));
                if let Some(usd) = usd {
                    *counters.usd.lock().unwrap_or_else(|e| e.into_inner()) += usd;
                }
                if let Some(b) = &shared.settings.budget {
                    b.settle(max_cost, usd.unwrap_or(0.0));
                }
                counters.done.fetch_add(1, Ordering::Relaxed);
                Ok::<(), ExecuteError>(())
            });
        }
    }
    while let Some(done) = requests.join_next().await {
        flatten(done)?;
    }
    Ok(())
}

/// A request line's custom_id and body bytes. The body is sent as the exact bytes written at
/// build time: for a line in the layout `build` writes (`body` last), they are sliced out
/// without building a JSON tree, which matters at tens of thousands of requests a second;
/// any other valid layout (a hand-edited file) goes through a full parse.
pub fn parse_request(line: &str) -> Result<(String, bytes::Bytes), serde_json::Error> {
    // Quotes inside JSON strings are escaped, so the first unescaped `,"body":` is the key.
    if let Some(at) = line.find(",\"body\":")
        && let Some(body) = line.trim_end().strip_suffix('}').map(|l| &l[at + 8..])
        && body.starts_with('{')
        && let Some(custom_id) = leading_custom_id(&line[..at])
    {
        return Ok((custom_id, bytes::Bytes::copy_from_slice(body.as_bytes())));
    }
    let request: RequestLine = serde_json::from_str(line)?;
    Ok((request.custom_id, serde_json::to_vec(&request.body)?.into()))
}

/// The custom_id of a request line's head in build's layout (`{"custom_id":"…",…`), read as
/// one JSON string token without scanning the rest; `None` for anything else, which the full
/// parse then judges.
fn leading_custom_id(head: &str) -> Option<String> {
    let rest = head.strip_prefix("{\"custom_id\":")?;
    let mut tokens = serde_json::Deserializer::from_str(rest).into_iter::<String>();
    let id = tokens.next()?.ok()?;
    rest[tokens.byte_offset()..].starts_with(',').then_some(id)
}

fn flatten(
    r: Result<Result<(), ExecuteError>, tokio::task::JoinError>,
) -> Result<(), ExecuteError> {
    match r {
        Ok(inner) => inner,
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(ExecuteError::Task(e.to_string())),
    }
}

/// One request to its end: a response, or the last error once retries are spent; `Err` with
/// the reason when the model's endpoint is down (the request stays unanswered).
pub async fn send_with_retries(
    provider: &Provider,
    body: &bytes::Bytes,
    rc: &RequestContext<'_>,
    settings: &ExecSettings,
) -> Result<Entry, String> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let started = Instant::now();
        let result = provider.send(body, rc).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let failure = match result {
            Ok(c) => {
                return Ok(Entry {
                    custom_id: rc.custom_id.to_string(),
                    status: Status::Ok,
                    content: Some(c.content),
                    finish_reason: c.finish_reason,
                    input_tokens: c.usage.map(|u| u.0).unwrap_or(0),
                    output_tokens: c.usage.map(|u| u.1).unwrap_or(0),
                    reasoning_tokens: c.reasoning_tokens,
                    usage_missing: c.usage.is_none(),
                    latency_ms,
                    attempts,
                    error: None,
                    reused: None,
                });
            }
            Err(Failure::Down { message }) => return Err(message),
            Err(f) => f,
        };
        let give_up = match &failure {
            Failure::Fatal { .. } | Failure::Down { .. } => true,
            Failure::Retryable { .. } => attempts > settings.max_retries,
        };
        if give_up {
            let message = match &failure {
                Failure::Fatal { message } | Failure::Down { message } => message.clone(),
                Failure::Retryable { message, .. } => {
                    format!("gave up after {attempts} attempts: {message}")
                }
            };
            return Ok(Entry::failed(rc.custom_id.to_string(), attempts, latency_ms, message));
        }
        let wait = match &failure {
            Failure::Retryable { retry_after: Some(d), .. } => (*d).min(settings.backoff_max),
            _ => backoff(attempts, settings.backoff_base, settings.backoff_max),
        };
        tracing::debug!(
            custom_id = rc.custom_id,
            attempts,
            ?wait,
            "retrying: {}",
            failure.message()
        );
        tokio::time::sleep(wait).await;
    }
}

/// Full jitter: uniform in [0, min(max, base · 2^(attempt-1))], so many clients that failed
/// together do not retry together.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let cap = base.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
    let cap = cap.min(max.as_secs_f64());
    if cap <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(rand::thread_rng().gen_range(0.0..=cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_are_the_bytes_that_were_built() {
        let line = serde_json::to_string(&RequestLine {
            custom_id: "d:a,\"body\":{}:control:r0".into(),
            method: "POST".into(),
            url: "/v1/chat/completions".into(),
            body: serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x,\"body\":"}]}),
        })
        .unwrap();
        let (id, body) = parse_request(&line).unwrap();
        assert_eq!(id, "d:a,\"body\":{}:control:r0");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["messages"][0]["content"], "x,\"body\":");
        // Another key order still works, through the full parse.
        let (id, body) = parse_request(
            r#"{"body": {"model": "m"}, "custom_id": "c", "method": "POST", "url": "/v1/chat/completions"}"#,
        ).unwrap();
        assert_eq!((id.as_str(), &body[..]), ("c", &br#"{"model":"m"}"#[..]));
        assert!(parse_request("{}").is_err());
    }

    #[test]
    fn a_model_s_slots_go_to_the_thread_that_runs_its_jobs() {
        use futures::FutureExt;
        let slots = Slots::new(5, 2);
        let take = |thread| slots.acquire(thread).now_or_never().flatten();
        // Thread 0 runs the only job: it gets all five slots, its three and thread 1's two.
        let job = slots.job_on(0);
        let mut held: Vec<_> = (0..5).map(|_| take(0).expect("a free slot")).collect();
        assert!(take(0).is_none(), "a sixth slot");
        // Once thread 1 runs a job of the model too, its slots are its own again: it waits for
        // one (thread 0's free slot is not for it) and gets the first of its own thread 0 frees.
        let _job1 = slots.job_on(1);
        assert!(take(1).is_none(), "thread 1 must wait");
        drop(held.remove(0));
        assert!(take(1).is_none(), "thread 0's freed slot went to thread 1");
        let mut waiting = Box::pin(slots.acquire(1));
        assert!((&mut waiting).now_or_never().is_none());
        drop(held.pop());
        assert!(waiting.now_or_never().flatten().is_some(), "thread 1 gets its own slot back");
        drop(job);
        assert_eq!((share(5, 2, 0), share(5, 2, 1), share(1, 2, 1)), (3, 2, 0));
    }

    /// A job of `n` items (one repeat) whose request lines are in a temp folder; items listed
    /// in `done` were answered before.
    fn job_of(dir: &std::path::Path, n: usize, done: &[usize]) -> ExecJob {
        let item = |i: usize| Item {
            id: format!("i{i}"),
            label: "positive".into(),
            cluster: None,
            fields: Default::default(),
        };
        let items: Vec<Item> = (0..n).map(item).collect();
        let lines: String = items
            .iter()
            .map(|it| {
                let id = custom_id("d", &it.id, Condition::Control, 0);
                format!("{{\"custom_id\":\"{id}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{}}}}\n")
            })
            .collect();
        let inputs = dir.join("inputs.jsonl");
        std::fs::write(&inputs, lines).unwrap();
        ExecJob {
            inputs,
            journal: dir.join("responses/part-0000.jsonl"),
            model: 0,
            condition: Condition::Control,
            dataset: "d".into(),
            done: done
                .iter()
                .map(|&i| custom_id("d", &items[i].id, Condition::Control, 0))
                .collect(),
            items: Arc::new(items),
            start: 0,
            end: n,
            repeats: 1,
            max_tokens: 16,
        }
    }

    #[test]
    fn workers_share_a_job_s_lines_and_the_last_one_out_counts_it_done() {
        let dir = tempfile::tempdir().unwrap();
        let open = OpenJob::open(job_of(dir.path(), 100, &[3, 50])).unwrap();
        assert!(open.join(), "a second worker joins a job with lines left");
        let stopping = AtomicBool::new(false);
        let counters = Counters::default();
        let mut sent = Vec::new();
        // Two workers take turns, as two threads would.
        while let Some(batch) = open.next_batch(&stopping).unwrap() {
            assert!(batch.len() <= BATCH_LINES);
            sent.extend(batch.into_iter().map(|r| r.custom_id));
        }
        assert_eq!(sent.len(), 98, "every line once, but the two answered before");
        let unique: HashSet<&String> = sent.iter().collect();
        assert_eq!(unique.len(), 98);
        assert_eq!(open.lines_left(), 0);
        open.leave(&counters);
        assert_eq!(counters.jobs_done.load(Ordering::Relaxed), 0, "a worker is still on it");
        open.leave(&counters);
        assert_eq!(counters.jobs_done.load(Ordering::Relaxed), 1);
        assert!(!open.join(), "nobody joins a job whose last worker left");
    }

    #[test]
    fn a_stopping_run_hands_out_no_more_lines_and_a_short_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let open = OpenJob::open(job_of(dir.path(), 10, &[])).unwrap();
        let stopping = AtomicBool::new(true);
        assert!(open.next_batch(&stopping).unwrap().is_none());
        let mut job = job_of(dir.path(), 10, &[]);
        job.end = 12;
        job.items = Arc::new((0..12).map(|i| job.items[i % 10].clone()).collect());
        let open = OpenJob::open(job).unwrap();
        let err = open.next_batch(&AtomicBool::new(false)).err().expect("10 lines for 12 items");
        assert!(err.to_string().contains("has fewer requests than the job's items"), "{err}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for attempt in 1..20 {
            let d = backoff(attempt, base, max);
            let cap = (0.1 * 2f64.powi(attempt as i32 - 1)).min(1.0);
            assert!(d.as_secs_f64() <= cap + 1e-9, "attempt {attempt}: {d:?}");
        }
        assert_eq!(backoff(3, Duration::ZERO, max), Duration::ZERO);
    }
}
