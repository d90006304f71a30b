//! Snapshots the diff reads from the store: a commit's tree (no checkout), and the workspace
//! copy of the run HEAD names, for `exp diff` with no revision.
use std::path::Path;

use super::{Error, Options, RunDiff, Side};
use crate::error::Hint;
use crate::runfiles::source::{self, Entry, FsSource, Kind, Source};
use crate::store::{Commit, Head, Mode, ObjectId, Odb, Repo};

/// A committed tree, read through the store's verified object reads.
pub struct TreeSource<'r> {
    repo: &'r Repo,
    root: ObjectId,
}

impl<'r> TreeSource<'r> {
    pub fn new(repo: &'r Repo, tree: ObjectId) -> Self {
        TreeSource { repo, root: tree }
    }

    fn id(loc: &str) -> Result<ObjectId, source::Error> {
        loc.parse().map_err(|e| stored(loc, e))
    }
}

impl Source for TreeSource<'_> {
    fn root(&self) -> Entry {
        let hex = self.root.to_hex();
        Entry { name: String::new(), kind: Kind::Dir, id: hex.clone(), loc: hex }
    }

    fn list(&self, dir: &Entry) -> Result<Vec<Entry>, source::Error> {
        let tree =
            self.repo.odb.read_tree(&Self::id(&dir.loc)?).map_err(|e| stored(&dir.name, e))?;
        Ok(tree
            .entries
            .into_iter()
            .map(|e| {
                let kind = match e.mode {
                    Mode::Tree => Kind::Dir,
                    Mode::Symlink => Kind::Symlink,
                    Mode::File | Mode::Executable => Kind::File,
                };
                let hex = e.id.to_hex();
                Entry { name: e.name, kind, id: hex.clone(), loc: hex }
            })
            .collect())
    }

    fn read(&self, file: &Entry) -> Result<Vec<u8>, source::Error> {
        self.repo.odb.read_blob(&Self::id(&file.loc)?).map_err(|e| stored(&file.name, e))
    }

    fn size(&self, file: &Entry) -> Result<u64, source::Error> {
        Ok(self.repo.odb.header(&Self::id(&file.loc)?).map_err(|e| stored(&file.name, e))?.1)
    }
}

/// A store error while reading `path` of a snapshot (its hint comes from the store's error).
fn stored(path: &str, e: crate::store::Error) -> source::Error {
    source::Error::Store { path: path.to_string(), hint: e.hint(), source: Box::new(e) }
}

fn side(label: &str, id: &ObjectId, c: &Commit) -> Side {
    Side {
        label: label.to_string(),
        commit: Some(id.to_hex()),
        run_id: Some(c.run_id.clone()),
        status: c.status.clone(),
        layout: None,
    }
}

fn resolve(repo: &Repo, rev: &str) -> Result<(ObjectId, Commit), Error> {
    repo.resolve_commit(rev).map_err(Error::Rev)
}

/// `exp diff [REF1 [REF2]]`: two commits; one commit against its first parent; or, with none,
/// the workspace copy of HEAD's run against HEAD.
pub fn diff_revs(
    repo: &Repo,
    rev1: Option<&str>,
    rev2: Option<&str>,
    opts: &Options,
) -> Result<RunDiff, Error> {
    match (rev1, rev2) {
        (Some(r1), Some(r2)) => {
            let (ia, ca) = resolve(repo, r1)?;
            let (ib, cb) = resolve(repo, r2)?;
            super::diff_runs(
                &TreeSource::new(repo, ca.tree),
                &TreeSource::new(repo, cb.tree),
                side(r1, &ia, &ca),
                side(r2, &ib, &cb),
                opts,
            )
        }
        (Some(r), None) | (None, Some(r)) => {
            let (ib, cb) = resolve(repo, r)?;
            let parent =
                *cb.parents.first().ok_or_else(|| Error::NoParent { rev: r.to_string() })?;
            let ca = repo
                .read_commit(&parent)
                .map_err(|e| Error::Store { path: parent.short(), source: e })?;
            let label = format!("{r}~1");
            super::diff_runs(
                &TreeSource::new(repo, ca.tree),
                &TreeSource::new(repo, cb.tree),
                side(&label, &parent, &ca),
                side(r, &ib, &cb),
                opts,
            )
        }
        (None, None) => {
            let head =
                repo.refs.head().map_err(|e| Error::Store { path: "HEAD".into(), source: e })?;
            if head == Head::Unborn {
                return Err(Error::NoHead);
            }
            let (ia, ca) = resolve(repo, "HEAD")?;
            let dir = repo
                .checkout_dir(&ia, &ca)
                .map_err(|e| Error::Store { path: ia.short(), source: e })?;
            if !dir.is_dir() {
                return Err(Error::NotCheckedOut { path: dir.display().to_string() });
            }
            let ws = workspace_source(repo, &dir)?;
            let b = Side {
                label: "workspace".into(),
                commit: None,
                run_id: Some(ca.run_id.clone()),
                status: None,
                layout: None,
            };
            super::diff_runs(&TreeSource::new(repo, ca.tree), &ws, side("HEAD", &ia, &ca), b, opts)
        }
    }
}

/// The run folder on disk, its files named by the same blob ids the store gives them (from the
/// stat index when it vouches for a file, else hashed), so unchanged files are never read twice.
fn workspace_source(repo: &Repo, dir: &Path) -> Result<FsSource, Error> {
    let (key, _) = repo
        .workspace_key(dir)
        .map_err(|e| Error::Store { path: dir.display().to_string(), source: e })?;
    let index = repo.load_index_for(&key);
    let root = dir.to_path_buf();
    Ok(FsSource::new(dir).with_file_ids(move |path| {
        let rel = path.strip_prefix(&root).unwrap_or(path).to_string_lossy().replace('\\', "/");
        let meta = std::fs::symlink_metadata(path).map_err(|e| source::Error::Read {
            path: path.display().to_string(),
            source: Box::new(e),
        })?;
        if let Some(id) = index.lookup(&key, &rel, &meta) {
            return Ok(id.to_hex());
        }
        let id = Odb::hash_file(path).map_err(|e| stored(&path.display().to_string(), e))?;
        Ok(id.to_hex())
    }))
}
