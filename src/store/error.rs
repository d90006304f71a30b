//! The store's one error type. Every variant carries what a person needs to act: the path, the
//! ref, the object id; `hint()` says what to do next.
use std::path::PathBuf;

use super::ObjectId;
use crate::error::Hint;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no exp store (.exprepo) in {start} or any folder above it")]
    NotARepo { start: PathBuf },
    #[error("{path} uses store format {found}, this exp understands format {supported}")]
    UnsupportedFormat { path: PathBuf, found: String, supported: u32 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not an object id: {text:?} (expected 64 hex digits)")]
    BadObjectId { text: String },
    #[error("object {id} is missing from the store")]
    MissingObject { id: ObjectId },
    #[error("object {id} is corrupt ({path}): {reason}")]
    CorruptObject { id: ObjectId, path: PathBuf, reason: String },
    #[error("pack index {path} is damaged: {reason}")]
    DamagedPackIndex { path: PathBuf, reason: String },
    #[error("object {id} is a {actual}, expected a {expected}")]
    WrongKind { id: ObjectId, expected: &'static str, actual: &'static str },
    #[error("bad name {name:?} in a tree: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("bad ref name {name:?}: {reason}")]
    BadRefName { name: String, reason: &'static str },
    #[error("ref {name} does not exist")]
    RefNotFound { name: String },
    #[error("{name} is locked by {lock} (created {age_secs}s ago)")]
    Locked { name: String, lock: PathBuf, age_secs: u64 },
    #[error("{name} changed while this command ran (expected {expected}, found {found})")]
    RefChanged { name: String, expected: String, found: String },
    #[error("unknown revision {rev:?}")]
    UnknownRevision { rev: String },
    #[error("revision {rev:?} is ambiguous: {}", candidates.join(", "))]
    Ambiguous { rev: String, candidates: Vec<String> },
    #[error("{name}@{{{n}}}: the reflog of {name} has only {len} entries")]
    ReflogOutOfRange { name: String, n: usize, len: usize },
    #[error("{rev}: commit {id} has no parent")]
    NoParent { rev: String, id: ObjectId },
    #[error("{path:?} does not exist in {rev}")]
    PathNotFound { rev: String, path: String },
    #[error("{path} is not a folder")]
    NotADirectory { path: PathBuf },
    #[error("{path} is neither a file, a folder nor a symlink; exp cannot store it")]
    UnsupportedFileType { path: PathBuf },
    #[error("{path} has a name that is not UTF-8")]
    NonUtf8Name { path: PathBuf },
    #[error("{path} changed while it was being stored")]
    FileChanged { path: PathBuf },
    #[error("{path} has changes that are not in the store: {}", changes.join(", "))]
    WouldOverwrite { path: PathBuf, changes: Vec<String> },
    #[error("tag {name} already exists (at {id})")]
    TagExists { name: String, id: ObjectId },
    #[error("bad run id {id:?}: {reason}")]
    BadRunId { id: String, reason: &'static str },
    #[error("commit {commit} names run {id:?}, which cannot name a folder: {reason}")]
    CommitRunId { commit: ObjectId, id: String, reason: &'static str },
    #[error("{path}: folders nested more than {limit} deep")]
    TooDeep { path: String, limit: usize },
    #[error("{path}: the tree says {mode}, but object {id} is a {actual}")]
    EntryKind { path: String, mode: &'static str, id: ObjectId, actual: &'static str },
    #[error("{path} is or holds the store (.exprepo); a checkout never writes there")]
    StoreDestination { path: PathBuf },
    #[error("{path} is not the folder of run {run}; --force only replaces a run's own folder")]
    ForeignFolder { path: PathBuf, run: String },
    #[error("another exp process is writing to the store (it holds {lock})")]
    StoreBusy { lock: PathBuf },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        Some(match self {
            Error::NotARepo { .. } => {
                "run `exp init` in the workspace, or pass `--repo DIR`".to_string()
            }
            Error::UnsupportedFormat { .. } => "upgrade exp (see docs/FORMAT.md)".to_string(),
            Error::MissingObject { .. }
            | Error::CorruptObject { .. }
            | Error::DamagedPackIndex { .. } => {
                "run `exp fsck` to list every damaged object; `exp fetch` restores objects a \
                 remote has, or re-commit the run folder that produced it"
                    .to_string()
            }
            Error::BadName { .. } => {
                "rename the file: names may not contain '/', NUL, or be '.', '..' or empty"
                    .to_string()
            }
            Error::BadRefName { .. } | Error::BadRunId { .. } => {
                "use letters, digits and . _ - + (no spaces, no leading '.', no '..')".to_string()
            }
            Error::RefNotFound { .. } | Error::UnknownRevision { .. } => {
                "`exp list` shows every run and tag".to_string()
            }
            Error::Locked { lock, .. } => format!(
                "another exp process is updating it; if none is running (a killed process \
                 leaves its lock behind), delete the lock: rm {}",
                lock.display()
            ),
            Error::RefChanged { .. } => {
                "another exp process updated it at the same time; run the command again".to_string()
            }
            Error::Ambiguous { .. } => {
                "use one of the full names listed (runs/ID, tags/NAME, or more hex digits)"
                    .to_string()
            }
            Error::ReflogOutOfRange { .. } => "`exp log -v REF` shows its history".to_string(),
            Error::NoParent { .. } => {
                "it is the first commit of its history: `exp log` shows every run, and                  `exp diff A B` compares any two"
                    .to_string()
            }
            Error::PathNotFound { rev, .. } => format!("`exp show {rev}` lists its files"),
            Error::UnsupportedFileType { .. } => {
                "move the special file (fifo, socket, device) out of the run folder".to_string()
            }
            Error::NonUtf8Name { .. } => "rename the file to a UTF-8 name".to_string(),
            Error::FileChanged { .. } => {
                "something is still writing to the run folder; commit when the run has finished"
                    .to_string()
            }
            Error::WouldOverwrite { .. } => {
                "commit the changes first (`exp commit`), or pass --force to overwrite them"
                    .to_string()
            }
            Error::TagExists { name, .. } => {
                format!("pick another name, or delete the old tag first: exp tag -d {name}")
            }
            Error::NotADirectory { .. } => "pass a run folder".to_string(),
            Error::CommitRunId { .. } | Error::EntryKind { .. } => {
                "the commit was not made by exp (forged or damaged): `exp fsck` lists what is \
                 wrong; `exp checkout REV --to NEW_DIR` still materializes a commit whose run id is bad"
                    .to_string()
            }
            Error::TooDeep { limit, .. } => format!(
                "exp keeps at most {limit} levels of folders (docs/FORMAT.md); flatten the \
                 folder, or if this tree came from a remote, it was not made by exp"
            ),
            Error::StoreDestination { .. } => {
                "check the run out into its own folder: leave out --to, or pass --to NEW_DIR"
                    .to_string()
            }
            Error::ForeignFolder { .. } => {
                "check it out into a new folder (--to NEW_DIR), or move that folder away first"
                    .to_string()
            }
            Error::StoreBusy { .. } => {
                "a commit, fetch or import is storing objects; run gc again when it has finished"
                    .to_string()
            }
            _ => return None,
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `?` on `std::io::Result` with the path attached.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// The entries of folder `dir`, or None when it does not exist: the store creates its folders
/// (object fans, `refs/tags`, `objects/tmp`) lazily, so a missing one means "nothing there yet",
/// never an error. Any other failure names `dir`.
pub(crate) fn read_dir_if_exists(dir: &std::path::Path) -> Result<Option<std::fs::ReadDir>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(Some(rd)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(dir, e)),
    }
}
