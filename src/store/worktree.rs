//! Folders <-> trees: storing a run folder (parallel, streaming), checking a tree out
//! byte-exactly (modes, symlinks), and comparing a folder with a tree (`status`).
//!
//! Symlinks are stored as links (the blob is the link target) and never followed, on either side:
//! the scan uses `symlink_metadata`, and checkout replaces a link in its way instead of writing
//! through it. Names that could escape the folder are refused by `Tree` (on write) and by tree
//! decoding (on checkout). Files are hashed and compressed in parallel (rayon, one file per task,
//! 256 KiB at a time), so memory does not grow with file size.
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{BufWriter, ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::ObjectId;
use super::error::{Error, IoContext, Result};
use super::index::Index;
use super::object::{self, Kind, Mode, Object, Tree, TreeEntry};
use super::odb::{Odb, StageTo, Staged};
use crate::progress::Progress;

/// Folders with at least this many files are committed into one new pack (see `pack`).
const PACK_FROM: usize = 32;
/// Checkout writes each file to a temp file of this prefix beside it, then renames it. A killed
/// checkout leaves one behind: never part of a run, so status and commit skip it and the next
/// checkout of the folder deletes it.
pub const TEMP_PREFIX: &str = ".exp-tmp-";

/// A folder as found on disk.
#[derive(Debug)]
enum Node {
    /// Index into the flat file list.
    File(usize),
    Symlink(Vec<u8>),
    Dir(Vec<(String, Node)>),
}

/// A regular file found by the scan.
#[derive(Debug)]
pub struct ScannedFile {
    /// Path relative to the scanned folder, `/`-separated.
    pub rel: String,
    pub abs: PathBuf,
    pub meta: Metadata,
    pub executable: bool,
}

fn name_of(path: &Path, name: &OsStr) -> Result<String> {
    let s = name.to_str().ok_or_else(|| Error::NonUtf8Name { path: path.to_path_buf() })?;
    object::check_name(s)?;
    Ok(s.to_string())
}

/// What a scan found besides the tree: regular files to hash, and temp files a killed checkout
/// left behind (see `TEMP_PREFIX`).
#[derive(Default)]
struct Found {
    files: Vec<ScannedFile>,
    temps: Vec<PathBuf>,
}

fn scan(dir: &Path, rel: &str, found: &mut Found) -> Result<Node> {
    // The same bound checkout applies: a folder exp could not check out is not committed.
    if rel.split('/').count() > object::MAX_TREE_DEPTH {
        return Err(Error::TooDeep { path: rel.to_string(), limit: object::MAX_TREE_DEPTH });
    }
    let mut children = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        // A store inside the folder (committing a whole workspace) is never part of it, nor is
        // the lock of a run in progress (or killed) at the top of a run folder.
        if entry.file_name() == super::STORE_DIR
            || (rel.is_empty() && entry.file_name() == super::RUN_LOCK)
        {
            continue;
        }
        let name = name_of(&path, &entry.file_name())?;
        let child_rel = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        let meta = fs::symlink_metadata(&path).at(&path)?;
        let ft = meta.file_type();
        if ft.is_file() && name.starts_with(TEMP_PREFIX) {
            found.temps.push(path);
            continue;
        }
        let node = if ft.is_symlink() {
            Node::Symlink(fs::read_link(&path).at(&path)?.as_os_str().as_bytes().to_vec())
        } else if ft.is_dir() {
            scan(&path, &child_rel, found)?
        } else if ft.is_file() {
            let executable = meta.permissions().mode() & 0o111 != 0;
            found.files.push(ScannedFile { rel: child_rel, abs: path, meta, executable });
            Node::File(found.files.len() - 1)
        } else {
            return Err(Error::UnsupportedFileType { path });
        };
        children.push((name, node));
    }
    Ok(Node::Dir(children))
}

