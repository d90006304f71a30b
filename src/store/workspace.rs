//! The workspace against the store: `status` of every run folder (under `experiments/`, or
//! wherever the config's `paths.experiments_dir` puts them), and `clean` (checkout reset) that
//! removes only what the store can give back.
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::{Error, IoContext, Result};
use super::refs::RefName;
use super::repo::{CommitOptions, DescribeRun, run_id_of};
use super::worktree::{self, Change};
use super::{ObjectId, Repo};
use crate::progress::Progress;

/// Where run folders live, relative to the workspace, unless the config says otherwise.
pub const EXPERIMENTS_DIR: &str = "experiments";
/// Prepared datasets (derived from `data/`, rebuilt on demand), unless the config says otherwise.
pub const PREPARED_DIR: &str = "prepared";

/// Where a workspace keeps its run folders and its prepared datasets (the config's `paths`,
/// resolved: `exp::eval::config::workspace_folders`).
#[derive(Debug, Clone)]
pub struct Folders {
    pub experiments: PathBuf,
    pub prepared: PathBuf,
}

impl Folders {
    /// `experiments/` and `prepared/` in `workspace`: the layout of a workspace without a config.
    pub fn standard(workspace: &Path) -> Folders {
        Folders {
            experiments: workspace.join(EXPERIMENTS_DIR),
            prepared: workspace.join(PREPARED_DIR),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Identical to the run's last commit.
    Clean,
    /// Differs from the run's last commit.
    Modified,
    /// No commit of this run exists.
    Untracked,
    /// The store's copy of some of the run's files fails verification (`damaged` lists them):
    /// the folder may hold their only good copy, and `exp commit` stores them again.
    Damaged,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    /// Workspace-relative folder, e.g. `experiments/run_X` (absolute when it lies outside).
    pub path: String,
    #[serde(skip)]
    dir: PathBuf,
    pub run_id: String,
    pub state: State,
    /// The run's ref and commit, when committed.
    pub ref_name: Option<String>,
    pub commit: Option<ObjectId>,
    pub changes: Vec<Change>,
    /// Files of the run's commit whose stored copy is corrupt or missing.
    pub damaged: Vec<String>,
}

/// Status of every folder directly under `folders.experiments`, sorted by path.
pub fn status(repo: &Repo, folders: &Folders) -> Result<Vec<RunStatus>> {
    let exp_dir = &folders.experiments;
    let mut dirs = Vec::new();
    match fs::read_dir(exp_dir) {
        Ok(rd) => {
            for e in rd {
                let e = e.at(exp_dir)?;
                if e.file_type().at(&e.path())?.is_dir() && e.path() != repo.store_dir() {
                    dirs.push(e.path());
                }
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(exp_dir, e)),
    }
    dirs.sort();
    let mut index = repo.load_index();
    let mut out = Vec::new();
    for dir in dirs {
        out.push(status_of(repo, &mut index, &dir)?);
    }
    // Hashes computed here make the next status instant; losing them is harmless.
    let _ = index.save();
    Ok(out)
}

fn status_of(repo: &Repo, index: &mut super::index::Index, dir: &Path) -> Result<RunStatus> {
    let run_id = run_id_of(dir);
    // The same key `commit` files the folder's index entries under.
    let (path, _) = repo.workspace_key(dir)?;
    let name = RefName::run(&run_id).ok();
    let commit = match &name {
        Some(n) => repo.refs.read(n)?,
        None => None,
    };
    let Some(commit) = commit else {
        return Ok(RunStatus {
            path,
            dir: dir.to_path_buf(),
            run_id,
            state: State::Untracked,
            ref_name: None,
            commit: None,
            changes: vec![],
            damaged: vec![],
        });
    };
    let tree = repo.read_commit(&commit)?.tree;
    let changes = worktree::diff_dir(&repo.odb, index, &tree, dir, &path)?;
    // "Clean" promises the store can give the folder back, and `exp clean` deletes on that
    // promise: so the stored copies are verified, not just assumed from the stat cache.
    let damaged = worktree::damaged_files(&repo.odb, &tree)?;
    let state = if !damaged.is_empty() {
        State::Damaged
    } else if changes.is_empty() {
        State::Clean
    } else {
        State::Modified
    };
    Ok(RunStatus {
        path,
        dir: dir.to_path_buf(),
        run_id,
        state,
        ref_name: name.map(|n| n.to_string()),
        commit: Some(commit),
        changes,
        damaged,
    })
}

/// Refuse a checkout destination that is, lies inside, or holds a store (`.exprepo`): the
/// workspace itself, say, whose config and data a checkout would otherwise replace. With
/// `force`, which replaces changes the store does not hold, `dest` must moreover be run
/// `run_id`'s own folder (named `run_<ID>`, or its run.json says so) when it holds anything.
pub fn check_destination(repo: &Repo, dest: &Path, run_id: &str, force: bool) -> Result<()> {
    let refuse = || Error::StoreDestination { path: dest.to_path_buf() };
    let store = fs::canonicalize(repo.store_dir()).unwrap_or(repo.store_dir().to_path_buf());
    let real = resolve_existing(dest);
    if real.starts_with(&store) || store.starts_with(&real) || real.join(super::STORE_DIR).exists()
    {
        return Err(refuse());
    }
    let empty = match fs::read_dir(dest) {
        Ok(mut rd) => rd.next().is_none(),
        Err(e) if e.kind() == ErrorKind::NotFound => true,
        Err(e) => return Err(Error::io(dest, e)),
    };
    if force && !empty && !belongs_to(dest, run_id) {
        return Err(Error::ForeignFolder { path: dest.to_path_buf(), run: run_id.to_string() });
    }
    Ok(())
}

/// `path` with symlinks resolved as far as it exists (the rest appended as it is), so a link
/// to the store is seen for what it is.
fn resolve_existing(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut p = path;
    loop {
        if let Ok(real) = fs::canonicalize(p) {
            return rest.iter().rev().fold(real, |acc, c| acc.join(c));
        }
        match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                p = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Whether `dir` is run `run_id`'s folder: named `run_<ID>`, or its run.json names the run.
fn belongs_to(dir: &Path, run_id: &str) -> bool {
    if dir.file_name().is_some_and(|n| n.to_string_lossy() == format!("run_{run_id}")) {
        return true;
    }
    fs::read(dir.join("run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("run_id").and_then(|r| r.as_str()) == Some(run_id))
}

#[derive(Debug, Clone, Serialize)]
pub struct CleanReport {
    pub dry_run: bool,
    /// Folders removed (or that would be): committed and unchanged.
    pub removed: Vec<String>,
    /// Folders kept, with why.
    pub kept: Vec<(String, String)>,
    /// Folders saved first (`--force`): folder, ref, commit.
    pub saved: Vec<(String, String, ObjectId)>,
    /// `prepared/` removed (or would be).
    pub prepared: Option<String>,
}

/// Reset the workspace: remove run folders the store holds unchanged. Modified or uncommitted
/// ones are kept, unless `force`, which first commits each under `saved/<ID>-<time>` (a ref that
/// `exp checkout` restores from; `describe` says what the commit records of the run) and reports
/// it. Nothing the store cannot give back is deleted.
pub fn clean(
    repo: &Repo,
    folders: &Folders,
    dry_run: bool,
    clean_prepared: bool,
    force: bool,
    describe: &dyn DescribeRun,
    progress: &dyn Progress,
) -> Result<CleanReport> {
    let mut report =
        CleanReport { dry_run, removed: vec![], kept: vec![], saved: vec![], prepared: None };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut to_remove: Vec<(PathBuf, String)> = Vec::new();
    for st in status(repo, folders)? {
        let dir = st.dir.clone();
        match st.state {
            State::Clean => to_remove.push((dir, st.path)),
            State::Modified | State::Untracked if force => {
                let saved = RefName::new(&format!("saved/{}-{stamp}", st.run_id))?;
                let commit = if dry_run {
                    None
                } else {
                    let o = repo.commit_folder(
                        &dir,
                        &st.run_id,
                        saved.clone(),
                        describe,
                        &CommitOptions {
                            message: Some("saved by exp clean --force".into()),
                            ..Default::default()
                        },
                        false,
                        progress,
                    )?;
                    o.commit
                };
                report.saved.push((
                    st.path.clone(),
                    saved.to_string(),
                    commit.unwrap_or(ObjectId([0; 32])),
                ));
                to_remove.push((dir, st.path));
            }
            State::Modified => {
                let n = st.changes.len();
                report.kept.push((st.path, format!("{n} change(s) not committed")));
            }
            State::Untracked => report.kept.push((st.path, "never committed".into())),
            State::Damaged => {
                let first = st.damaged.first().cloned().unwrap_or_default();
                let why = format!(
                    "the store's copy of {first} and {} other file(s) is damaged; this folder \
                     may be the only good copy",
                    st.damaged.len() - 1
                );
                report.kept.push((st.path, why));
            }
        }
    }
    let mut index = repo.load_index();
    for (dir, rel) in to_remove {
        if !dry_run {
            fs::remove_dir_all(&dir).at(&dir)?;
            index.remove_folder(&rel);
        }
        report.removed.push(rel);
    }
    if clean_prepared {
        let p = &folders.prepared;
        if p.is_dir() {
            let (shown, _) = repo.workspace_key(p)?;
            if !dry_run {
                fs::remove_dir_all(p).at(p)?;
            }
            report.prepared = Some(shown);
        }
    }
    let _ = index.save();
    Ok(report)
}
