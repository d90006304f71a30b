//! `Repo`: one workspace and its store (`<workspace>/.exprepo`). Opening, revision syntax,
//! reading files at a commit, reachability, and committing a run folder.
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::{Error, IoContext, Result};
use super::index::Index;
use super::object::{Commit, Kind, Mode, Object, Summary, TreeEntry};
use super::odb::Odb;
use super::refs::{Expect, Head, RefName, Refs};
use super::worktree::{self, Stored};
use super::{FORMAT_VERSION, ObjectId, STORE_DIR};
use crate::progress::Progress;
use crate::provenance::Provenance;

/// A workspace with a store.
#[derive(Debug, Clone)]
pub struct Repo {
    workspace: PathBuf,
    store: PathBuf,
    /// Where run folders go by default (`experiments/` unless the CLI read another from the
    /// config: the store itself never reads configs).
    experiments: PathBuf,
    pub odb: Odb,
    pub refs: Refs,
}

/// What `resolve_named` found: the object, and the ref it came through (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub id: ObjectId,
    pub name: Option<RefName>,
}

/// Options of `commit_run`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Overrides the id taken from the folder name.
    pub run_id: Option<String>,
    /// Overrides the message the run states ([`CommitMeta::message`]).
    pub message: Option<String>,
    /// Overrides the tag the run states ([`CommitMeta::tag`]).
    pub tag: Option<String>,
    /// Hash only; store and change nothing.
    pub dry_run: bool,
    /// A run's first commit gets this parent instead of the commit HEAD names (`exp rescore`:
    /// the run it rescored).
    pub parent: Option<ObjectId>,
}

/// What a run states about itself, for its commit: read by the caller (the store knows nothing
/// of run files), each `None` where the run does not say.
#[derive(Debug, Clone, Default)]
pub struct CommitMeta {
    pub message: Option<String>,
    /// The run's name (`exp run --name`), beside its id.
    pub name: Option<String>,
    pub tag: Option<String>,
    pub status: Option<String>,
    pub config_hash: Option<String>,
    /// What could not be read (a torn run.json, say): the files are committed regardless.
    pub warnings: Vec<String>,
}

/// The rest of a new commit: the compact summary `log` and `list` show, and the code's
/// provenance.
#[derive(Debug, Clone, Default)]
pub struct CommitDetails {
    pub summary: Summary,
    pub provenance: Provenance,
    pub warnings: Vec<String>,
}

/// Describes a run folder for its commit. The store calls it, so it needs no knowledge of runs;
/// `exp::eval::archive::RunFolder` reads the run's files.
pub trait DescribeRun {
    /// Message, tag, status and config hash: read for every commit of the folder.
    fn meta(&self, run_dir: &Path) -> CommitMeta;
    /// Summary and provenance: asked for only when a new commit is made, since reading results
    /// and asking git about the code are wasted on an unchanged re-commit.
    fn details(&self, run_dir: &Path) -> CommitDetails;
}

/// What `commit_run` did.
#[derive(Debug, Clone, Serialize)]
pub struct CommitOutcome {
    pub run_id: String,
    pub ref_name: String,
    /// The commit `runs/<ID>` now names (None on a dry run of a new run).
    pub commit: Option<ObjectId>,
    pub previous: Option<ObjectId>,
    /// The folder matched the run's last commit: no new commit was made.
    pub unchanged: bool,
    pub tag: Option<String>,
    pub dry_run: bool,
    /// What storing the folder did: tree, sizes, new objects; its per-file listing only on a
    /// dry run (empty otherwise, to keep the outcome small).
    #[serde(flatten)]
    pub stored: Stored,
    /// What could not be read into the commit's metadata (a torn run.json, say); the files
    /// themselves are committed regardless.
    pub warnings: Vec<String>,
}

fn write_format(store: &Path) -> Result<()> {
    super::atomic::atomic_write(&store.join("format"), format!("{FORMAT_VERSION}\n").as_bytes())
}

impl Repo {
    fn at(workspace: &Path) -> Repo {
        let store = workspace.join(STORE_DIR);
        Repo {
            workspace: workspace.to_path_buf(),
            experiments: super::workspace::Folders::standard(workspace).experiments,
            odb: Odb::new(store.join("objects")),
            refs: Refs::new(store.clone()),
            store,
        }
    }

