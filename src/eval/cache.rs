//! The response cache ("never pay twice"): before `exp run` sends a request, it looks for an
//! answer to the identical request in the journals of earlier runs, in the workspace and in the
//! store (fetched and cloned runs included), and journals that answer instead, marked with
//! where it came from, through the same journal as a live answer (so `--resume`, results,
//! reports and commits treat it like any other).
//!
//! The key never lies: it is the BLAKE3 of the canonical request (provider, base URL, the whole
//! body with every decoding parameter and `extra_body`, object keys sorted) and the repeat
//! index, so repeat i only ever reuses a repeat i and sampling at temperature > 0 is never
//! collapsed. The simulated model's answer also depends on its seed, accuracy and labels and on
//! the item (its id and dataset version), so those are in its key too. The key never holds the
//! API key or any header. Only `ok` answers are offered: an errored one is sent again.
//!
//! The index (`.exprepo/cache/responses.json`: key -> run, commit, journal, custom_id) is a cache
//! of the journals, never trusted: it is extended incrementally (a committed run is read once
//! per commit, a workspace journal again when its size or mtime changed), bounded and checked
//! when read and rebuilt when damaged, and a hit is derived again from the source run's own
//! request and journal lines before it is reused. Runs whose config says `execution.cache: read`
//! or `off` are never offered. Nothing here is fatal except writing this run's own journal: a
//! source that cannot be read is only a miss.
use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{CacheMode, Config, ModelConfig, ProviderKind};
use super::execute::{ExecJob, parse_request};
use super::journal::{self, Entry, JournalError, Reused, Status, Syncer};
use crate::error::Hint;
use crate::progress::Progress;
use crate::store::{Mode, ObjectId, Repo};

/// Where the index lives, inside `.exprepo/`.
pub const INDEX_FILE: &str = "cache/responses.json";
const INDEX_FORMAT: u32 = 1;
/// A larger index is not read (and is rebuilt): it is parsed in memory.
const MAX_INDEX_BYTES: u64 = 1 << 30;
/// Source files (journals, request files) larger than this are skipped: they are read whole.
const MAX_SOURCE_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

impl Hint for CacheError {
    fn hint(&self) -> Option<String> {
        match self {
            CacheError::Journal(e) => e.hint(),
            CacheError::Read { .. } => {
                Some("run without --skip-build so the request files are rebuilt".into())
            }
        }
    }
}

/// Computes cache keys for one model's requests.
pub struct Keyer {
    /// The canonical JSON of what decides an answer besides the body.
    head: Vec<u8>,
    sim: bool,
}

impl Keyer {
    /// `labels` are the scorer's (the sim model picks its wrong answers among them).
    pub fn new(model: &ModelConfig, labels: &[String]) -> Keyer {
        let sim = model.provider == ProviderKind::Sim;
        let sim_part = match (&model.sim, sim) {
            (Some(s), true) => serde_json::json!({
                "name": model.name, "seed": s.seed,
                "accuracy": {"control": s.accuracy.control, "treatment": s.accuracy.treatment},
                "labels": labels,
            }),
            _ => Value::Null,
        };
        let head = serde_json::json!({
            "provider": model.provider.as_str(),
            // One URL keys as it always did; replicas (serving the same model) as their list.
            "base_url": model.base_url.as_ref().map(|u| match u.0.as_slice() {
                [one] => Value::from(one.trim_end_matches('/')),
                many => many.iter().map(|u| u.trim_end_matches('/')).collect(),
            }),
            "sim": sim_part,
        });
        let mut out = Vec::new();
        canonical(&head, &mut out);
        Keyer { head: out, sim }
    }

    /// The key of one request: its body as sent, its repeat index, and (for the sim model) its
    /// custom_id and the hash of the dataset version the item comes from. `None` when the body
    /// is not JSON (such a request is never cached).
    pub fn key(
        &self,
        body: &[u8],
        repeat: u32,
        custom_id: &str,
        dataset_hash: &str,
    ) -> Option<blake3::Hash> {
        let mut text = Vec::with_capacity(body.len());
        let body: Value = serde_json::from_slice(body).ok()?;
        canonical(&body, &mut text);
        let mut h = blake3::Hasher::new();
        h.update(b"exp-cache-v1\0");
        h.update(&self.head);
        h.update(b"\0");
        h.update(&text);
        h.update(b"\0");
        h.update(&repeat.to_le_bytes());
        if self.sim {
            for part in [custom_id, dataset_hash] {
                h.update(b"\0");
                h.update(part.as_bytes());
            }
        }
        Some(h.finalize())
    }
}

