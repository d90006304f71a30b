//! A read-only view of one run's files, wherever they are: a folder on disk (the workspace, a
//! legacy folder before import) or a committed tree (`crate::diff::store`). The layout scan,
//! diffs and imports read runs through it.
use serde::Serialize;

use crate::error::Hint;

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path} is not in the snapshot")]
    Missing { path: String },
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A snapshot held in a store could not read an object: its error says why, and its hint
    /// (taken when the error was made) what to do.
    #[error("cannot read {path} from the store")]
    Store {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        hint: Option<String>,
    },
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Missing { .. } => Some("run `exp fsck` to check the store".into()),
            Error::Read { .. } => Some("check the file is readable".into()),
            Error::Store { hint, .. } => hint.clone(),
        }
    }
}

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// One entry of a directory in a snapshot.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    /// Content id, comparable across snapshots of the same store: equal ids mean equal content.
    /// Empty when the snapshot cannot know it cheaply (a directory on disk): never equal then.
    pub id: String,
    /// Where the snapshot finds the entry again (an object id in the store, a path on disk).
    pub loc: String,
}

impl Entry {
    /// Same content on both sides, known without reading it.
    pub fn same_as(&self, other: &Entry) -> bool {
        self.kind == other.kind && !self.id.is_empty() && self.id == other.id
    }
}

/// A read-only view of one run's files.
pub trait Source: Sync {
    /// The root directory.
    fn root(&self) -> Entry;
    /// A directory's entries, sorted by name.
    fn list(&self, dir: &Entry) -> Result<Vec<Entry>, Error>;
    /// A file's bytes (or a symlink's target).
    fn read(&self, file: &Entry) -> Result<Vec<u8>, Error>;
    /// A file's size in bytes.
    fn size(&self, file: &Entry) -> Result<u64, Error>;
    /// At most the first `max` bytes of a file, for recognizing it by content. Snapshots that
    /// can read a prefix cheaply (a folder on disk) read no more than that.
    fn read_head(&self, file: &Entry, max: usize) -> Result<Vec<u8>, Error> {
        let mut bytes = self.read(file)?;
        bytes.truncate(max);
        Ok(bytes)
    }
}

/// Computes a file's content id from its path.
type FileId = dyn Fn(&std::path::Path) -> Result<String, Error> + Sync;

/// A folder on disk as a snapshot (the workspace, or a legacy run folder before import).
/// Symlinks are entries of their own whose content is the link target: never followed, so a
/// link pointing outside the folder can never pull outside files into a diff or an import.
pub struct FsSource {
    root: std::path::PathBuf,
    /// Content id of a file, when the caller can compute one comparable with the other side's
    /// ids (the store's blob id); otherwise files are compared byte for byte.
    file_id: Option<Box<FileId>>,
}

impl FsSource {
    pub fn new(root: impl Into<std::path::PathBuf>) -> Self {
        FsSource { root: root.into(), file_id: None }
    }

    /// Gives files ids computed by `f`, so equal files are skipped without reading the other side.
    pub fn with_file_ids(
        mut self,
        f: impl Fn(&std::path::Path) -> Result<String, Error> + Sync + 'static,
    ) -> Self {
        self.file_id = Some(Box::new(f));
        self
    }

    pub fn path(&self) -> &std::path::Path {
        &self.root
    }

    fn io(path: &std::path::Path, e: std::io::Error) -> Error {
        Error::Read { path: path.display().to_string(), source: Box::new(e) }
    }
}

impl Source for FsSource {
    fn root(&self) -> Entry {
        Entry {
            name: String::new(),
            kind: Kind::Dir,
            id: String::new(),
            loc: self.root.display().to_string(),
        }
    }

