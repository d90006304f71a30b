//! File mode (`exp run --backend files`): the pending requests as batch input files in
//! `<run>/batch_inputs/<model>/NNNN.jsonl`, for the user to run wherever they like (OpenAI's
//! Batch API, `vllm run-batch`, …); `exp ingest` reads the outputs back.
use std::collections::HashSet;
use std::path::Path;

use super::chunks::{self, Chunk};
use super::{BatchError, BatchJob, Limits};

/// The folder of a run that file mode writes.
pub const FOLDER: &str = "batch_inputs";

/// Writes the batch input files of every pending request, replacing the ones an earlier
/// invocation wrote (they may hold requests answered since).
pub fn write(run_dir: &Path, jobs: &[BatchJob], limits: Limits) -> Result<Vec<Chunk>, BatchError> {
    let dir = run_dir.join(FOLDER);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(BatchError::Write { path: dir, source }),
    }
    chunks::write(run_dir, FOLDER, jobs, &HashSet::new(), limits, &mut |_, _| true)
}