/// JSON with every object's keys sorted, so two bodies that differ only in key order (a config
/// edit reordering `extra_body`) have one key. Depth is bounded by serde_json's parser (128).
/// Strings and numbers are written as serde_json writes them, straight into `out` (a run keys
/// every request of the runs it may reuse from, so no allocation per value).
fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<(&String, &Value)> = m.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, k);
                out.push(b':');
                canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(v, out);
            }
            out.push(b']');
        }
        other => write_json(out, other),
    }
}

/// A string or a JSON scalar as serde_json writes it. Writing into a Vec cannot fail, and
/// neither can serializing these, so there is no error to report.
fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    let _ = serde_json::to_writer(out, value);
}

/// The index as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    format: u32,
    /// Commits already read (a commit never changes, so once is enough).
    commits: Vec<String>,
    files: Vec<SourceFile>,
    /// (key hex, index into `files`, custom_id in that journal)
    entries: Vec<(String, usize, String)>,
}

/// One journal answers come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct SourceFile {
    run: String,
    /// `None`: the run's folder in the workspace.
    commit: Option<String>,
    /// Relative to the run folder: `<slug>/responses/<condition>/part-NNNN.jsonl`.
    path: String,
    /// A workspace journal's size and mtime when it was read (0 for a commit's).
    len: u64,
    mtime_ns: u64,
}

/// A run's files, wherever they are.
enum RunFiles<'a> {
    Folder(PathBuf),
    Commit(&'a Repo, ObjectId),
}

impl RunFiles<'_> {
    fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        match self {
            RunFiles::Folder(dir) => {
                let path = dir.join(rel);
                let len = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
                if len > MAX_SOURCE_BYTES {
                    return Err(format!("{rel} is larger than {MAX_SOURCE_BYTES} bytes"));
                }
                std::fs::read(path).map_err(|e| e.to_string())
            }
            RunFiles::Commit(repo, commit) => {
                let e = repo.lookup_path(commit, rel).map_err(|e| e.to_string())?;
                let (_, len) = repo.odb.header(&e.id).map_err(|e| e.to_string())?;
                if e.mode == Mode::Tree || len > MAX_SOURCE_BYTES {
                    return Err(format!("{rel} is not a file of at most {MAX_SOURCE_BYTES} bytes"));
                }
                repo.odb.read_blob(&e.id).map_err(|e| e.to_string())
            }
        }
    }

    /// The names in folder `rel`.
    fn list(&self, rel: &str) -> Result<Vec<String>, String> {
        match self {
            RunFiles::Folder(dir) => {
                let rd = std::fs::read_dir(dir.join(rel)).map_err(|e| e.to_string())?;
                Ok(rd.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
            }
            RunFiles::Commit(repo, commit) => {
                let e = repo.lookup_path(commit, rel).map_err(|e| e.to_string())?;
                if e.mode != Mode::Tree {
                    return Err(format!("{rel} is not a folder"));
                }
                let tree = repo.odb.read_tree(&e.id).map_err(|e| e.to_string())?;
                Ok(tree.entries.into_iter().map(|e| e.name).collect())
            }
        }
    }
}

/// What keys a run's answers: each trial's model and repeats, and its datasets' hashes.
struct RunContext {
    trials: HashMap<String, (Keyer, u32)>,
    datasets: HashMap<String, String>,
}

#[derive(Deserialize)]
struct RunHead {
    run_id: String,
    #[serde(default)]
    trials: Vec<String>,
    #[serde(default)]
    datasets: Vec<DatasetHash>,
}

#[derive(Deserialize)]
struct DatasetHash {
    name: String,
    hash: String,
}

