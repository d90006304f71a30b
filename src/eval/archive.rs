//! The run's link to the store: [`RunFolder`] reads what a commit says about a run from its
//! files (the store knows nothing of runs), `--archive` commits the finished (or stopped) run
//! folder as `runs/<ID>`, and `--baseline REF` reads an earlier run's files out of the store, so
//! the control rows of a treatment-only run come from history instead of being paid for twice.
use std::path::{Path, PathBuf};

use super::runner::{BaselineSource, RunSummary};
use super::summary::read_summary;
use crate::progress::Progress;
use crate::provenance::{self, Provenance};
use crate::runfiles::{self, RunHeader};
use crate::store::{CommitDetails, CommitMeta, CommitOptions, DescribeRun, ObjectId, Repo};

/// Describes a run folder for its commit from its files: run.json's message, tag, status,
/// config hash and provenance, and the summary of its results. A crashed run can leave torn
/// JSON behind; it is still worth committing, so what cannot be read becomes a warning, never a
/// refusal.
pub struct RunFolder {
    /// The workspace whose code provenance a run without a recorded one gets.
    workspace: PathBuf,
}

impl RunFolder {
    pub fn new(workspace: &Path) -> RunFolder {
        RunFolder { workspace: workspace.to_path_buf() }
    }
}

impl DescribeRun for RunFolder {
    fn meta(&self, run_dir: &Path) -> CommitMeta {
        let mut meta = CommitMeta::default();
        match read_header(run_dir) {
            Ok(h) => {
                let h = h.unwrap_or_default();
                meta.message = h.message;
                meta.name = h.name;
                meta.tag = h.tag;
                meta.status = h.status;
                meta.config_hash = h.config_hash;
            }
            Err(e) => meta
                .warnings
                .push(format!("{}; status, message and config hash not recorded", unreadable(&e))),
        }
        meta
    }

    fn details(&self, run_dir: &Path) -> CommitDetails {
        let mut warnings = Vec::new();
        // Read again rather than kept from `meta`: this runs only for a new commit.
        let header = read_header(run_dir).ok().flatten();
        let summary = read_summary(run_dir, header.as_ref()).unwrap_or_else(|e| {
            warnings.push(format!("{}; the commit has no summary", unreadable(&e)));
            Default::default()
        });
        let provenance = header
            .and_then(|h| h.provenance)
            .and_then(|p| serde_json::from_value::<Provenance>(p).ok())
            .unwrap_or_else(|| provenance::capture(&self.workspace));
        CommitDetails { summary, provenance, warnings }
    }
}

fn read_header(run_dir: &Path) -> Result<Option<RunHeader>, runfiles::Error> {
    runfiles::read_view(&run_dir.join(runfiles::RUN_JSON))
}

/// A run file that could not be read, as a commit's warnings say it.
fn unreadable(e: &runfiles::Error) -> String {
    match e {
        runfiles::Error::Malformed { path, problem } => {
            let detail = match problem {
                runfiles::Malformed::Json(e) => e.to_string(),
                empty => empty.to_string(),
            };
            format!(
                "{}: bad JSON at line {}: {detail}",
                path.display(),
                problem.line().unwrap_or(1)
            )
        }
        other => other.to_string(),
    }
}

/// What `--archive` did.
#[derive(Debug, Clone)]
pub struct Archived {
    pub commit: String,
    /// The store did not exist and was created in the workspace.
    pub created_store: bool,
    /// The run's last commit already had exactly these files.
    pub unchanged: bool,
    pub store_dir: std::path::PathBuf,
}

/// Commits the run folder into the workspace's store, creating the store when there is none.
pub fn commit_run(
    workspace: &Path,
    summary: &RunSummary,
    message: Option<&str>,
    progress: &dyn Progress,
) -> Result<Archived, crate::store::Error> {
    let (repo, created_store) = Repo::open_or_init(Some(workspace), workspace)?;
    let options = CommitOptions {
        run_id: Some(summary.run_id.clone()),
        message: message.map(str::to_string),
        tag: None,
        dry_run: false,
        parent: None,
    };
    let describe = RunFolder::new(repo.workspace());
    let outcome = repo.commit_run(&summary.run_dir, &describe, &options, progress)?;
    Ok(Archived {
        commit: outcome.commit.map(|c| c.to_string()).unwrap_or_default(),
        created_store,
        unchanged: outcome.unchanged,
        store_dir: repo.store_dir().to_path_buf(),
    })
}

struct StoreBaseline {
    repo: Repo,
    commit: ObjectId,
}

impl BaselineSource for StoreBaseline {
    fn commit(&self) -> String {
        self.commit.to_string()
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        match self.repo.read_path(&self.commit, path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(crate::store::Error::PathNotFound { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The run `reference` names (a run id, `runs/ID`, a tag, a commit prefix, …) in the store of
/// the workspace (or above it).
pub fn open_baseline(
    workspace: &Path,
    reference: &str,
) -> Result<Box<dyn BaselineSource>, crate::store::Error> {
    let repo = Repo::discover(workspace)?;
    let (commit, _) = repo.resolve_commit(reference)?;
    Ok(Box::new(StoreBaseline { repo, commit }))
}