/// What storing a folder produced.
#[derive(Debug, Clone, Serialize)]
pub struct Stored {
    pub tree: ObjectId,
    pub files: u64,
    pub bytes: u64,
    /// Objects the store did not have yet, and their compressed size.
    pub new_objects: u64,
    pub new_bytes: u64,
    /// Files whose content was read (not vouched for by the index).
    pub hashed_files: u64,
    /// Per file: path, size, whether its content is new to the store.
    pub listing: Vec<ListedFile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListedFile {
    pub path: String,
    pub size: u64,
    pub new: bool,
}

/// Store the folder `dir` (key prefix `key` in the index, e.g. `experiments/run_X`). With
/// `dry_run`, hash only and store nothing. The caller publishes nothing: objects are durable and
/// visible when this returns (unless `dry_run`).
pub fn store_dir(
    odb: &Odb,
    index: &mut Index,
    dir: &Path,
    key: &str,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<Stored> {
    let meta = fs::symlink_metadata(dir).at(dir)?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory { path: dir.to_path_buf() });
    }
    if !dry_run {
        // Before the first look at what the store has: gc must not delete what this reuses.
        odb.hold_for_writing()?;
    }
    index.load_folder(key);
    let mut found = Found::default();
    let root = scan(dir, "", &mut found)?;
    let files = found.files;
    let total: u64 = files.iter().map(|f| f.meta.len()).sum();
    tracing::debug!(files = files.len(), bytes = total, "scanned; hashing");
    // A pack costs two files; loose objects cost one each. From a few dozen on, a pack wins.
    let pack = (!dry_run && files.len() >= PACK_FROM).then(|| odb.new_pack());
    let to = match (&pack, dry_run) {
        (_, true) => StageTo::HashOnly,
        (Some(pack), false) => StageTo::Pack(pack),
        (None, false) => StageTo::Loose,
    };
    progress.start("storing", total, true);
    let results: Vec<(ObjectId, Option<Staged>)> = files
        .par_iter()
        .map(|f| {
            if let Some(id) = index.lookup(key, &f.rel, &f.meta)
                && (dry_run || odb.has(&id))
            {
                progress.advance(f.meta.len());
                return Ok((id, None));
            }
            let staged = odb.stage_file(&f.abs, to)?;
            progress.advance(f.meta.len());
            Ok((staged.id, Some(staged)))
        })
        .collect::<Result<_>>()?;
    progress.finish();
    let mut listing = Vec::with_capacity(files.len());
    let mut staged = Vec::new();
    let mut blobs = Vec::with_capacity(files.len());
    let mut hashed_files = 0;
    for (f, (id, s)) in files.iter().zip(results) {
        let new = match &s {
            Some(s) => s.is_new() || (dry_run && !odb.has(&s.id)),
            None => dry_run && !odb.has(&id),
        };
        listing.push(ListedFile { path: f.rel.clone(), size: f.meta.len(), new });
        if let Some(s) = s {
            hashed_files += 1;
            staged.push(s);
        }
        if !dry_run {
            index.insert(key, &f.rel, &f.meta, id);
        }
        blobs.push((id, if f.executable { Mode::Executable } else { Mode::File }));
    }
    tracing::debug!(hashed_files, "hashed; building trees");
    let tree = build_tree(odb, &root, &blobs, to, &mut staged)?;
    tracing::debug!(objects = staged.len(), "trees built; publishing");
    let new_objects = staged.iter().filter(|s| s.is_new()).count() as u64
        + if dry_run { listing.iter().filter(|l| l.new).count() as u64 } else { 0 };
    let new_bytes = staged.iter().map(|s| s.stored).sum();
    if !dry_run {
        odb.publish(staged, pack.as_ref())?;
    }
    Ok(Stored {
        tree,
        files: files.len() as u64,
        bytes: total,
        new_objects,
        new_bytes,
        hashed_files,
        listing,
    })
}

