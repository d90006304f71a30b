//! Remotes: sharing run history with a folder on a shared disk or with S3-compatible storage.
//!
//! - [`config`]: the named remotes in `.exprepo/config` (`exp remote add|remove|-v`).
//! - [`transport`]: one trait over both kinds of remote (folder: files and lock files; S3:
//!   `object_store` with conditional writes). Nothing else here knows which kind it talks to.
//! - [`pack`]: objects travel in packs with an index each, so a run of thousands of files is a
//!   few requests; a reader fetches merged byte ranges of the packs it needs.
//! - [`sync`]: push, fetch, pull, clone. Objects first, refs last, refs by compare-and-swap.
//! - [`local`]: what this needs from the local store, including the verified batch writer that
//!   guarantees nothing corrupt from a remote ever enters the store.
//!
//! Remote layout (docs/FORMAT.md, "Remotes"):
//! ```text
//! exp-remote.json          {"format": 1, "kind": "exp-remote"}
//! packs/<blake3>.pack      "EXPPACK1" + objects as stored locally (zstd), back to back
//! index/<blake3>.idx       "EXPIDX01", count, (id, offset, length)*, BLAKE3 checksum
//! refs/runs/<ID>           "<commit hex>\n"
//! refs/tags/<NAME>         "<commit hex>\n"
//! ```
//! This module never prints; commands in `src/cli/` render its reports.
pub mod config;
pub mod counting;
pub mod error;
pub mod local;
pub mod pack;
pub mod sync;
pub mod transport;

use std::path::Path;

pub use config::{Remote, add_remote, list_remotes, remove_remote, resolve_remote};
pub use error::{Error, Result};
#[cfg(feature = "fault-injection")]
pub use sync::Hooks;
pub use sync::{
    FetchReport, PullReport, PushOptions, PushReport, RefStatus, RefUpdate, Transfer, clone, fetch,
    pull, push,
};
pub use transport::RemoteUrl;

/// Checks a remote name: one ref-name component (it becomes `refs/remotes/<name>/…`).
pub fn check_name(name: &str) -> Result<()> {
    if name.contains('/') {
        return Err(Error::BadRemoteName { name: name.to_string(), reason: "may not contain '/'" });
    }
    crate::store::refs::check_component(name)
        .map_err(|reason| Error::BadRemoteName { name: name.to_string(), reason })
}

/// Parses a URL typed on the command line, relative folders against `base`.
pub fn parse_url(url: &str, base: &Path) -> Result<RemoteUrl> {
    RemoteUrl::parse(url, base)
}
