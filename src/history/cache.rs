//! What the cross-run table derives from each run's files (a trial's parameter cells and its
//! effect interval), kept per commit in `.exprepo/cache/list.json`, so `exp list` over a
//! thousand runs reads one small file instead of a thousand runs' manifests, configs and
//! significance files. A commit never changes, so an entry never goes stale; entries of commits
//! no ref names any more are dropped when the file is rewritten.
//!
//! The file is only a shortcut: missing, unreadable, larger than `MAX_BYTES`, or written by
//! another `VERSION` of this derivation, it is ignored and rebuilt, and a failure to write it
//! changes nothing but the next listing's speed.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::store::{ObjectId, Repo};

/// Bumped whenever what is derived (the cells, or how they are computed) changes.
const VERSION: u32 = 1;

/// Bigger than any real cache (a few hundred bytes a trial): not read.
const MAX_BYTES: u64 = 64 << 20;

/// One trial's derived cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialCells {
    pub params: BTreeMap<String, String>,
    pub ci: Option<[f64; 2]>,
}

/// A run's trials by slug.
pub type RunCells = BTreeMap<String, TrialCells>;

#[derive(Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// Commit id (hex) -> its trials' cells.
    runs: HashMap<String, RunCells>,
}

/// The cache as loaded, and whether this listing added to it.
pub struct ListCache {
    path: PathBuf,
    file: CacheFile,
    changed: bool,
}

impl ListCache {
    pub fn load(repo: &Repo) -> ListCache {
        let path = repo.store_dir().join("cache").join("list.json");
        let file = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.len() <= MAX_BYTES)
            .and_then(|_| std::fs::read(&path).ok())
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|f| f.version == VERSION)
            .unwrap_or(CacheFile { version: VERSION, runs: HashMap::new() });
        ListCache { path, file, changed: false }
    }

    /// The cells of commit `id`, derived by `derive` unless the cache has them.
    pub fn cells(&mut self, id: &ObjectId, derive: impl FnOnce() -> RunCells) -> &RunCells {
        let key = id.to_hex();
        if !self.file.runs.contains_key(&key) {
            self.changed = true;
        }
        self.file.runs.entry(key).or_insert_with(derive)
    }

    /// Writes the cache back when this listing derived something, keeping only `live` commits.
    pub fn save(mut self, live: &[ObjectId]) {
        let live: HashSet<String> = live.iter().map(ObjectId::to_hex).collect();
        let before = self.file.runs.len();
        self.file.runs.retain(|id, _| live.contains(id));
        if !self.changed && self.file.runs.len() == before {
            return;
        }
        if let Ok(bytes) = serde_json::to_vec(&self.file) {
            let _ = crate::store::atomic::atomic_write(&self.path, &bytes);
        }
    }
}