    /// Create `<workspace>/.exprepo`; Ok(false) when it already existed (nothing is changed).
    pub fn init(workspace: &Path) -> Result<(Repo, bool)> {
        let workspace = absolute(workspace)?;
        let store = workspace.join(STORE_DIR);
        if store.join("format").is_file() {
            return Ok((Repo::open(&workspace)?, false));
        }
        for d in ["objects/tmp", "refs/runs", "refs/tags", "logs"] {
            super::atomic::create_dirs(&store.join(d))?;
        }
        write_format(&store)?;
        Ok((Repo::at(&workspace), true))
    }

    /// Open the store of exactly this workspace.
    pub fn open(workspace: &Path) -> Result<Repo> {
        let workspace = absolute(workspace)?;
        let store = workspace.join(STORE_DIR);
        let fmt = store.join("format");
        let text = match fs::read_to_string(&fmt) {
            Ok(t) => t,
            Err(_) => return Err(Error::NotARepo { start: workspace }),
        };
        match text.trim() {
            "2" => {}
            // Format 1 is format 2 without packs. Mark it 2 before this exp may write a pack,
            // so an older exp refuses the store instead of missing packed objects. A read-only
            // store stays 1 and is read as it is.
            "1" => {
                let _ = super::atomic::atomic_write(&fmt, format!("{FORMAT_VERSION}\n").as_bytes());
            }
            found => {
                return Err(Error::UnsupportedFormat {
                    path: fmt,
                    found: found.to_string(),
                    supported: FORMAT_VERSION,
                });
            }
        }
        Ok(Repo::at(&workspace))
    }

    /// The nearest workspace at or above `start` holding a store.
    pub fn discover(start: &Path) -> Result<Repo> {
        let start = absolute(start)?;
        let mut dir = Some(start.as_path());
        while let Some(d) = dir {
            if d.join(STORE_DIR).join("format").is_file() {
                return Repo::open(d);
            }
            dir = d.parent();
        }
        Err(Error::NotARepo { start })
    }

    /// `--repo DIR` when given, else discovery from `cwd`.
    pub fn locate(explicit: Option<&Path>, cwd: &Path) -> Result<Repo> {
        match explicit {
            Some(d) => Repo::open(d),
            None => Repo::discover(cwd),
        }
    }