#[derive(Deserialize)]
struct TrialHead {
    model: String,
    repeats: u32,
}

/// A run's context, or `None` when it does not offer its answers (its config says
/// `cache: read`/`off`, or it is not a run `exp run` wrote: an import, an older format).
fn run_context(files: &RunFiles<'_>) -> Option<(String, RunContext)> {
    let config = files.read("config/eval_config.yaml").ok()?;
    let config: Config = serde_yaml::from_slice(&config).ok()?;
    if config.execution.cache != CacheMode::ReadWrite {
        return None;
    }
    let head: RunHead = serde_json::from_slice(&files.read("run.json").ok()?).ok()?;
    if !crate::eval::config::is_safe_name(&head.run_id) {
        return None;
    }
    let mut trials = HashMap::new();
    for slug in &head.trials {
        let Ok(bytes) = files.read(&format!("{slug}/trial.json")) else { continue };
        let Ok(t) = serde_json::from_slice::<TrialHead>(&bytes) else { continue };
        let Some(model) = config.models.iter().find(|m| m.name == t.model) else { continue };
        if t.repeats == 0 {
            continue;
        }
        trials.insert(slug.clone(), (Keyer::new(model, &config.scoring.labels), t.repeats));
    }
    let datasets = head.datasets.into_iter().map(|d| (d.name, d.hash)).collect();
    Some((head.run_id, RunContext { trials, datasets }))
}

/// Every journal of a run: `<slug>/responses/<condition>/<part>`.
fn journals(files: &RunFiles<'_>, ctx: &RunContext) -> Vec<String> {
    let mut out = Vec::new();
    for slug in ctx.trials.keys() {
        let Ok(conditions) = files.list(&format!("{slug}/responses")) else { continue };
        for cond in conditions {
            let Ok(parts) = files.list(&format!("{slug}/responses/{cond}")) else { continue };
            for part in parts.into_iter().filter(|p| p.ends_with(".jsonl")) {
                out.push(format!("{slug}/responses/{cond}/{part}"));
            }
        }
    }
    out.sort();
    out
}

/// The `ok` answers of one journal with their keys, derived from the run's own request file.
fn keyed_answers(
    files: &RunFiles<'_>,
    ctx: &RunContext,
    journal_path: &str,
) -> Result<Vec<(blake3::Hash, Entry)>, String> {
    let parts: Vec<&str> = journal_path.split('/').collect();
    let [slug, "responses", cond, part] = parts[..] else {
        return Err(format!("{journal_path} is not a journal path"));
    };
    let (keyer, repeats) = ctx.trials.get(slug).ok_or_else(|| format!("no trial {slug}"))?;
    let inputs = files.read(&format!("{slug}/inputs/{cond}/{part}"))?;
    let inputs = String::from_utf8_lossy(&inputs);
    let lines: Vec<&str> = inputs.lines().collect();
    // Parsing and hashing every body is most of reading a source: it runs on every core.
    let keys: HashMap<String, blake3::Hash> = lines
        .par_iter()
        .enumerate()
        .map(|(i, line)| {
            let (custom_id, body) = parse_request(line).map_err(|e| e.to_string())?;
            let repeat = (i % *repeats as usize) as u32;
            let dataset = custom_id.split(':').next().unwrap_or_default();
            let hash = ctx.datasets.get(dataset).map(String::as_str).unwrap_or_default();
            Ok(keyer.key(&body, repeat, &custom_id, hash).map(|key| (custom_id, key)))
        })
        .filter_map(Result::transpose)
        .collect::<Result<_, String>>()?;
    let bytes = files.read(journal_path)?;
    let entries = journal::parse(&bytes, Path::new(journal_path)).map_err(|e| e.to_string())?;
    Ok(entries
        .into_values()
        .filter(|e| e.status == Status::Ok)
        .filter_map(|e| keys.get(&e.custom_id).map(|k| (*k, e)))
        .collect())
}

/// The index in memory, with the sources it points into.
pub struct Cache {
    repo: Option<Repo>,
    experiments: PathBuf,
    files: Vec<SourceFile>,
    map: HashMap<blake3::Hash, (usize, String)>,
    /// Source journals already re-derived for hits, by file index.
    verified: HashMap<usize, HashMap<String, (blake3::Hash, Entry)>>,
}