fn build_tree(
    odb: &Odb,
    node: &Node,
    blobs: &[(ObjectId, Mode)],
    to: StageTo,
    staged: &mut Vec<Staged>,
) -> Result<ObjectId> {
    let Node::Dir(children) = node else {
        return Err(Error::io(odb.dir(), std::io::Error::other("tree root is not a folder")));
    };
    let mut entries = Vec::with_capacity(children.len());
    for (name, child) in children {
        let (mode, id) = match child {
            Node::File(i) => (blobs[*i].1, blobs[*i].0),
            Node::Symlink(target) => {
                let obj = Object::Blob(target.clone());
                (Mode::Symlink, stage(odb, &obj, to, staged)?)
            }
            Node::Dir(_) => (Mode::Tree, build_tree(odb, child, blobs, to, staged)?),
        };
        entries.push(TreeEntry { name: name.clone(), mode, id });
    }
    let tree = Tree::new(entries)?;
    stage(odb, &Object::Tree(tree), to, staged)
}

fn stage(odb: &Odb, obj: &Object, to: StageTo, staged: &mut Vec<Staged>) -> Result<ObjectId> {
    let s = odb.stage_object(obj, to)?;
    let id = s.id;
    staged.push(s);
    Ok(id)
}

/// One entry of a tree, flattened: `/`-separated path from the tree's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlatEntry {
    pub path: String,
    pub mode: Mode,
    pub id: ObjectId,
}

/// Every entry under `tree`, folders before their contents. Trees nest at most
/// `MAX_TREE_DEPTH` deep (a forged tree could otherwise exhaust the stack), and an entry whose
/// mode says folder must name a tree: either is an error naming the path.
pub fn flatten(odb: &Odb, tree: &ObjectId) -> Result<Vec<FlatEntry>> {
    let mut out = Vec::new();
    flatten_into(odb, tree, "", 0, &mut out)?;
    Ok(out)
}

fn flatten_into(
    odb: &Odb,
    tree: &ObjectId,
    prefix: &str,
    depth: usize,
    out: &mut Vec<FlatEntry>,
) -> Result<()> {
    if depth > object::MAX_TREE_DEPTH {
        return Err(Error::TooDeep { path: prefix.to_string(), limit: object::MAX_TREE_DEPTH });
    }
    let shown = if prefix.is_empty() { "the top folder" } else { prefix };
    let entries = odb.read_tree(tree).map_err(|e| entry_error(e, shown, Mode::Tree))?.entries;
    for e in entries {
        let path = if prefix.is_empty() { e.name.clone() } else { format!("{prefix}/{}", e.name) };
        out.push(FlatEntry { path: path.clone(), mode: e.mode, id: e.id });
        if e.mode == Mode::Tree {
            flatten_into(odb, &e.id, &path, depth + 1, out)?;
        }
    }
    Ok(())
}

/// What a mode promises, for messages.
fn mode_words(mode: Mode) -> &'static str {
    match mode {
        Mode::File => "a file",
        Mode::Executable => "an executable file",
        Mode::Symlink => "a symlink",
        Mode::Tree => "a folder",
    }
}

/// A wrong-kind read of the object a tree entry names, said as what is wrong with the entry.
fn entry_error(e: Error, path: &str, mode: Mode) -> Error {
    match e {
        Error::WrongKind { id, actual, .. } => {
            Error::EntryKind { path: path.to_string(), mode: mode_words(mode), id, actual }
        }
        e => e,
    }
}