    /// Open the store, creating it when there is none (for `exp run --archive`, `exp import`).
    /// The bool says it was created, so the command can say so.
    pub fn open_or_init(explicit: Option<&Path>, cwd: &Path) -> Result<(Repo, bool)> {
        match Repo::locate(explicit, cwd) {
            Ok(r) => Ok((r, false)),
            Err(Error::NotARepo { .. }) => Repo::init(explicit.unwrap_or(cwd)),
            Err(e) => Err(e),
        }
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// The index with every folder's entries loaded (status, clean, gc).
    pub fn load_index(&self) -> Index {
        let mut index = Index::open(&self.store.join(super::index::INDEX_DIR));
        index.load_all();
        index
    }

    /// The index with only the entries of the folder `key` loaded: what a commit or checkout of
    /// one run folder needs, whatever the number of runs in the workspace.
    pub fn load_index_for(&self, key: &str) -> Index {
        let mut index = Index::open(&self.store.join(super::index::INDEX_DIR));
        index.load_folder(key);
        index
    }

    /// `path`'s place in the workspace (`experiments/run_X`), or its absolute path when it lies
    /// outside: the index key prefix, and where checkout puts a run back.
    pub fn workspace_key(&self, path: &Path) -> Result<(String, bool)> {
        let abs = absolute(path)?;
        let abs = fs::canonicalize(&abs).unwrap_or(abs);
        let ws = fs::canonicalize(&self.workspace).unwrap_or(self.workspace.clone());
        match abs.strip_prefix(&ws) {
            Ok(rel) => Ok((rel.to_string_lossy().to_string(), true)),
            Err(_) => Ok((abs.to_string_lossy().to_string(), false)),
        }
    }

    pub fn read_commit(&self, id: &ObjectId) -> Result<Commit> {
        self.odb.read_commit(id)
    }

    /// Resolve a revision to an object id (see `resolve_named`).
    pub fn resolve(&self, rev: &str) -> Result<ObjectId> {
        Ok(self.resolve_named(rev)?.id)
    }

    /// Revision syntax: a run id, `runs/ID`, `tags/NAME`, a tag name, a hex prefix of at least 4
    /// digits, `HEAD`, followed by any of `~N` (N-th first parent, `~` = `~1`) and `@{N}`
    /// (the N-th previous value in the ref's reflog). Names matching several different objects
    /// are an error listing them.
    pub fn resolve_named(&self, rev: &str) -> Result<Resolved> {
        let unknown = || Error::UnknownRevision { rev: rev.to_string() };
        let cut = rev.find(['~', '@']).unwrap_or(rev.len());
        let (base, mut mods) = rev.split_at(cut);
        if base.is_empty() {
            return Err(unknown());
        }
        let mut candidates: Vec<(String, ObjectId, Option<RefName>)> = Vec::new();
        let mut ref_names = Vec::new();
        if base == "HEAD" {
            ref_names.push(RefName::head());
        } else if base.contains('/') {
            ref_names.push(RefName::new(base).map_err(|_| unknown())?);
        } else {
            for n in [RefName::run(base), RefName::tag(base)].into_iter().flatten() {
                ref_names.push(n);
            }
        }
        for n in ref_names {
            if let Some(id) = self.refs.read(&n)? {
                candidates.push((n.to_string(), id, Some(n)));
            }
        }
        // A ref wins over a hex prefix, as in git: a run named `c108` is that run even when some
        // object's id starts with c108 (with thousands of objects, most short names collide).
        if candidates.is_empty() && base.len() >= 4 && ObjectId::is_hex_prefix(base) {
            for id in self.odb.ids_with_prefix(base)? {
                if !candidates.iter().any(|c| c.1 == id) {
                    candidates.push((id.to_hex(), id, None));
                }
            }
        }
        let distinct: BTreeSet<ObjectId> = candidates.iter().map(|c| c.1).collect();
        if distinct.len() > 1 {
            let mut list: Vec<String> = candidates
                .iter()
                .map(
                    |(n, id, r)| {
                        if r.is_some() { format!("{n} ({})", id.short()) } else { n.clone() }
                    },
                )
                .collect();
            list.sort();
            return Err(Error::Ambiguous { rev: base.to_string(), candidates: list });
        }
        let Some((_, mut id, mut name)) = candidates.into_iter().next() else {
            return Err(unknown());
        };
        while !mods.is_empty() {
            if let Some(rest) = mods.strip_prefix("@{") {
                let close = rest.find('}').ok_or_else(unknown)?;
                let n: usize = rest[..close].parse().map_err(|_| unknown())?;
                let r = name.clone().ok_or_else(unknown)?;
                let log = self.refs.reflog(&r)?;
                if n > 0 || log.is_empty() {
                    let entry = log
                        .len()
                        .checked_sub(n + 1)
                        .and_then(|i| log.get(i))
                        .and_then(|e| e.new)
                        .ok_or(Error::ReflogOutOfRange {
                            name: r.to_string(),
                            n,
                            len: log.len(),
                        })?;
                    id = entry;
                }
                name = None;
                mods = &rest[close + 1..];
            } else if let Some(rest) = mods.strip_prefix('~') {
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let n: usize =
                    if digits == 0 { 1 } else { rest[..digits].parse().map_err(|_| unknown())? };
                for _ in 0..n {
                    let c = self.read_commit(&id)?;
                    id = *c.parents.first().ok_or(Error::NoParent { rev: rev.to_string(), id })?;
                }
                name = None;
                mods = &rest[digits..];
            } else {
                return Err(unknown());
            }
        }
        Ok(Resolved { id, name })
    }

    /// Resolve `rev` and check it names a commit.
    pub fn resolve_commit(&self, rev: &str) -> Result<(ObjectId, Commit)> {
        let id = self.resolve(rev)?;
        let c = self.read_commit(&id)?;
        Ok((id, c))
    }

    /// The entry at `path` (`a/b.json`) in `commit`'s tree; "" is the root.
    pub fn lookup_path(&self, commit: &ObjectId, path: &str) -> Result<TreeEntry> {
        let c = self.read_commit(commit)?;
        let mut entry = TreeEntry { name: String::new(), mode: Mode::Tree, id: c.tree };
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            let not_found = || Error::PathNotFound { rev: commit.short(), path: path.to_string() };
            if entry.mode != Mode::Tree {
                return Err(not_found());
            }
            let tree = self.odb.read_tree(&entry.id)?;
            entry = tree.get(part).cloned().ok_or_else(not_found)?;
        }
        Ok(entry)
    }

    /// The bytes of the file at `path` in `commit` (a symlink gives its target).
    pub fn read_path(&self, commit: &ObjectId, path: &str) -> Result<Vec<u8>> {
        let e = self.lookup_path(commit, path)?;
        if e.mode == Mode::Tree {
            return Err(Error::WrongKind { id: e.id, expected: "blob", actual: "tree" });
        }
        self.odb.read_blob(&e.id)
    }