impl Cache {
    /// The index of `experiments`' runs and of every run the workspace's store names, brought
    /// up to date (and saved, when there is a store).
    pub fn open(workspace: &Path, experiments: &Path) -> Cache {
        let repo = Repo::discover(workspace).ok();
        let stored = repo.as_ref().map(|r| load_index(&r.store_dir().join(INDEX_FILE)));
        let stored = stored.unwrap_or_default();
        let mut cache = Cache {
            repo,
            experiments: experiments.to_path_buf(),
            files: Vec::new(),
            map: HashMap::new(),
            verified: HashMap::new(),
        };
        let changed = cache.refresh(stored);
        if let Some((repo, index)) = cache.repo.as_ref().zip(changed) {
            let path = repo.store_dir().join(INDEX_FILE);
            // The index is a cache: failing to save it only costs reading the runs again.
            let saved = serde_json::to_vec(&index)
                .map_err(std::io::Error::other)
                .and_then(|bytes| crate::runfiles::atomic_write(&path, &bytes));
            if let Err(e) = saved {
                tracing::warn!("cannot save the response cache index {}: {e}", path.display());
            }
        }
        cache
    }

    /// Keeps what `stored` says of unchanged sources, reads the rest; the index to save when
    /// anything changed.
    fn refresh(&mut self, stored: IndexFile) -> Option<IndexFile> {
        let current = self.workspace_journals();
        let mut commits: HashSet<String> = stored.commits.into_iter().collect();
        let mut keep: Vec<Option<usize>> = Vec::with_capacity(stored.files.len());
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let mut changed = false;
        for f in stored.files {
            let fresh = match &f.commit {
                Some(c) => commits.contains(c),
                None => current.get(&(f.run.clone(), f.path.clone())) == Some(&(f.len, f.mtime_ns)),
            };
            if fresh {
                if f.commit.is_none() {
                    seen.insert((f.run.clone(), f.path.clone()));
                }
                keep.push(Some(self.files.len()));
                self.files.push(f);
            } else {
                keep.push(None);
                changed = true;
            }
        }
        for (key, file, custom_id) in stored.entries {
            let (Some(Some(file)), Ok(key)) = (keep.get(file), blake3::Hash::from_hex(&key)) else {
                continue;
            };
            self.map.entry(key).or_insert((*file, custom_id));
        }
        changed |= self.read_workspace(&current, &seen);
        changed |= self.read_commits(&mut commits);
        changed.then(|| IndexFile {
            format: INDEX_FORMAT,
            commits: commits.into_iter().collect(),
            files: self.files.clone(),
            entries: self
                .map
                .iter()
                .map(|(k, (f, id))| (k.to_hex().to_string(), *f, id.clone()))
                .collect(),
        })
    }

    /// Every journal of the workspace's run folders: (run id, path in the run) -> (len, mtime).
    fn workspace_journals(&self) -> HashMap<(String, String), (u64, u64)> {
        let mut out = HashMap::new();
        let Ok(runs) = std::fs::read_dir(&self.experiments) else { return out };
        for run in runs.flatten() {
            let files = RunFiles::Folder(run.path());
            let Some((run_id, ctx)) = run_context(&files) else { continue };
            for path in journals(&files, &ctx) {
                let Ok(meta) = std::fs::metadata(run.path().join(&path)) else { continue };
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                out.insert((run_id.clone(), path), (meta.len(), mtime));
            }
        }
        out
    }

    /// Reads the workspace journals not in `seen`; whether it read any.
    fn read_workspace(
        &mut self,
        current: &HashMap<(String, String), (u64, u64)>,
        seen: &HashSet<(String, String)>,
    ) -> bool {
        let mut todo: Vec<_> = current.iter().filter(|(k, _)| !seen.contains(*k)).collect();
        todo.sort();
        let mut contexts: HashMap<String, Option<RunContext>> = HashMap::new();
        for ((run, path), (len, mtime)) in &todo {
            let files = RunFiles::Folder(crate::runfiles::run_dir(&self.experiments, run));
            let ctx =
                contexts.entry(run.clone()).or_insert_with(|| run_context(&files).map(|(_, c)| c));
            let Some(ctx) = ctx else { continue };
            let source = SourceFile {
                run: run.clone(),
                commit: None,
                path: path.clone(),
                len: *len,
                mtime_ns: *mtime,
            };
            self.add(&files, ctx, source);
        }
        !todo.is_empty()
    }

