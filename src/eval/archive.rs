//! The run's link to the store: `--archive` commits the run folder, `--baseline REF` reads an
//! earlier run's results out of it.
use std::path::Path;

use super::runner::{BaselineSource, RunSummary};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the store is not available in this build")]
    Unavailable,
}

impl ArchiveError {
    pub fn hint(&self) -> Option<String> {
        None
    }
}

pub fn open_baseline(
    _workspace: &Path,
    _reference: &str,
) -> Result<Box<dyn BaselineSource>, String> {
    Err(ArchiveError::Unavailable.to_string())
}

pub fn commit_run(
    _workspace: &Path,
    _summary: &RunSummary,
    _message: Option<&str>,
) -> Result<String, ArchiveError> {
    Err(ArchiveError::Unavailable)
}