/// Paths of the files under `tree` whose stored copy is corrupt or missing (each object
/// re-hashed once, in parallel).
pub fn damaged_files(odb: &Odb, tree: &ObjectId) -> Result<Vec<String>> {
    let flat = flatten(odb, tree)?;
    let mut ids: Vec<ObjectId> =
        flat.iter().filter(|e| e.mode != Mode::Tree).map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    let bad: std::collections::HashSet<ObjectId> = ids
        .par_iter()
        .filter_map(|id| match odb.verify(id) {
            Ok(_) => None,
            Err(Error::CorruptObject { .. } | Error::MissingObject { .. }) => Some(Ok(*id)),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_>>()?;
    Ok(flat
        .into_iter()
        .filter(|e| e.mode != Mode::Tree && bad.contains(&e.id))
        .map(|e| e.path)
        .collect())
}

/// How a path in a folder differs from a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Modified,
    Added,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
    /// The content now on disk (None for deletions and folders): lets checkout tell changes
    /// the store already holds from ones it would lose.
    #[serde(skip)]
    pub disk_id: Option<ObjectId>,
}

/// What is on disk: path -> (mode, id), folders with a zero id; and the temp files of killed
/// checkouts, which are not part of it.
type DiskState = (BTreeMap<String, (Mode, ObjectId)>, Vec<PathBuf>);

fn disk_state(odb: &Odb, index: &mut Index, dir: &Path, key: &str) -> Result<DiskState> {
    let mut state = BTreeMap::new();
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Error::NotADirectory { path: dir.to_path_buf() }),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((state, Vec::new())),
        Err(e) => return Err(Error::io(dir, e)),
    }
    index.load_folder(key);
    let mut found = Found::default();
    let root = scan(dir, "", &mut found)?;
    let files = found.files;
    let ids: Vec<ObjectId> = files
        .par_iter()
        .map(|f| match index.lookup(key, &f.rel, &f.meta) {
            Some(id) => Ok(id),
            None => odb.stage_file(&f.abs, StageTo::HashOnly).map(|s| s.id),
        })
        .collect::<Result<_>>()?;
    for (f, id) in files.iter().zip(&ids) {
        index.insert(key, &f.rel, &f.meta, *id);
    }
    fn walk(
        node: &Node,
        prefix: &str,
        files: &[ScannedFile],
        ids: &[ObjectId],
        out: &mut BTreeMap<String, (Mode, ObjectId)>,
    ) {
        let Node::Dir(children) = node else { return };
        for (name, child) in children {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            match child {
                Node::File(i) => {
                    let mode = if files[*i].executable { Mode::Executable } else { Mode::File };
                    out.insert(path, (mode, ids[*i]));
                }
                Node::Symlink(t) => {
                    out.insert(path, (Mode::Symlink, object::encode(Kind::Blob, t).0));
                }
                Node::Dir(_) => {
                    out.insert(path.clone(), (Mode::Tree, ObjectId([0; 32])));
                    walk(child, &path, files, ids, out);
                }
            }
        }
    }
    walk(&root, "", &files, &ids, &mut state);
    Ok((state, found.temps))
}

/// How the folder `dir` differs from `tree` (files and links; folders only when they are
/// missing or in the way). Uses and refreshes the index under `key`.
pub fn diff_dir(
    odb: &Odb,
    index: &mut Index,
    tree: &ObjectId,
    dir: &Path,
    key: &str,
) -> Result<Vec<Change>> {
    let target: BTreeMap<String, (Mode, ObjectId)> =
        flatten(odb, tree)?.into_iter().map(|e| (e.path, (e.mode, e.id))).collect();
    let (disk, _) = disk_state(odb, index, dir, key)?;
    Ok(compare(&target, &disk))
}

fn compare(
    target: &BTreeMap<String, (Mode, ObjectId)>,
    disk: &BTreeMap<String, (Mode, ObjectId)>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let id_of = |m: Mode, id: ObjectId| (m != Mode::Tree).then_some(id);
    for (path, (mode, id)) in disk {
        match target.get(path) {
            None => changes.push(Change {
                path: path.clone(),
                kind: ChangeKind::Added,
                disk_id: id_of(*mode, *id),
            }),
            Some((tm, tid)) => {
                let same = tm == mode && (*mode == Mode::Tree || tid == id);
                if !same {
                    changes.push(Change {
                        path: path.clone(),
                        kind: ChangeKind::Modified,
                        disk_id: id_of(*mode, *id),
                    });
                }
            }
        }
    }
    for path in target.keys() {
        if !disk.contains_key(path) {
            changes.push(Change { path: path.clone(), kind: ChangeKind::Deleted, disk_id: None });
        }
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes
}

/// What a checkout did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckedOut {
    pub files: u64,
    /// Bytes of the files written.
    pub bytes: u64,
    /// Entries written or replaced (0 when the folder already matched).
    pub written: u64,
    pub removed: u64,
}