    fn list(&self, dir: &Entry) -> Result<Vec<Entry>, Error> {
        let dir_path = std::path::Path::new(&dir.loc);
        let mut out = Vec::new();
        for item in std::fs::read_dir(dir_path).map_err(|e| Self::io(dir_path, e))? {
            let item = item.map_err(|e| Self::io(dir_path, e))?;
            let path = item.path();
            // symlink_metadata: a link is described, not followed.
            let meta = std::fs::symlink_metadata(&path).map_err(|e| Self::io(&path, e))?;
            let kind = if meta.file_type().is_symlink() {
                Kind::Symlink
            } else if meta.is_dir() {
                Kind::Dir
            } else if meta.is_file() {
                Kind::File
            } else {
                continue; // sockets, fifos, devices: not run files
            };
            let id = match (&self.file_id, kind) {
                (Some(f), Kind::File) => f(&path)?,
                _ => String::new(),
            };
            out.push(Entry {
                name: item.file_name().to_string_lossy().into_owned(),
                kind,
                id,
                loc: path.display().to_string(),
            });
        }
        out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(out)
    }

    fn read(&self, file: &Entry) -> Result<Vec<u8>, Error> {
        let path = std::path::Path::new(&file.loc);
        if file.kind == Kind::Symlink {
            let target = std::fs::read_link(path).map_err(|e| Self::io(path, e))?;
            return Ok(target.to_string_lossy().into_owned().into_bytes());
        }
        std::fs::read(path).map_err(|e| Self::io(path, e))
    }

    fn size(&self, file: &Entry) -> Result<u64, Error> {
        let path = std::path::Path::new(&file.loc);
        if file.kind == Kind::Symlink {
            return Ok(self.read(file)?.len() as u64);
        }
        Ok(std::fs::symlink_metadata(path).map_err(|e| Self::io(path, e))?.len())
    }

    fn read_head(&self, file: &Entry, max: usize) -> Result<Vec<u8>, Error> {
        use std::io::Read;
        if file.kind == Kind::Symlink {
            return self.read(file);
        }
        let path = std::path::Path::new(&file.loc);
        let f = std::fs::File::open(path).map_err(|e| Self::io(path, e))?;
        let mut out = Vec::with_capacity(max.min(64 * 1024));
        f.take(max as u64).read_to_end(&mut out).map_err(|e| Self::io(path, e))?;
        Ok(out)
    }
}

/// A snapshot held in memory, for tests and benchmarks of the semantic layer.
#[derive(Debug, Default, Clone)]
pub struct MemSource {
    files: std::collections::BTreeMap<String, Vec<u8>>,
}

impl MemSource {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, path: &str, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.files.insert(path.to_string(), bytes.into());
        self
    }

    fn children(&self, dir: &str) -> Vec<Entry> {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let mut out: Vec<Entry> = Vec::new();
        for path in self.files.keys().filter(|p| p.starts_with(&prefix)) {
            let rest = &path[prefix.len()..];
            let (name, is_dir) = match rest.split_once('/') {
                Some((n, _)) => (n, true),
                None => (rest, false),
            };
            if out.last().is_some_and(|e| e.name == name) {
                continue;
            }
            let loc = format!("{prefix}{name}");
            let id = if is_dir {
                self.dir_id(&loc)
            } else {
                blake3::hash(&self.files[path]).to_hex().to_string()
            };
            out.push(Entry {
                name: name.to_string(),
                kind: if is_dir { Kind::Dir } else { Kind::File },
                id,
                loc,
            });
        }
        out
    }

    fn dir_id(&self, dir: &str) -> String {
        let mut h = blake3::Hasher::new();
        for e in self.children(dir) {
            h.update(e.name.as_bytes());
            h.update(e.id.as_bytes());
        }
        h.finalize().to_hex().to_string()
    }
}

impl Source for MemSource {
    fn root(&self) -> Entry {
        Entry { name: String::new(), kind: Kind::Dir, id: self.dir_id(""), loc: String::new() }
    }

    fn list(&self, dir: &Entry) -> Result<Vec<Entry>, Error> {
        Ok(self.children(&dir.loc))
    }

    fn read(&self, file: &Entry) -> Result<Vec<u8>, Error> {
        self.files.get(&file.loc).cloned().ok_or_else(|| Error::Missing { path: file.loc.clone() })
    }

    fn size(&self, file: &Entry) -> Result<u64, Error> {
        Ok(self.read(file)?.len() as u64)
    }
}