    /// Reads the runs of commits that refs name and the index has not read; whether it read any.
    fn read_commits(&mut self, commits: &mut HashSet<String>) -> bool {
        let Some(repo) = self.repo.take() else { return false };
        let refs = repo.list_refs().unwrap_or_default();
        let mut changed = false;
        for (_, id, _) in refs {
            if !commits.insert(id.to_hex()) {
                continue;
            }
            changed = true;
            let files = RunFiles::Commit(&repo, id);
            let Some((run, ctx)) = run_context(&files) else { continue };
            for path in journals(&files, &ctx) {
                let source = SourceFile {
                    run: run.clone(),
                    commit: Some(id.to_hex()),
                    path,
                    len: 0,
                    mtime_ns: 0,
                };
                self.add(&files, &ctx, source);
            }
        }
        self.repo = Some(repo);
        changed
    }

    /// Reads one source journal into the index. Its answers were just derived from the source
    /// itself, so they are kept as verified: a hit on them needs no second read.
    fn add(&mut self, files: &RunFiles<'_>, ctx: &RunContext, source: SourceFile) {
        match keyed_answers(files, ctx, &source.path) {
            Ok(answers) => {
                let index = self.files.len();
                let mut by_id = HashMap::with_capacity(answers.len());
                for (key, entry) in answers {
                    self.map.entry(key).or_insert((index, entry.custom_id.clone()));
                    by_id.insert(entry.custom_id.clone(), (key, entry));
                }
                self.verified.insert(index, by_id);
                self.files.push(source);
            }
            Err(e) => tracing::debug!("response cache: skipping {}: {e}", source.path),
        }
    }

    /// The answer to the request with `key`, re-derived from its source (never from the index
    /// alone), with the provenance to journal it under.
    fn answer(&mut self, key: &blake3::Hash) -> Option<(Entry, Reused)> {
        let (file, custom_id) = self.map.get(key)?.clone();
        let source = self.files.get(file)?.clone();
        if !self.verified.contains_key(&file) {
            let answers = self.derive(&source).unwrap_or_default();
            let by_id = answers.into_iter().map(|(k, e)| (e.custom_id.clone(), (k, e))).collect();
            self.verified.insert(file, by_id);
        }
        let (k, entry) = self.verified.get(&file)?.get(&custom_id)?;
        (k == key).then(|| {
            (entry.clone(), Reused { run: source.run.clone(), commit: source.commit.clone() })
        })
    }

    fn derive(&self, source: &SourceFile) -> Option<Vec<(blake3::Hash, Entry)>> {
        let files = match &source.commit {
            Some(c) => RunFiles::Commit(self.repo.as_ref()?, c.parse().ok()?),
            None => RunFiles::Folder(crate::runfiles::run_dir(&self.experiments, &source.run)),
        };
        let (run, ctx) = run_context(&files)?;
        if run != source.run {
            return None;
        }
        keyed_answers(&files, &ctx, &source.path).ok()
    }
}

/// The index at `path`, or an empty one when it is missing, too large, or not an index this
/// exp wrote (then it is rebuilt from the runs).
fn load_index(path: &Path) -> IndexFile {
    let valid = |i: &IndexFile| {
        i.format == INDEX_FORMAT
            && i.commits.iter().all(|c| c.parse::<ObjectId>().is_ok())
            && i.files.iter().all(|f| {
                crate::eval::config::is_safe_name(&f.run)
                    && f.commit.as_deref().is_none_or(|c| c.parse::<ObjectId>().is_ok())
                    && f.path.split('/').count() == 4
                    && f.path.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
            })
            && i.entries.iter().all(|(k, f, _)| k.len() == 64 && *f < i.files.len())
    };
    let read = || -> Option<IndexFile> {
        if std::fs::metadata(path).ok()?.len() > MAX_INDEX_BYTES {
            return None;
        }
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    };
    match read() {
        Some(i) if valid(&i) => i,
        Some(_) => {
            tracing::warn!("response cache index {} is damaged: rebuilding it", path.display());
            IndexFile::default()
        }
        None => IndexFile::default(),
    }
}

