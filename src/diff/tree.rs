//! Tree diff over any snapshot of a run (a committed tree, or the workspace on disk), skipping
//! every subtree whose id is the same on both sides, so unchanged trials cost nothing.
use rayon::prelude::*;
use serde::Serialize;

use super::Error;
use crate::runfiles::source::{Entry, Kind, Source};
use crate::store::object::MAX_TREE_DEPTH;

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
    too_deep(prefix)?;
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
    too_deep(path)?;
    let mut out = Vec::new();
    for child in src.list(e)? {
        out.extend(side(src, &child, &format!("{path}/{}", child.name), old)?);
    }
    Ok(out)
}

/// A forged tree nested deeper than any store tree may be is refused before the recursion that
/// walks it could exhaust the stack (checkout and fsck refuse the same depth).
fn too_deep(path: &str) -> Result<(), Error> {
    let depth = if path.is_empty() { 0 } else { path.split('/').count() };
    if depth >= MAX_TREE_DEPTH {
        return Err(Error::TooDeep { path: path.to_string(), limit: MAX_TREE_DEPTH });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runfiles::source::{self, MemSource};

    #[test]
    fn a_tree_nested_deeper_than_the_store_allows_is_refused_not_walked() {
        let deep = vec!["d"; MAX_TREE_DEPTH + 5].join("/");
        let mut a = MemSource::new();
        a.insert(&format!("{deep}/f"), "x");
        let b = MemSource::new();
        let err = diff(&a, &b).expect_err("too deep");
        assert!(matches!(err, Error::TooDeep { .. }), "{err}");
    }

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
        fn list(&self, dir: &Entry) -> Result<Vec<Entry>, source::Error> {
            if !dir.loc.is_empty() && dir.loc != "changed" {
                return Err(source::Error::Missing { path: format!("opened {}", dir.loc) });
            }
            self.0.list(dir)
        }
        fn read(&self, file: &Entry) -> Result<Vec<u8>, source::Error> {
            self.0.read(file)
        }
        fn size(&self, file: &Entry) -> Result<u64, source::Error> {
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
