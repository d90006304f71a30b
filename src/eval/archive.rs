//! The run's link to the store: `--archive` commits the finished (or stopped) run folder as
//! `runs/<ID>`, and `--baseline REF` reads an earlier run's files out of the store, so the
//! control rows of a treatment-only run come from history instead of being paid for twice.
use std::path::Path;

use super::runner::{BaselineSource, RunSummary};
use crate::progress::Progress;
use crate::store::{CommitOptions, ObjectId, Repo};

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
    };
    let outcome = repo.commit_run(&summary.run_dir, &options, progress)?;
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