/// Make `dest` hold exactly `tree`. Changes on disk whose content the store already has are
/// replaced freely; changes it does not have (they would be lost) need `force`.
pub fn checkout(
    odb: &Odb,
    index: &mut Index,
    tree: &ObjectId,
    dest: &Path,
    key: &str,
    force: bool,
    progress: &dyn Progress,
) -> Result<CheckedOut> {
    let flat = flatten(odb, tree)?;
    let target: BTreeMap<String, (Mode, ObjectId)> =
        flat.iter().map(|e| (e.path.clone(), (e.mode, e.id))).collect();
    let (disk, temps) = disk_state(odb, index, dest, key)?;
    let changes = compare(&target, &disk);
    let unsaved: Vec<String> = changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Deleted)
        .filter(|c| c.disk_id.is_some_and(|id| !odb.has(&id)))
        .map(|c| c.path.clone())
        .collect();
    if !unsaved.is_empty() && !force {
        return Err(Error::WouldOverwrite { path: dest.to_path_buf(), changes: unsaved });
    }
    let mut out = CheckedOut::default();
    for t in &temps {
        remove_path(t)?;
    }
    // Remove what is in the way: extra paths and type changes (deepest first is not needed:
    // removing a folder removes its contents, and later removals of those are no-ops).
    for c in &changes {
        let in_way = match c.kind {
            ChangeKind::Added => true,
            ChangeKind::Modified => {
                disk.get(&c.path).map(|d| d.0) != target.get(&c.path).map(|t| t.0)
            }
            ChangeKind::Deleted => false,
        };
        if in_way {
            remove_path(&dest.join(&c.path))?;
            out.removed += 1;
        }
    }
    super::atomic::create_dirs(dest)?;
    let stale: std::collections::HashSet<&str> =
        changes.iter().filter(|c| c.kind != ChangeKind::Added).map(|c| c.path.as_str()).collect();
    let to_write: Vec<&FlatEntry> =
        flat.iter().filter(|e| e.mode != Mode::Tree && stale.contains(e.path.as_str())).collect();
    for e in flat.iter().filter(|e| e.mode == Mode::Tree) {
        let p = dest.join(&e.path);
        if !fs::symlink_metadata(&p).map(|m| m.is_dir()).unwrap_or(false) {
            fs::create_dir(&p).at(&p)?;
        }
    }
    progress.start("checkout", to_write.len() as u64, false);
    let written_bytes = std::sync::atomic::AtomicU64::new(0);
    let written: Vec<Option<(String, Metadata, ObjectId)>> = to_write
        .par_iter()
        .map(|e| {
            let path = dest.join(&e.path);
            let r = match e.mode {
                Mode::Tree => Ok(None),
                Mode::Symlink => {
                    let target =
                        odb.read_blob(&e.id).map_err(|err| entry_error(err, &e.path, e.mode))?;
                    remove_path(&path)?;
                    symlink(OsStr::from_bytes(&target), &path).at(&path)?;
                    Ok(None)
                }
                Mode::File | Mode::Executable => {
                    let meta = write_file(odb, e, &path)?;
                    written_bytes.fetch_add(meta.len(), std::sync::atomic::Ordering::Relaxed);
                    Ok(Some((e.path.clone(), meta, e.id)))
                }
            };
            progress.advance(1);
            r
        })
        .collect::<Result<_>>()?;
    progress.finish();
    out.written = to_write.len() as u64;
    for (k, meta, id) in written.into_iter().flatten() {
        index.insert(key, &k, &meta, id);
    }
    out.files =
        flat.iter().filter(|e| matches!(e.mode, Mode::File | Mode::Executable)).count() as u64;
    out.bytes = written_bytes.into_inner();
    Ok(out)
}

