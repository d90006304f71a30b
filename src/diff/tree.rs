//! Tree diff over any snapshot of a run (a committed tree, or the workspace on disk), skipping
//! every subtree whose id is the same on both sides, so unchanged trials cost nothing.
use rayon::prelude::*;
use serde::Serialize;

use super::Error;

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
}

/// How a path differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Added,
    Removed,
    Modified,
    /// A file became a directory or a symlink, or the other way round.
    TypeChanged,
}

/// One changed file (directories are never listed themselves, their files are).
#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    pub path: String,
    pub status: Status,
    pub old_size: Option<u64>,
    pub new_size: Option<u64>,
}

/// Every file that differs between the two roots, sorted by path.
pub fn diff(a: &dyn Source, b: &dyn Source) -> Result<Vec<FileChange>, Error> {
    let mut out = diff_dirs(a, &a.root(), b, &b.root(), "")?;
    out.sort_by(|x, y| x.path.cmp(&y.path));
    Ok(out)
}

fn diff_dirs(
    a: &dyn Source,
    da: &Entry,
    b: &dyn Source,
    db: &Entry,
    prefix: &str,
) -> Result<Vec<FileChange>, Error> {
    if da.same_as(db) {
        return Ok(Vec::new());
    }
    let la = a.list(da)?;
    let lb = b.list(db)?;
    // Merge the two sorted listings into (left, right) pairs by name.
    let mut pairs: Vec<(Option<&Entry>, Option<&Entry>)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < la.len() || j < lb.len() {
        match (la.get(i), lb.get(j)) {
            (Some(x), Some(y)) if x.name == y.name => {
                pairs.push((Some(x), Some(y)));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.name < y.name => {
                pairs.push((Some(x), None));
                i += 1;
            }
            (Some(_), Some(y)) => {
                pairs.push((None, Some(y)));
                j += 1;
            }
            (Some(x), None) => {
                pairs.push((Some(x), None));
                i += 1;
            }
            (None, Some(y)) => {
                pairs.push((None, Some(y)));
                j += 1;
            }
            (None, None) => break,
        }
    }
    let parts: Vec<Vec<FileChange>> = pairs
        .into_par_iter()
        .map(|(x, y)| -> Result<Vec<FileChange>, Error> {
            let name = x.or(y).map(|e| e.name.as_str()).unwrap_or_default();
            let path =
                if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
            match (x, y) {
                (Some(x), Some(y)) if x.same_as(y) => Ok(Vec::new()),
                (Some(x), Some(y)) if x.kind == Kind::Dir && y.kind == Kind::Dir => {
                    diff_dirs(a, x, b, y, &path)
                }
                (Some(x), Some(y)) if x.kind == y.kind => {
                    // Ids unknown on one side (a file on disk): equal bytes are no change.
                    if (x.id.is_empty() || y.id.is_empty()) && a.read(x)? == b.read(y)? {
                        return Ok(Vec::new());
                    }
                    Ok(vec![FileChange {
                        path,
                        status: Status::Modified,
                        old_size: Some(a.size(x)?),
                        new_size: Some(b.size(y)?),
                    }])
                }
                (Some(x), Some(y)) => {
                    let mut out = side(a, x, &path, true)?;
                    out.extend(side(b, y, &path, false)?);
                    if x.kind != Kind::Dir && y.kind != Kind::Dir {
                        out = vec![FileChange {
                            path,
                            status: Status::TypeChanged,
                            old_size: Some(a.size(x)?),
                            new_size: Some(b.size(y)?),
                        }];
                    }
                    Ok(out)
                }
                (Some(x), None) => side(a, x, &path, true),
                (None, Some(y)) => side(b, y, &path, false),
                (None, None) => Ok(Vec::new()),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(parts.into_iter().flatten().collect())
}

/// Every file under `e` as removed (`old`) or added.
fn side(src: &dyn Source, e: &Entry, path: &str, old: bool) -> Result<Vec<FileChange>, Error> {
    if e.kind != Kind::Dir {
        let size = Some(src.size(e)?);
        return Ok(vec![if old {
            FileChange {
                path: path.to_string(),
                status: Status::Removed,
                old_size: size,
                new_size: None,
            }
        } else {
            FileChange {
                path: path.to_string(),
                status: Status::Added,
                old_size: None,
                new_size: size,
            }
        }]);
    }
    let mut out = Vec::new();
    for child in src.list(e)? {
        out.extend(side(src, &child, &format!("{path}/{}", child.name), old)?);
    }
    Ok(out)
}

/// Look `path` (slash-separated) up under `dir`.
pub fn lookup(src: &dyn Source, dir: &Entry, path: &str) -> Result<Option<Entry>, Error> {
    let mut cur = dir.clone();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if cur.kind != Kind::Dir {
            return Ok(None);
        }
        match src.list(&cur)?.into_iter().find(|e| e.name == part) {
            Some(e) => cur = e,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_added_removed_and_modified_files_with_sizes() {
        let mut a = MemSource::new();
        a.insert("run.json", "{}").insert("t/results/metrics.json", "1").insert("t/old.txt", "xx");
        let mut b = MemSource::new();
        b.insert("run.json", "{}")
            .insert("t/results/metrics.json", "22")
            .insert("u/new.txt", "yyy");
        let got: Vec<(String, Status, Option<u64>, Option<u64>)> = diff(&a, &b)
            .unwrap()
            .into_iter()
            .map(|c| (c.path, c.status, c.old_size, c.new_size))
            .collect();
        assert_eq!(
            got,
            [
                ("t/old.txt".into(), Status::Removed, Some(2), None),
                ("t/results/metrics.json".into(), Status::Modified, Some(1), Some(2)),
                ("u/new.txt".into(), Status::Added, None, Some(3)),
            ]
        );
    }

    /// A source that fails when asked to list anything but the root: proves equal subtrees are
    /// skipped by id without being opened.
    struct RootOnly(MemSource);
    impl Source for RootOnly {
        fn root(&self) -> Entry {
            self.0.root()
        }
        fn list(&self, dir: &Entry) -> Result<Vec<Entry>, Error> {
            if !dir.loc.is_empty() && dir.loc != "changed" {
                return Err(Error::Missing { path: format!("opened {}", dir.loc) });
            }
            self.0.list(dir)
        }
        fn read(&self, file: &Entry) -> Result<Vec<u8>, Error> {
            self.0.read(file)
        }
        fn size(&self, file: &Entry) -> Result<u64, Error> {
            self.0.size(file)
        }
    }

    #[test]
    fn unchanged_subtrees_are_never_opened() {
        let mut a = MemSource::new();
        a.insert("big/x", "1").insert("big/y/z", "2").insert("changed/f", "a");
        let mut b = a.clone();
        b.insert("changed/f", "b");
        let got = diff(&RootOnly(a), &RootOnly(b)).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "changed/f");
    }

    #[test]
    fn a_file_replaced_by_a_directory_lists_both_sides() {
        let mut a = MemSource::new();
        a.insert("x", "file");
        let mut b = MemSource::new();
        b.insert("x/inner", "now a dir");
        let got: Vec<(String, Status)> =
            diff(&a, &b).unwrap().into_iter().map(|c| (c.path, c.status)).collect();
        assert_eq!(got, [("x".into(), Status::Removed), ("x/inner".into(), Status::Added)]);
    }
}
