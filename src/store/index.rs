//! The index: a stat cache, workspace-relative path -> (size, mtime, ctime, inode, mode, blob
//! id), so `status` and re-committing an unchanged run never re-read file contents.
//!
//! An entry is trusted only when every stat field matches and the file's mtime is older than the
//! index file itself: a file modified in the same clock tick as the index was written would
//! otherwise look unchanged ("racy git"), so such entries are re-hashed. The index is a cache:
//! losing it (or a concurrent writer winning the lock) only costs re-hashing, never data. gc keeps
//! every blob it names.
use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ObjectId;
use super::atomic::LockFile;
use super::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub mode: u32,
    pub id: ObjectId,
}

impl IndexEntry {
    pub fn from_meta(meta: &Metadata, id: ObjectId) -> IndexEntry {
        IndexEntry {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
            mode: meta.mode(),
            id,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OnDisk {
    format: u32,
    entries: BTreeMap<String, IndexEntry>,
}

/// The loaded index of one store.
#[derive(Debug)]
pub struct Index {
    path: PathBuf,
    entries: BTreeMap<String, IndexEntry>,
    /// mtime of the index file when loaded: entries for files at least this new are racy.
    written_ns: i64,
    dirty: bool,
}

impl Index {
    /// Load `path`; a missing or unreadable index is an empty one (it is only a cache).
    pub fn load(path: &Path) -> Index {
        let mut index = Index {
            path: path.to_path_buf(),
            entries: BTreeMap::new(),
            written_ns: 0,
            dirty: false,
        };
        let Ok(bytes) = fs::read(path) else { return index };
        if let Ok(disk) = serde_json::from_slice::<OnDisk>(&bytes)
            && disk.format == 1
        {
            index.entries = disk.entries;
        }
        if let Ok(meta) = fs::metadata(path) {
            index.written_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
        }
        index
    }

    /// The blob id of the file at workspace path `key` with metadata `meta`, if the cache can
    /// vouch for it.
    pub fn lookup(&self, key: &str, meta: &Metadata) -> Option<ObjectId> {
        let e = self.entries.get(key)?;
        let now = IndexEntry::from_meta(meta, e.id);
        (now == *e && e.mtime_ns < self.written_ns).then_some(e.id)
    }

    pub fn insert(&mut self, key: String, meta: &Metadata, id: ObjectId) {
        let e = IndexEntry::from_meta(meta, id);
        if self.entries.get(&key) != Some(&e) {
            self.entries.insert(key, e);
            self.dirty = true;
        }
    }

    /// Drop every entry under the workspace folder `prefix` (a run folder removed by `clean`).
    pub fn remove_prefix(&mut self, prefix: &str) {
        let p = format!("{}/", prefix.trim_end_matches('/'));
        let before = self.entries.len();
        self.entries.retain(|k, _| !k.starts_with(&p));
        self.dirty |= before != self.entries.len();
    }

    pub fn ids(&self) -> impl Iterator<Item = &ObjectId> {
        self.entries.values().map(|e| &e.id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Write the index if it changed. Returns false when another process holds its lock: the
    /// other writer's cache is as good as ours.
    pub fn save(&mut self) -> Result<bool> {
        if !self.dirty {
            return Ok(true);
        }
        let lock = match LockFile::acquire(&self.path, "the index", Duration::from_millis(200)) {
            Ok(l) => l,
            Err(Error::Locked { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let disk = OnDisk { format: 1, entries: std::mem::take(&mut self.entries) };
        let bytes = serde_json::to_vec(&disk).unwrap_or_default();
        self.entries = disk.entries;
        match lock.commit(&bytes) {
            Ok(()) => {
                self.dirty = false;
                Ok(true)
            }
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_trusted_only_when_stat_matches_and_it_is_older_than_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"a").unwrap();
        let old = filetime_back(&f);
        let ip = dir.path().join("index");
        let mut idx = Index::load(&ip);
        let id = ObjectId([1; 32]);
        idx.insert("f".into(), &old, id);
        idx.save().unwrap();
        let idx = Index::load(&ip);
        assert_eq!(idx.lookup("f", &fs::metadata(&f).unwrap()), Some(id));
        fs::write(&f, b"bb").unwrap();
        assert_eq!(idx.lookup("f", &fs::metadata(&f).unwrap()), None);
    }

    /// Set the file's mtime a minute back, so it is not racy against the index.
    fn filetime_back(f: &Path) -> Metadata {
        let t = std::time::SystemTime::now() - Duration::from_secs(60);
        fs::File::options().write(true).open(f).unwrap().set_modified(t).unwrap();
        fs::metadata(f).unwrap()
    }
}