    /// Every object reachable from `tips` (commits, their parents, trees, blobs). Missing
    /// objects are an error: a push or gc must never act on a broken graph.
    pub fn reachable_objects(&self, tips: &[ObjectId]) -> Result<HashSet<ObjectId>> {
        let mut seen = HashSet::new();
        let mut stack: Vec<ObjectId> = tips.to_vec();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            match self.odb.header(&id)?.0 {
                Kind::Blob => {}
                Kind::Tree => {
                    for e in self.odb.read_tree(&id)?.entries {
                        if !seen.contains(&e.id) {
                            stack.push(e.id);
                        }
                    }
                }
                Kind::Commit => {
                    let c = self.read_commit(&id)?;
                    stack.push(c.tree);
                    stack.extend(c.parents);
                }
            }
        }
        Ok(seen)
    }

    /// Run folders go to `dir` by default (the config's `paths.experiments_dir`).
    pub fn with_experiments_dir(mut self, dir: PathBuf) -> Repo {
        self.experiments = dir;
        self
    }

    /// Where a run's folder goes by default: `experiments/run_<ID>`.
    pub fn default_run_dir(&self, run_id: &str) -> PathBuf {
        self.experiments.join(format!("run_{run_id}"))
    }

    /// Where commit `id` is checked out by default: `experiments/run_<ID>` of its run id. Only
    /// the run id, checked to be one safe name, chooses the folder: a commit's other fields
    /// (`path`) are free text that a forged commit from a remote could point anywhere.
    pub fn checkout_dir(&self, id: &ObjectId, commit: &Commit) -> Result<PathBuf> {
        super::refs::check_component(&commit.run_id).map_err(|reason| Error::CommitRunId {
            commit: *id,
            id: commit.run_id.clone(),
            reason,
        })?;
        Ok(self.default_run_dir(&commit.run_id))
    }

    /// Commit the run folder `run_dir` to `runs/<ID>` (see `CommitOptions`), saying of the run
    /// what `describe` reads from it. The id comes from a folder named `run_<ID>`, else the
    /// folder's name. A folder identical to the run's last commit makes no new commit.
    /// Concurrent committers of the same run are serialized by the ref's compare-and-swap: a
    /// loser re-reads the ref and retries on top of the winner.
    pub fn commit_run(
        &self,
        run_dir: &Path,
        describe: &dyn DescribeRun,
        options: &CommitOptions,
        progress: &dyn Progress,
    ) -> Result<CommitOutcome> {
        let run_dir = absolute(run_dir)?;
        match fs::metadata(&run_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Error::NotADirectory { path: run_dir }),
            Err(e) => return Err(Error::io(&run_dir, e)),
        }
        let run_id = match &options.run_id {
            Some(id) => id.clone(),
            None => run_id_of(&run_dir),
        };
        let ref_name = RefName::run(&run_id)?;
        self.commit_folder(&run_dir, &run_id, ref_name, describe, options, true, progress)
    }

    /// Commit `run_dir` as run `run_id` onto `ref_name` (runs/ID, or saved/… for
    /// `exp clean --force`); `set_head` moves HEAD to it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_folder(
        &self,
        run_dir: &Path,
        run_id: &str,
        ref_name: RefName,
        describe: &dyn DescribeRun,
        options: &CommitOptions,
        set_head: bool,
        progress: &dyn Progress,
    ) -> Result<CommitOutcome> {
        let run_id = run_id.to_string();
        let run_dir = run_dir.to_path_buf();
        let meta = describe.meta(&run_dir);
        let mut warnings = meta.warnings.clone();
        let tag = options.tag.clone().or_else(|| meta.tag.clone());
        let tag_ref = tag.as_deref().map(RefName::tag).transpose()?;
        let (key, inside) = self.workspace_key(&run_dir)?;
        let mut index = self.load_index_for(&key);
        let mut stored =
            worktree::store_dir(&self.odb, &mut index, &run_dir, &key, options.dry_run, progress)?;
        if !options.dry_run {
            stored.listing = Vec::new();
        }
        let tree = stored.tree;
        let previous = self.refs.read(&ref_name)?;
        let mut outcome = CommitOutcome {
            run_id: run_id.clone(),
            ref_name: ref_name.to_string(),
            commit: previous,
            previous,
            unchanged: false,
            tag: tag.clone(),
            dry_run: options.dry_run,
            stored,
            warnings: warnings.clone(),
        };
        if options.dry_run {
            outcome.unchanged = match previous {
                Some(p) => self.read_commit(&p)?.tree == tree,
                None => false,
            };
            return Ok(outcome);
        }
        // The index is a cache: failing to save it only costs re-hashing next time.
        let _ = index.save();
        tracing::debug!("index saved");
        // Summary and provenance are only needed for a new commit (see `DescribeRun::details`).
        let mut details: Option<(Summary, Provenance)> = None;
        let message = options
            .message
            .clone()
            .or_else(|| meta.message.clone())
            .unwrap_or_else(|| format!("commit run {run_id}"));
        // Lineage, as in git: a re-commit follows the run's own previous commit; a run's first
        // commit follows the commit HEAD names (the workspace's previous run), so `HEAD~1` is
        // the previous run and `exp log` reads as history. Saved snapshots (`set_head` false)
        // are side branches and keep no such parent.
        let mut attempts = 0;
        let commit_id = loop {
            attempts += 1;
            let current = self.refs.read(&ref_name)?;
            if let Some(cur) = current
                && self.read_commit(&cur)?.tree == tree
            {
                outcome.unchanged = true;
                break cur;
            }
            let (summary, provenance) = details.get_or_insert_with(|| {
                let d = describe.details(&run_dir);
                warnings.extend(d.warnings);
                tracing::debug!("summary and provenance read");
                (d.summary, d.provenance)
            });
            let commit = Commit {
                tree,
                parents: match current {
                    Some(previous) => vec![previous],
                    None if options.parent.is_some() => options.parent.into_iter().collect(),
                    None if set_head => self.refs.read(&RefName::head())?.into_iter().collect(),
                    None => Vec::new(),
                },
                time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                message: message.clone(),
                run_id: run_id.clone(),
                name: meta.name.clone(),
                status: meta.status.clone(),
                config_hash: meta.config_hash.clone(),
                provenance: Some(provenance.clone()),
                exp_version: env!("CARGO_PKG_VERSION").to_string(),
                path: inside.then(|| key.clone()),
                summary: summary.clone(),
            };
            let id = self.odb.write(&Object::Commit(Box::new(commit)))?;
            let expect = current.map(Expect::Value).unwrap_or(Expect::Absent);
            match self.refs.update(&ref_name, id, expect, &format!("commit: {message}")) {
                Ok(()) => break id,
                Err(Error::RefChanged { .. }) if attempts < 5 => continue,
                Err(e) => return Err(e),
            }
        };
        outcome.commit = Some(commit_id);
        outcome.warnings = warnings;
        if let Some(t) = &tag_ref {
            match self.refs.read(t)? {
                Some(existing) if existing == commit_id => {}
                Some(existing) => {
                    return Err(Error::TagExists { name: t.short().to_string(), id: existing });
                }
                None => self.refs.update(t, commit_id, Expect::Absent, "tag")?,
            }
        }
        // HEAD already naming this run is the common case of a re-commit: no write, no fsync.
        let head = Head::Symbolic(ref_name);
        if set_head && self.refs.head()? != head {
            self.refs.set_head(&head, &format!("commit: run {run_id}"))?;
        }
        // Only a lookup optimization, after the commit is safe: a failure leaves one more pack.
        if outcome.stored.new_objects > 0
            && let Err(e) = self.odb.merge_small_packs()
        {
            tracing::warn!("merging small packs: {e}");
        }
        Ok(outcome)
    }

    /// Commits reachable from `tips`, newest first (by time, then id), at most `limit`.
    pub fn log(&self, tips: &[ObjectId], limit: Option<usize>) -> Result<Vec<(ObjectId, Commit)>> {
        let mut seen = HashSet::new();
        let mut stack: Vec<ObjectId> = tips.to_vec();
        let mut out = Vec::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let c = self.read_commit(&id)?;
            stack.extend(c.parents.iter().copied());
            out.push((id, c));
        }
        // Times have one-second resolution, so a run and the one before it can tie: within a
        // tie a commit comes before its ancestors (higher generation first), as git's log does.
        let generation = generations(&out);
        out.sort_by(|a, b| {
            b.1.time
                .cmp(&a.1.time)
                .then(generation[&b.0].cmp(&generation[&a.0]))
                .then(a.0.cmp(&b.0))
        });
        if let Some(n) = limit {
            out.truncate(n);
        }
        Ok(out)
    }

    /// Every ref with its commit, for `exp list` and `exp log --all`.
    pub fn list_refs(&self) -> Result<Vec<(RefName, ObjectId, Commit)>> {
        let mut out = Vec::new();
        for (name, id) in self.refs.list("")? {
            let c = self.read_commit(&id)?;
            out.push((name, id, c));
        }
        Ok(out)
    }

    /// Refs naming `id` (for decorating log lines).
    pub fn refs_pointing_at(&self, id: &ObjectId) -> Result<Vec<RefName>> {
        Ok(self.refs.list("")?.into_iter().filter(|(_, i)| i == id).map(|(n, _)| n).collect())
    }

    /// Check `rev` out into `to` (default: the folder it was committed from) and point HEAD at it.
    pub fn checkout(
        &self,
        rev: &str,
        to: Option<&Path>,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<CheckoutOutcome> {
        let resolved = self.resolve_named(rev)?;
        let commit = self.read_commit(&resolved.id)?;
        let dest = match to {
            Some(d) => absolute(d)?,
            None => self.checkout_dir(&resolved.id, &commit)?,
        };
        super::workspace::check_destination(self, &dest, &commit.run_id, force)?;
        let (key, _) = self.workspace_key(&dest)?;
        let mut index = self.load_index_for(&key);
        let done =
            worktree::checkout(&self.odb, &mut index, &commit.tree, &dest, &key, force, progress)?;
        let _ = index.save();
        let head = match &resolved.name {
            Some(n) if !n.is_head() => Head::Symbolic(n.clone()),
            _ => Head::Detached(resolved.id),
        };
        self.refs.set_head(&head, &format!("checkout: {rev}"))?;
        Ok(CheckoutOutcome {
            commit: resolved.id,
            run_id: commit.run_id,
            dest,
            files: done.files,
            bytes: done.bytes,
            written: done.written,
            removed: done.removed,
        })
    }

    /// Create tag `name` at `rev` (HEAD when None).
    pub fn tag(&self, name: &str, rev: Option<&str>) -> Result<(RefName, ObjectId)> {
        let r = RefName::tag(name)?;
        let id = self.resolve(rev.unwrap_or("HEAD"))?;
        self.read_commit(&id)?;
        if let Some(existing) = self.refs.read(&r)? {
            return Err(Error::TagExists { name: name.to_string(), id: existing });
        }
        self.refs.update(&r, id, Expect::Absent, &format!("tag {name}"))?;
        Ok((r, id))
    }

    /// Delete a ref (`runs/ID`, `tags/NAME`, or a bare name meaning whichever of the two
    /// exists). Its reflog stays, so it is recoverable until gc's grace period has passed.
    pub fn remove_ref(&self, rev: &str) -> Result<(RefName, ObjectId)> {
        let name = if rev.contains('/') {
            RefName::new(rev)?
        } else {
            let mut found = Vec::new();
            for n in [RefName::run(rev), RefName::tag(rev)].into_iter().flatten() {
                if let Some(id) = self.refs.read(&n)? {
                    found.push((n, id));
                }
            }
            match found.len() {
                0 => return Err(Error::RefNotFound { name: rev.to_string() }),
                1 => found.remove(0).0,
                _ => {
                    return Err(Error::Ambiguous {
                        rev: rev.to_string(),
                        candidates: found
                            .iter()
                            .map(|(n, id)| format!("{n} ({})", id.short()))
                            .collect(),
                    });
                }
            }
        };
        if name.is_head() {
            return Err(Error::BadRefName {
                name: "HEAD".into(),
                reason: "HEAD cannot be removed",
            });
        }
        let old = self.refs.delete(&name, Expect::Any, "rm")?;
        // HEAD keeps naming the commit rather than a ref that is gone.
        if self.refs.head()? == Head::Symbolic(name.clone()) {
            self.refs.set_head(&Head::Detached(old), &format!("rm {name}"))?;
        }
        Ok((name, old))
    }
}

