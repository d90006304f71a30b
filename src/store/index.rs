//! The index: a stat cache, (run folder, path inside it) -> (size, mtime, ctime, inode, mode,
//! blob id), so `status` and re-committing an unchanged run never re-read file contents.
//!
//! One file per folder (`indexes/<16 hex of the folder key's BLAKE3>`), so a commit reads and
//! rewrites the cache of the folder it commits and nothing else: with one file for the whole
//! workspace, every commit parsed and rewrote the entries of every run ever committed, and its
//! time grew with history. `Index::open` loads nothing; a folder's entries are read on first use
//! (`load_folder`, `insert`), all of them only for `load_all` (status, clean, gc).
//!
//! An entry is trusted only when every stat field matches and the file's mtime is older than the
//! folder's index file itself: a file modified in the same clock tick as the index was written
//! would otherwise look unchanged ("racy git"), so such entries are re-hashed. The index is a
//! cache: losing it (or a concurrent writer winning the lock) only costs re-hashing, never data.
//! gc keeps every blob it names, including those of the single `index` file older stores kept.
use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ObjectId;
use super::atomic::LockFile;
use super::error::{Error, Result, read_dir_if_exists};

/// The folder of per-folder index files, inside the store.
pub const INDEX_DIR: &str = "indexes";
/// The single index file of stores written before `INDEX_DIR`: only gc still reads it.
pub const LEGACY_INDEX: &str = "index";
const FORMAT: u32 = 2;

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

/// One folder's index file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct OnDisk {
    format: u32,
    /// The folder's workspace key, so a file is never taken for another folder's.
    folder: String,
    entries: BTreeMap<String, IndexEntry>,
}

/// The entries of the single index file older stores kept (gc roots only).
#[derive(Debug, Default, Deserialize)]
struct Legacy {
    format: u32,
    entries: BTreeMap<String, IndexEntry>,
}

/// The cached entries of one folder.
#[derive(Debug, Default)]
struct Folder {
    /// Path inside the folder -> entry.
    entries: BTreeMap<String, IndexEntry>,
    /// mtime of the folder's file when loaded: entries for files at least this new are racy.
    written_ns: i64,
    dirty: bool,
}

/// The index of one store, loaded folder by folder.
#[derive(Debug)]
pub struct Index {
    dir: PathBuf,
    folders: BTreeMap<String, Folder>,
    /// Ids named by the legacy index file (after `load_all`).
    legacy: Vec<ObjectId>,
}

impl Index {
    /// The index kept in `dir` (`.exprepo/indexes`); nothing is read yet.
    pub fn open(dir: &Path) -> Index {
        Index { dir: dir.to_path_buf(), folders: BTreeMap::new(), legacy: Vec::new() }
    }

    /// The file holding `folder`'s entries.
    pub fn file_of(&self, folder: &str) -> PathBuf {
        self.dir.join(&blake3::hash(folder.as_bytes()).to_hex()[..16])
    }

    /// Read `folder`'s entries unless already loaded; a missing or unreadable file is an empty
    /// cache.
    pub fn load_folder(&mut self, folder: &str) {
        if self.folders.contains_key(folder) {
            return;
        }
        let path = self.file_of(folder);
        let loaded = read_file(&path).filter(|(disk, _)| disk.folder == folder);
        let f = match loaded {
            Some((disk, written_ns)) => Folder { entries: disk.entries, written_ns, dirty: false },
            None => Folder::default(),
        };
        self.folders.insert(folder.to_string(), f);
    }