/// What the cache stage needs of this run.
pub struct ReuseInput<'a> {
    pub workspace: &'a Path,
    pub experiments: &'a Path,
    /// One keyer per model of the config, in its order (`ExecJob::model` indexes it).
    pub keyers: Vec<Keyer>,
    /// Dataset name -> hash of the prepared version.
    pub datasets: HashMap<String, String>,
    pub fsync: bool,
}

/// The cache stage of `exp run`: every pending request of `jobs` with a reusable answer gets
/// it journaled (and counted as done); the number of answers reused.
pub fn reuse(
    input: &ReuseInput<'_>,
    jobs: &mut [ExecJob],
    pending: &mut u64,
    progress: &dyn Progress,
) -> Result<u64, CacheError> {
    let mut cache = Cache::open(input.workspace, input.experiments);
    if cache.map.is_empty() {
        return Ok(0);
    }
    let syncer = Syncer::start(input.fsync);
    progress.start("cache", *pending, false);
    let mut hits = 0;
    for job in jobs.iter_mut() {
        let n = reuse_job(&mut cache, input, job, &syncer)?;
        hits += n.0;
        progress.advance(n.1);
    }
    progress.finish();
    syncer.finish()?;
    *pending -= hits;
    Ok(hits)
}

/// How many request lines are keyed at once: enough to keep every core busy, few enough that a
/// million-line job is never held in memory.
const KEY_BATCH_LINES: usize = 4096;

/// One job's hits journaled; (hits, requests looked up).
fn reuse_job(
    cache: &mut Cache,
    input: &ReuseInput<'_>,
    job: &mut ExecJob,
    syncer: &Syncer,
) -> Result<(u64, u64), CacheError> {
    let expected = (job.end - job.start) as u64 * u64::from(job.repeats);
    if job.done.len() as u64 >= expected {
        return Ok((0, 0));
    }
    let Some(keyer) = input.keyers.get(job.model) else { return Ok((0, 0)) };
    let dataset_hash = input.datasets.get(&job.dataset).map(String::as_str).unwrap_or_default();
    let read_err = |source| CacheError::Read { path: job.inputs.clone(), source };
    let file = std::fs::File::open(&job.inputs).map_err(read_err)?;
    let mut lines = std::io::BufReader::new(file).lines().enumerate();
    let mut journal = None;
    let (mut hits, mut looked) = (0, 0);
    loop {
        let batch: Vec<(usize, String)> = lines
            .by_ref()
            .take(KEY_BATCH_LINES)
            .map(|(i, line)| line.map(|line| (i, line)))
            .collect::<Result<_, _>>()
            .map_err(read_err)?;
        if batch.is_empty() {
            return Ok((hits, looked));
        }
        for (custom_id, key) in pending_keys(&batch, job, keyer, dataset_hash) {
            // A request file repeating an id reuses an answer for the first only.
            if job.done.contains(&custom_id) {
                continue;
            }
            looked += 1;
            let Some((source, reused)) = key.and_then(|key| cache.answer(&key)) else { continue };
            let entry = Entry { custom_id: custom_id.clone(), reused: Some(reused), ..source };
            let j = match &journal {
                Some(j) => j,
                None => journal.insert(journal::open(&job.journal)?),
            };
            j.append(&entry, syncer)?;
            job.done.insert(custom_id);
            hits += 1;
        }
    }
}