/// What `Repo::checkout` did.
#[derive(Debug, Clone, Serialize)]
pub struct CheckoutOutcome {
    pub commit: ObjectId,
    pub run_id: String,
    pub dest: PathBuf,
    pub files: u64,
    pub bytes: u64,
    pub written: u64,
    pub removed: u64,
}

/// The run id a folder name implies: `run_<ID>` -> ID, anything else -> the name itself.
/// Each commit's distance from its oldest ancestor within `commits` (parents outside the set
/// count as nothing), computed without recursion so a long history cannot overflow the stack.
fn generations(commits: &[(ObjectId, Commit)]) -> HashMap<ObjectId, usize> {
    let parents: HashMap<ObjectId, &[ObjectId]> =
        commits.iter().map(|(id, c)| (*id, c.parents.as_slice())).collect();
    let mut generation: HashMap<ObjectId, usize> = HashMap::with_capacity(commits.len());
    for (start, _) in commits {
        let mut stack = vec![*start];
        // Ids can't form a cycle (a commit's id covers its parents' ids), but a forged store
        // must not make this loop forever: a commit already on the stack counts as done.
        let mut visiting: HashSet<ObjectId> = HashSet::new();
        while let Some(&id) = stack.last() {
            if generation.contains_key(&id) {
                stack.pop();
                continue;
            }
            visiting.insert(id);
            let pending: Vec<ObjectId> = parents[&id]
                .iter()
                .filter(|p| {
                    parents.contains_key(p) && !generation.contains_key(p) && !visiting.contains(p)
                })
                .copied()
                .collect();
            if pending.is_empty() {
                let g = parents[&id]
                    .iter()
                    .filter_map(|p| generation.get(p))
                    .max()
                    .map_or(0, |g| g + 1);
                generation.insert(id, g);
                stack.pop();
            } else {
                stack.extend(pending);
            }
        }
    }
    generation
}

