//! The object store in `.exprepo/`: content-addressed objects, refs, index, worktree, gc, fsck.
//! It knows nothing of runs (a commit's summary, status and message are handed in by the caller)
//! and does no network I/O (remotes, in `crate::remote`, are built on top of it).
//!
//! Layout (format 2, docs/FORMAT.md):
//! ```text
//! .exprepo/format            "2"
//! .exprepo/objects/ab/cd…    zstd(<kind> <len>\0<payload>), named by BLAKE3 of the uncompressed bytes
//! .exprepo/objects/pack/     pack-<hex>.pack (such objects back to back) + pack-<hex>.idx
//! .exprepo/objects/tmp/      objects being written (gc removes stale ones)
//! .exprepo/refs/runs/<ID>    refs/tags/<NAME>  refs/remotes/<R>/runs/<ID>  refs/saved/<NAME>
//! .exprepo/HEAD              "ref: refs/runs/<ID>" or a commit id
//! .exprepo/logs/…            append-only reflogs, one per ref (and HEAD)
//! .exprepo/index             stat cache (JSON)
//! ```
//!
//! The API others use:
//! - [`ObjectId`], [`object::Kind`], [`Tree`]/[`TreeEntry`]/[`Mode`], [`Commit`] and its
//!   [`Summary`] (serde, so anyone can read them).
//! - [`Odb`]: `write_blob_from_path` (streaming), `write`/`write_tree`/`write_commit`,
//!   `read`/`read_commit`/`read_tree`/`read_blob`/`read_to` (verified), `has`, `iter_ids`;
//!   batches: `stage_file`/`stage_object`/`stage_checked` into loose temp files or a
//!   `new_pack`, then one `publish`; raw access for remotes: `read_raw` (stored compressed bytes).
//! - [`Refs`]: `read`, `list`, `update` (lock file + compare-and-swap via [`Expect`]), `delete`,
//!   `reflog`, `head`/`set_head`. Names are [`RefName`]s: `runs/ID`, `tags/NAME`,
//!   `remotes/R/runs/ID`, `HEAD`.
//! - [`Repo`]: `init`, `open`, `discover`, `locate`, `open_or_init`, `resolve` (revision syntax),
//!   `read_path`, `reachable_objects`, `commit_run` (a folder as `runs/<ID>`; what the commit
//!   says about the run, its message, status, summary and provenance, comes from the caller's
//!   [`DescribeRun`]).
//! - [`gc`], [`fsck`], [`worktree`] (checkout, status).
//!
//! This module never prints, never touches the network and never reads a run's files.
pub mod atomic;
pub mod error;
pub mod fsck;
pub mod gc;
pub mod id;
pub mod index;
pub mod object;
pub mod odb;
pub mod pack;
pub mod refs;
pub mod repo;
pub mod workspace;
pub mod worktree;

pub use error::{Error, Result};
pub use id::ObjectId;
pub use object::{
    Commit, ConditionSummary, Kind, Mode, Object, Summary, Tree, TreeEntry, TrialSummary,
};
pub use odb::Odb;
pub use refs::{Expect, Head, RefName, ReflogEntry, Refs};
pub use repo::{
    CheckoutOutcome, CommitDetails, CommitMeta, CommitOptions, CommitOutcome, DescribeRun, Repo,
    Resolved,
};

/// The store's folder inside a workspace.
pub const STORE_DIR: &str = ".exprepo";
/// Held in a run folder by a running `exp run` (and left behind by a killed one): never part
/// of a commit, so committing an interrupted run does not store a stale lock.
pub const RUN_LOCK: &str = ".exp-run.lock";
/// The on-disk format this code reads and writes (docs/FORMAT.md).
/// Format 2 added packs (`objects/pack/`); format 1 stores, which have none, are read and
/// written as they are.
pub const FORMAT_VERSION: u32 = 2;