/// A file being written by checkout that remembers whether writing failed, so that an error
/// (a full disk) names the file checkout could not write, not the object it was reading.
struct DestFile<W> {
    inner: W,
    failed: bool,
}

impl<W: Write> Write for DestFile<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.failed |= r.is_err();
        r
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.failed |= r.is_err();
        r
    }
}

/// Stream blob `e.id` into a temp file beside `path`, verify it, set its mode, rename it into
/// place (replacing a link rather than following it). The entry must name a blob.
fn write_file(odb: &Odb, e: &FlatEntry, path: &Path) -> Result<Metadata> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = super::atomic::temp_file_in(dir, TEMP_PREFIX)?;
    let mut w =
        DestFile { inner: BufWriter::with_capacity(256 * 1024, tmp.as_file()), failed: false };
    let kind = match odb.read_to(&e.id, &mut w).and_then(|(kind, _)| {
        w.flush().at(path)?;
        Ok(kind)
    }) {
        Ok(kind) => kind,
        Err(Error::Io { source, .. }) if w.failed => return Err(Error::io(path, source)),
        Err(err) => return Err(err),
    };
    drop(w);
    if kind != Kind::Blob {
        let actual = kind.as_str();
        return Err(Error::EntryKind {
            path: e.path.clone(),
            mode: mode_words(e.mode),
            id: e.id,
            actual,
        });
    }
    // Created with the umask's permissions; an executable gets x wherever it may be read.
    let created = tmp.as_file().metadata().at(tmp.path())?.permissions().mode() & 0o777;
    let mode =
        if e.mode == Mode::Executable { created | ((created & 0o444) >> 2) } else { created };
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode)).at(tmp.path())?;
    if fs::symlink_metadata(path).map(|m| m.is_dir()).unwrap_or(false) {
        fs::remove_dir_all(path).at(path)?;
    }
    let file: File = tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    file.metadata().at(path)
}

fn remove_path(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).at(path),
        Ok(_) => fs::remove_file(path).at(path),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn a_folder_round_trips_with_modes_links_and_empty_dirs() {
        let ws = tempfile::tempdir().unwrap();
        let odb = Odb::new(ws.path().join("objects"));
        let mut index = Index::open(&ws.path().join("indexes"));
        let src = ws.path().join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::create_dir_all(src.join("empty")).unwrap();
        fs::write(src.join("a/b/x.csv"), b"1,2\n").unwrap();
        fs::write(src.join("e"), b"").unwrap();
        fs::write(src.join("run.sh"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("a/b/x.csv", src.join("link")).unwrap();
        symlink("/etc/passwd", src.join("abs")).unwrap();
        let stored = store_dir(&odb, &mut index, &src, "src", false, &NoProgress).unwrap();
        assert_eq!(stored.files, 3);
        let dest = ws.path().join("dest");
        checkout(&odb, &mut index, &stored.tree, &dest, "dest", false, &NoProgress).unwrap();
        assert_eq!(fs::read(dest.join("a/b/x.csv")).unwrap(), b"1,2\n");
        assert_eq!(fs::metadata(dest.join("run.sh")).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::read_link(dest.join("abs")).unwrap(), Path::new("/etc/passwd"));
        assert!(dest.join("empty").is_dir());
        assert!(diff_dir(&odb, &mut index, &stored.tree, &dest, "dest").unwrap().is_empty());
        // An unsaved edit blocks a checkout; --force replaces it.
        fs::write(dest.join("e"), b"edited").unwrap();
        let err = checkout(&odb, &mut index, &stored.tree, &dest, "dest", false, &NoProgress);
        assert!(matches!(err, Err(Error::WouldOverwrite { .. })));
        checkout(&odb, &mut index, &stored.tree, &dest, "dest", true, &NoProgress).unwrap();
        assert_eq!(fs::read(dest.join("e")).unwrap(), b"");
    }
}