pub fn run_id_of(dir: &Path) -> String {
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    match name.strip_prefix("run_") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => name,
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).at(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    /// What a run's files would say, fixed: these tests are about the store's side.
    struct Complete;
    impl DescribeRun for Complete {
        fn meta(&self, _: &Path) -> CommitMeta {
            CommitMeta { status: Some("complete".into()), ..Default::default() }
        }
        fn details(&self, _: &Path) -> CommitDetails {
            CommitDetails::default()
        }
    }

    fn run_folder(ws: &Path, id: &str, body: &str) -> PathBuf {
        let d = ws.join("experiments").join(format!("run_{id}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("run.json"), format!(r#"{{"run_id":"{id}","status":"complete"}}"#))
            .unwrap();
        fs::write(d.join("data.csv"), body).unwrap();
        d
    }

    /// A run of 40 files (so it is stored as a pack): one shared by every run, the rest its own.
    fn packed_run(ws: &Path, n: usize) -> PathBuf {
        let d = run_folder(ws, &format!("r{n}"), "shared,config\n");
        for k in 0..39 {
            fs::write(d.join(format!("f{k}.csv")), format!("{n},{k}\n")).unwrap();
        }
        d
    }

    #[test]
    fn a_commit_reads_as_much_of_the_store_after_sixty_runs_as_after_one() {
        let ws = tempfile::tempdir().unwrap();
        Repo::init(ws.path()).unwrap();
        let opts = CommitOptions::default();
        // What one commit, in a process of its own, reads: pack indexes and index entries.
        let commit = |n: usize| {
            let repo = Repo::open(ws.path()).unwrap();
            repo.commit_run(&packed_run(ws.path(), n), &Complete, &opts, &NoProgress).unwrap();
            let (key, _) = repo.workspace_key(&repo.default_run_dir(&format!("r{n}"))).unwrap();
            (repo.odb.pack_indexes_read(), repo.load_index_for(&key).len())
        };
        let first = commit(0);
        let mut last = first;
        for n in 1..=60 {
            last = commit(n);
        }
        assert_eq!(first.1, 41);
        assert_eq!(last.1, first.1, "index entries a commit loads");
        assert!(
            last.0 <= crate::store::odb::MAX_PACKS_BEFORE_MERGE + 1,
            "a commit after 60 runs read {} pack indexes",
            last.0
        );
        let repo = Repo::open(ws.path()).unwrap();
        assert!(repo.odb.packs().unwrap().len() <= crate::store::odb::MAX_PACKS_BEFORE_MERGE);
        // Merging lost nothing: every run reads back whole.
        for n in [0, 30, 60] {
            let tree = repo.read_commit(&repo.resolve(&format!("r{n}")).unwrap()).unwrap().tree;
            let flat = worktree::flatten(&repo.odb, &tree).unwrap();
            assert_eq!(flat.len(), 41);
            for e in flat {
                repo.odb.read_blob(&e.id).unwrap();
            }
        }
    }

    #[test]
    fn gc_recompresses_a_pack_once_and_every_object_still_reads_back() {
        let ws = tempfile::tempdir().unwrap();
        let (repo, _) = Repo::init(ws.path()).unwrap();
        let d = packed_run(ws.path(), 0);
        let words = ["positive", "negative", "neutral", "the", "service", "was", "slow", "refund"];
        for k in 0..39 {
            let text: Vec<&str> = (0..4000).map(|i| words[(i * 7 + k * 3 + i / 5) % 8]).collect();
            fs::write(d.join(format!("f{k}.csv")), text.join(" ")).unwrap();
        }
        repo.commit_run(&d, &Complete, &CommitOptions::default(), &NoProgress).unwrap();
        let size = |repo: &Repo| -> u64 {
            repo.odb.packs().unwrap().iter().map(|p| fs::metadata(&p.pack).unwrap().len()).sum()
        };
        let before = size(&repo);
        let first = super::super::gc::gc(&repo, std::time::Duration::ZERO, false).unwrap();
        assert_eq!(first.packs_recompressed, 1);
        let after = size(&repo);
        assert!(after < before, "{after} bytes after gc, {before} before");
        let second = super::super::gc::gc(&repo, std::time::Duration::ZERO, false).unwrap();
        assert_eq!(second.packs_recompressed, 0);
        assert_eq!(size(&repo), after);
        let repo = Repo::open(ws.path()).unwrap();
        let tree = repo.read_commit(&repo.resolve("r0").unwrap()).unwrap().tree;
        for e in worktree::flatten(&repo.odb, &tree).unwrap() {
            repo.odb.read_blob(&e.id).unwrap();
        }
    }

    #[test]
    fn commit_resolve_and_read_back() {
        let ws = tempfile::tempdir().unwrap();
        let (repo, created) = Repo::init(ws.path()).unwrap();
        assert!(created);
        let d = run_folder(ws.path(), "r1", "a,b\n");
        let o1 = repo.commit_run(&d, &Complete, &CommitOptions::default(), &NoProgress).unwrap();
        assert_eq!(o1.ref_name, "runs/r1");
        let c1 = o1.commit.unwrap();
        let again = repo.commit_run(&d, &Complete, &CommitOptions::default(), &NoProgress).unwrap();
        assert!(again.unchanged && again.commit == Some(c1));
        fs::write(d.join("data.csv"), "a,b\n1,2\n").unwrap();
        let o2 = repo.commit_run(&d, &Complete, &CommitOptions::default(), &NoProgress).unwrap();
        let c2 = o2.commit.unwrap();
        assert_eq!(repo.resolve("r1").unwrap(), c2);
        assert_eq!(repo.resolve("runs/r1~1").unwrap(), c1);
        assert_eq!(repo.resolve("r1@{1}").unwrap(), c1);
        assert_eq!(repo.resolve("HEAD").unwrap(), c2);
        assert_eq!(repo.resolve(&c1.to_hex()[..8]).unwrap(), c1);
        assert_eq!(repo.read_path(&c1, "data.csv").unwrap(), b"a,b\n");
        assert_eq!(repo.read_commit(&c2).unwrap().status.as_deref(), Some("complete"));
        assert!(matches!(repo.resolve("r1~5"), Err(Error::NoParent { .. })));
        assert!(matches!(repo.resolve("nope"), Err(Error::UnknownRevision { .. })));
        let all = repo.reachable_objects(&[c2]).unwrap();
        assert!(all.contains(&c1));
    }

    #[test]
    fn a_name_that_is_both_run_and_tag_of_different_commits_is_ambiguous() {
        let ws = tempfile::tempdir().unwrap();
        let (repo, _) = Repo::init(ws.path()).unwrap();
        let a = repo
            .commit_run(
                &run_folder(ws.path(), "x", "1"),
                &Complete,
                &CommitOptions::default(),
                &NoProgress,
            )
            .unwrap();
        let b = repo
            .commit_run(
                &run_folder(ws.path(), "y", "2"),
                &Complete,
                &CommitOptions::default(),
                &NoProgress,
            )
            .unwrap();
        repo.refs
            .update(&RefName::tag("x").unwrap(), b.commit.unwrap(), Expect::Absent, "t")
            .unwrap();
        let err = repo.resolve("x").unwrap_err();
        assert!(
            matches!(&err, Error::Ambiguous { candidates, .. } if candidates.len() == 2),
            "{err}"
        );
        assert_eq!(repo.resolve("runs/x").unwrap(), a.commit.unwrap());
    }
}