    /// Read every folder's entries, and the ids of the legacy index file (for gc).
    pub fn load_all(&mut self) {
        if let Ok(Some(rd)) = read_dir_if_exists(&self.dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                if name.to_string_lossy().ends_with(".lock") {
                    continue;
                }
                if let Some((disk, written_ns)) = read_file(&e.path())
                    && e.path() == self.file_of(&disk.folder)
                    && !self.folders.contains_key(&disk.folder)
                {
                    let f = Folder { entries: disk.entries, written_ns, dirty: false };
                    self.folders.insert(disk.folder, f);
                }
            }
        }
        let legacy = self.dir.with_file_name(LEGACY_INDEX);
        if let Ok(bytes) = fs::read(&legacy)
            && let Ok(old) = serde_json::from_slice::<Legacy>(&bytes)
            && old.format == 1
        {
            self.legacy = old.entries.into_values().map(|e| e.id).collect();
        }
    }

    /// The blob id of the file `rel` inside `folder` with metadata `meta`, if the cache can
    /// vouch for it (the folder must have been loaded).
    pub fn lookup(&self, folder: &str, rel: &str, meta: &Metadata) -> Option<ObjectId> {
        let f = self.folders.get(folder)?;
        let e = f.entries.get(rel)?;
        let now = IndexEntry::from_meta(meta, e.id);
        (now == *e && e.mtime_ns < f.written_ns).then_some(e.id)
    }

    pub fn insert(&mut self, folder: &str, rel: &str, meta: &Metadata, id: ObjectId) {
        self.load_folder(folder);
        let e = IndexEntry::from_meta(meta, id);
        if let Some(f) = self.folders.get_mut(folder)
            && f.entries.get(rel) != Some(&e)
        {
            f.entries.insert(rel.to_string(), e);
            f.dirty = true;
        }
    }

    /// Drop every entry of `folder` (a run folder removed by `clean`).
    pub fn remove_folder(&mut self, folder: &str) {
        self.load_folder(folder);
        if let Some(f) = self.folders.get_mut(folder)
            && !f.entries.is_empty()
        {
            f.entries.clear();
            f.dirty = true;
        }
    }

    /// The ids of every loaded entry (all of them after `load_all`).
    pub fn ids(&self) -> impl Iterator<Item = &ObjectId> {
        self.folders.values().flat_map(|f| f.entries.values().map(|e| &e.id)).chain(&self.legacy)
    }

    /// Entries loaded.
    pub fn len(&self) -> usize {
        self.folders.values().map(|f| f.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the files of the folders that changed. Returns false when another process held a
    /// folder's lock: the other writer's cache is as good as ours.
    pub fn save(&mut self) -> Result<bool> {
        let mut all = true;
        let dirty: Vec<String> =
            self.folders.iter().filter(|(_, f)| f.dirty).map(|(k, _)| k.clone()).collect();
        for folder in dirty {
            all &= self.save_folder(&folder)?;
        }
        Ok(all)
    }

    fn save_folder(&mut self, folder: &str) -> Result<bool> {
        let path = self.file_of(folder);
        let lock = match LockFile::acquire(&path, "the index", Duration::from_millis(200)) {
            Ok(l) => l,
            Err(Error::Locked { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(f) = self.folders.get_mut(folder) else { return Ok(true) };
        let written = if f.entries.is_empty() {
            lock.delete_target()
        } else {
            let disk = OnDisk {
                format: FORMAT,
                folder: folder.to_string(),
                entries: std::mem::take(&mut f.entries),
            };
            let bytes = serde_json::to_vec(&disk).unwrap_or_default();
            f.entries = disk.entries;
            lock.commit(&bytes)
        };
        match written {
            Ok(()) => {
                f.dirty = false;
                Ok(true)
            }
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A folder's index file and its mtime, if it reads as one.
fn read_file(path: &Path) -> Option<(OnDisk, i64)> {
    let bytes = fs::read(path).ok()?;
    let disk = serde_json::from_slice::<OnDisk>(&bytes).ok().filter(|d| d.format == FORMAT)?;
    let meta = fs::metadata(path).ok()?;
    Some((disk, meta.mtime() * 1_000_000_000 + meta.mtime_nsec()))
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
        let ip = dir.path().join(INDEX_DIR);
        let mut idx = Index::open(&ip);
        let id = ObjectId([1; 32]);
        idx.insert("runs/a", "f", &old, id);
        idx.save().unwrap();
        let mut idx = Index::open(&ip);
        idx.load_folder("runs/a");
        assert_eq!(idx.lookup("runs/a", "f", &fs::metadata(&f).unwrap()), Some(id));
        fs::write(&f, b"bb").unwrap();
        assert_eq!(idx.lookup("runs/a", "f", &fs::metadata(&f).unwrap()), None);
    }

    #[test]
    fn loading_one_folder_reads_none_of_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"a").unwrap();
        let meta = filetime_back(&f);
        let ip = dir.path().join(INDEX_DIR);
        let mut idx = Index::open(&ip);
        for run in 0..50 {
            for file in 0..20 {
                idx.insert(
                    &format!("experiments/run_{run}"),
                    &format!("f{file}"),
                    &meta,
                    ObjectId([run; 32]),
                );
            }
        }
        idx.save().unwrap();
        let mut one = Index::open(&ip);
        one.load_folder("experiments/run_7");
        assert_eq!(one.len(), 20);
        assert_eq!(one.lookup("experiments/run_7", "f3", &meta), Some(ObjectId([7; 32])));
        let mut all = Index::open(&ip);
        all.load_all();
        assert_eq!(all.len(), 50 * 20);
        all.remove_folder("experiments/run_7");
        all.save().unwrap();
        let mut again = Index::open(&ip);
        again.load_all();
        assert_eq!(again.len(), 49 * 20);
    }

    /// Set the file's mtime a minute back, so it is not racy against the index.
    fn filetime_back(f: &Path) -> Metadata {
        let t = std::time::SystemTime::now() - Duration::from_secs(60);
        fs::File::options().write(true).open(f).unwrap().set_modified(t).unwrap();
        fs::metadata(f).unwrap()
    }
}