/// The requests of `batch` (numbered lines of the job's request file) not yet answered, in
/// order, with their keys (`None`: never cached), computed on every core.
fn pending_keys(
    batch: &[(usize, String)],
    job: &ExecJob,
    keyer: &Keyer,
    dataset_hash: &str,
) -> Vec<(String, Option<blake3::Hash>)> {
    batch
        .par_iter()
        .filter_map(|(i, line)| {
            // A line execution cannot read either is left for it to report.
            let (custom_id, body) = parse_request(line).ok()?;
            if job.done.contains(&custom_id) {
                return None;
            }
            let repeat = (i % job.repeats.max(1) as usize) as u32;
            let key = keyer.key(&body, repeat, &custom_id, dataset_hash);
            Some((custom_id, key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(yaml: &str) -> ModelConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn canonical_json_sorts_keys_and_writes_values_as_serde_json_does() {
        // Keys already in caches were made from this text: it must never change.
        let body: Value = serde_json::from_str(
            r#"{"z": [true, null, {"k": "v", "a": -0.5e-3}], "b": "\u00e9\n\"q\"", "a": 12}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        canonical(&body, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":12,"b":"é\n\"q\"","z":[true,null,{"a":-0.0005,"k":"v"}]}"#
        );
    }

    #[test]
    fn keys_differ_by_parameter_repeat_and_endpoint_but_not_by_key_order() {
        let m = model("{name: m, provider: openai, base_url: 'http://h/v1'}");
        let k = Keyer::new(&m, &[]);
        let a = br#"{"model":"x","temperature":0.0,"extra":{"a":1,"b":2}}"#;
        let reordered = br#"{"extra":{"b":2,"a":1},"temperature":0.0,"model":"x"}"#;
        let warmer = br#"{"model":"x","temperature":1.0,"extra":{"a":1,"b":2}}"#;
        let key = |k: &Keyer, b: &[u8], r| k.key(b, r, "d:1:control:r0", "h").unwrap();
        assert_eq!(key(&k, a, 0), key(&k, reordered, 0));
        assert_ne!(key(&k, a, 0), key(&k, warmer, 0));
        assert_ne!(key(&k, a, 0), key(&k, a, 1));
        let other = Keyer::new(&model("{name: m, provider: openai, base_url: 'http://o/v1'}"), &[]);
        assert_ne!(key(&k, a, 0), key(&other, a, 0));
        // Which key variable the endpoint reads from is not part of the request.
        let keyed =
            model("{name: m, provider: openai, base_url: 'http://h/v1/', api_key_env: SECRET_VAR}");
        assert_eq!(key(&k, a, 0), key(&Keyer::new(&keyed, &[]), a, 0));
        assert!(k.key(b"not json", 0, "c", "h").is_none());
    }

    #[test]
    fn sim_keys_depend_on_the_item_and_the_simulation() {
        let m = model(
            "{name: s, provider: sim, sim: {accuracy: {control: 0.5, treatment: 0.6}, seed: 1}}",
        );
        let k = Keyer::new(&m, &["a".into()]);
        let body = br#"{"model":"s"}"#;
        let base = k.key(body, 0, "d:1:control:r0", "h1").unwrap();
        assert_ne!(base, k.key(body, 0, "d:2:control:r0", "h1").unwrap());
        assert_ne!(base, k.key(body, 0, "d:1:control:r0", "h2").unwrap());
        let reseeded = model(
            "{name: s, provider: sim, sim: {accuracy: {control: 0.5, treatment: 0.6}, seed: 2}}",
        );
        assert_ne!(
            base,
            Keyer::new(&reseeded, &["a".into()]).key(body, 0, "d:1:control:r0", "h1").unwrap()
        );
    }

    #[test]
    fn a_damaged_or_foreign_index_is_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(load_index(&path).files.is_empty());
        let bad = serde_json::json!({"format": 1, "commits": [], "files": [
            {"run": "r", "commit": null, "path": "../../etc/passwd", "len": 0, "mtime_ns": 0}],
            "entries": []});
        std::fs::write(&path, bad.to_string()).unwrap();
        assert!(load_index(&path).files.is_empty());
        let dangling = serde_json::json!({"format": 1, "commits": [], "files": [],
            "entries": [["00".repeat(32), 3, "c"]]});
        std::fs::write(&path, dangling.to_string()).unwrap();
        assert!(load_index(&path).entries.is_empty());
    }
}
