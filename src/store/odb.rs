//! The object database: zstd-compressed canonical encodings (see `object`), each either a loose
//! file `objects/<2 hex>/<62 hex>` or an entry of a pack in `objects/pack/` (see `pack`).
//!
//! Writes stage first and publish after: a small file is read whole, hashed and compressed in
//! one call; a large one streams in 256 KiB chunks that feed the BLAKE3 hasher and the zstd
//! encoder together, so memory stays bounded whatever the file size. Staged objects go to a temp
//! file under `objects/tmp/` or into a pack being written; only `publish` makes them durable and
//! then visible, so a name in `objects/` always holds complete bytes. Reads verify: every read
//! re-hashes what it decompressed, and a mismatch is `Error::CorruptObject` naming the object
//! and the file holding it, never wrong data.
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rayon::prelude::*;
use tempfile::TempPath;

use super::ObjectId;
use super::atomic::{create_dirs, fsync_dir, start_writeback, temp_file_in, wait_writeback};
use super::error::{Error, IoContext, Result, read_dir_if_exists};
use super::object::{self, Commit, Kind, Object, Tree};
use super::pack::{self, PackFile, PackSet, PackWriter, Packed};

const CHUNK: usize = 256 * 1024;
/// Files up to this size are read whole and compressed in one call (`stage_whole`); larger ones
/// stream. Each hashing thread holds at most this plus its compressed copy (64 MiB in all on
/// two cores), whatever the size of the files.
const WHOLE_FILE_MAX: u64 = 16 * 1024 * 1024;
/// zstd level 1. On eval output (JSONL/CSV/Markdown, bench/store) it stores about 10% less than
/// git's loose objects (zlib level 1) at half git's CPU; level 3 is 5% smaller but 20% slower.
/// Readers accept any level: it is not part of the format.
const LEVEL: i32 = 1;

thread_local! {
    /// One zstd context per worker thread, reused across files: setting one up costs more than
    /// compressing a typical small file.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    /// The same for reading: `exp log` over 1,000 runs spent a quarter of its time setting up
    /// a decompression context per commit read.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
    /// A small file's encoding, and the compressed bytes of every whole-staged object, in
    /// buffers reused across objects (each as large as the largest object a thread staged this
    /// way, a small file at most `WHOLE_FILE_MAX`): a fresh allocation per file is fresh pages
    /// the kernel must fault in and zero, a tenth of a commit's time.
    static ENCODING: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    static COMPRESSED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `objects/gc-lock`: an empty file locked with `flock`. A process that stores objects holds it
/// shared from before its first look at what the store has until it exits (by then its refs
/// name what it wrote); gc holds it exclusively. So gc never judges objects a writer has made
/// or counted on but not yet named, whatever the grace period.
pub const GC_LOCK: &str = "gc-lock";
/// `objects/damaged`: ids of objects a verified read found corrupt, one hex id per line. `has`
/// says no to them, so the next commit (or fetch) that holds a good copy stores it again, and
/// publishing that copy deletes the bad one. Only a hint: deleting the file is always safe.
pub const DAMAGED: &str = "damaged";
/// How often a read that finds an object gone re-reads the pack folder: gc publishes a merged
/// pack before it deletes the old ones, so one re-read finds the object again; a few cover gcs
/// that follow one another.
const READ_ATTEMPTS: usize = 4;
/// The zstd level `gc` recompresses packed objects at. Commits store at `LEVEL` (fast); gc,
/// like git's, can afford to spend more: on bench/store's generated run, per-object level 12
/// stores about a fifth less than level 1. Readers accept any level.
pub const DENSE_LEVEL: i32 = 12;
/// The mark of a pack gc already recompressed: an empty `pack-<H>.dense` beside it, so the next
/// gc leaves it alone. Readers ignore it; losing it only costs recompressing again.
pub const DENSE_MARK: &str = "dense";
/// Objects stored larger than this are copied as they are when gc recompresses (a pack holds
/// files up to 16 MiB; a fetched pack may hold more).
const DENSE_MAX: usize = 64 << 20;
/// Packs a store may have before a commit merges the smallest ones (`merge_small_packs`).
pub const MAX_PACKS_BEFORE_MERGE: usize = 16;

/// Handle on `.exprepo/objects`. Clones share what they know of the packs, and the gc lock.
#[derive(Debug, Clone)]
pub struct Odb {
    dir: PathBuf,
    packs: Arc<RwLock<PackSet>>,
    hold: Arc<Mutex<Hold>>,
    /// `DAMAGED`, read on first use.
    damaged: Arc<RwLock<Option<HashSet<ObjectId>>>>,
}

/// What this process holds of `GC_LOCK` (released when the file closes).
#[derive(Debug, Default)]
enum Hold {
    #[default]
    Nothing,
    Shared(File),
    Exclusive(File),
}

/// Where `stage_*` puts an object the store does not have yet.
#[derive(Clone, Copy)]
pub enum StageTo<'a> {
    /// Nowhere: only compute the id (`--dry-run`, `status`).
    HashOnly,
    /// A loose temp file, renamed into `objects/<2 hex>/` by `publish`.
    Loose,
    /// The pack being written (large files still go loose: a pack takes whole objects).
    Pack(&'a NewPack),
}

/// A pack being filled by `stage_*` from several threads; `publish` finishes it. Created on the
/// first object, so a batch with nothing new leaves no file behind.
pub struct NewPack {
    tmp_dir: PathBuf,
    writer: Mutex<Option<PackWriter>>,
}

impl NewPack {
    /// Append stored bytes; false when this pack already holds `id`.
    fn append(&self, id: ObjectId, stored: &[u8]) -> Result<bool> {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let writer = match w.as_mut() {
            Some(writer) => writer,
            None => w.insert(PackWriter::new(&self.tmp_dir)?),
        };
        writer.append(id, stored)
    }
}

/// An object staged for `publish`.
pub struct Staged {
    pub id: ObjectId,
    /// Compressed size written; 0 when the store (or this batch) already had it.
    pub stored: u64,
    place: Place,
}

enum Place {
    /// The store or this batch already has it: nothing to publish.
    Existing,
    Loose(TempPath),
    Packed,
}

impl Staged {
    /// Whether publishing it adds a new object (false: the store already had it).
    pub fn is_new(&self) -> bool {
        !matches!(self.place, Place::Existing)
    }
}

/// Where an object's stored bytes are.
enum Location {
    Loose(PathBuf),
    Packed(Packed),
}

impl Odb {
    pub fn new(dir: PathBuf) -> Odb {
        Odb { dir, packs: Arc::default(), hold: Arc::default(), damaged: Arc::default() }
    }

    fn open_gc_lock(&self) -> Result<(File, PathBuf)> {
        create_dirs(&self.dir)?;
        let path = self.dir.join(GC_LOCK);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)?;
        Ok((file, path))
    }

    /// Take `GC_LOCK` shared for the rest of this process (waiting while a gc runs), unless
    /// already held: called before a writer first asks what the store has, so the objects it
    /// reuses and the ones it writes stay until its refs name them.
    pub fn hold_for_writing(&self) -> Result<()> {
        let mut hold = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*hold, Hold::Nothing) {
            let (file, path) = self.open_gc_lock()?;
            file.lock_shared().at(&path)?;
            *hold = Hold::Shared(file);
        }
        Ok(())
    }

    /// Take `GC_LOCK` exclusively (gc), waiting up to `wait` for writers to finish.
    pub fn lock_for_gc(&self, wait: Duration) -> Result<()> {
        let mut hold = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
        let (file, was_shared) = match std::mem::take(&mut *hold) {
            Hold::Exclusive(f) => {
                *hold = Hold::Exclusive(f);
                return Ok(());
            }
            Hold::Shared(f) => (f, true),
            Hold::Nothing => (self.open_gc_lock()?.0, false),
        };
        let path = self.dir.join(GC_LOCK);
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    *hold = Hold::Exclusive(file);
                    return Ok(());
                }
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    // A failed upgrade may have dropped the shared lock: take it back.
                    if was_shared {
                        file.lock_shared().at(&path)?;
                        *hold = Hold::Shared(file);
                    }
                    return Err(match e {
                        std::fs::TryLockError::WouldBlock => Error::StoreBusy { lock: path },
                        std::fs::TryLockError::Error(e) => Error::io(path, e),
                    });
                }
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where object `id` lives when it is loose.
    pub fn path_of(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn pack_dir(&self) -> PathBuf {
        self.dir.join("pack")
    }

    /// Whether the store holds a usable copy of `id` (one known to be corrupt does not count).
    pub fn has(&self, id: &ObjectId) -> bool {
        !self.is_damaged(id) && (self.packed(id).is_some() || self.path_of(id).is_file())
    }

    fn is_damaged(&self, id: &ObjectId) -> bool {
        if let Some(set) = self.damaged.read().unwrap_or_else(PoisonError::into_inner).as_ref() {
            return set.contains(id);
        }
        let mut d = self.damaged.write().unwrap_or_else(PoisonError::into_inner);
        d.get_or_insert_with(|| self.load_damaged()).contains(id)
    }

    fn load_damaged(&self) -> HashSet<ObjectId> {
        let text = fs::read_to_string(self.dir.join(DAMAGED)).unwrap_or_default();
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// Remember that the stored copy of `id` failed verification. Best effort: a read-only
    /// store cannot remember it, and then only the repair shortcut is lost.
    fn mark_damaged(&self, id: &ObjectId) {
        let mut d = self.damaged.write().unwrap_or_else(PoisonError::into_inner);
        if d.get_or_insert_with(|| self.load_damaged()).insert(*id) {
            let path = self.dir.join(DAMAGED);
            let line = format!("{id}\n");
            let _ = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
        }
    }

    /// Take `ids` off the damaged list (good copies of them are published now).
    fn unmark_damaged(&self, ids: &HashSet<ObjectId>) -> Result<()> {
        let known = self.damaged.write().unwrap_or_else(PoisonError::into_inner).take();
        let mut set = known.unwrap_or_else(|| self.load_damaged());
        set.retain(|id| !ids.contains(id));
        self.set_damaged(set)
    }

    /// Make the damaged list exactly `ids` (fsck, having verified every object).
    pub fn set_damaged(&self, ids: HashSet<ObjectId>) -> Result<()> {
        let mut d = self.damaged.write().unwrap_or_else(PoisonError::into_inner);
        let path = self.dir.join(DAMAGED);
        let mut lines: Vec<String> = ids.iter().map(|id| format!("{id}\n")).collect();
        lines.sort();
        let result = if lines.is_empty() {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(&path, e)),
                _ => Ok(()),
            }
        } else {
            super::atomic::atomic_write(&path, lines.concat().as_bytes())
        };
        *d = Some(ids);
        result
    }

    /// Where `id` sits in a pack, reading the pack indexes on first use.
    fn packed(&self, id: &ObjectId) -> Option<Packed> {
        {
            let set = self.packs.read().unwrap_or_else(PoisonError::into_inner);
            if set.is_scanned() {
                return set.get(id);
            }
        }
        let mut set = self.packs.write().unwrap_or_else(PoisonError::into_inner);
        if !set.is_scanned() {
            // An unreadable pack folder hides its objects; fsck names it.
            let _ = set.refresh(&self.pack_dir());
        }
        set.get(id)
    }

    fn locate(&self, id: &ObjectId) -> Result<Location> {
        if let Some(p) = self.packed(id) {
            return Ok(Location::Packed(p));
        }
        let path = self.path_of(id);
        if path.is_file() {
            return Ok(Location::Loose(path));
        }
        // Another process may have written a pack since we read the indexes.
        self.packs.write().unwrap_or_else(PoisonError::into_inner).refresh(&self.pack_dir())?;
        match self.packed(id) {
            Some(p) => Ok(Location::Packed(p)),
            None => Err(Error::MissingObject { id: *id }),
        }
    }

    /// The file holding object `id`'s stored bytes, their offset and length (for tests that
    /// damage objects on purpose, and for messages).
    pub fn stored_at(&self, id: &ObjectId) -> Result<(PathBuf, u64, u64)> {
        match self.locate(id)? {
            Location::Loose(path) => {
                let len = fs::metadata(&path).at(&path)?.len();
                Ok((path, 0, len))
            }
            Location::Packed(p) => Ok((p.pack.to_path_buf(), p.offset, p.len)),
        }
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        let tmp = self.tmp_dir();
        create_dirs(&tmp)?;
        temp_file_in(&tmp, "obj-")
    }

    /// A pack for the objects of one batch (`StageTo::Pack`), worth it from a few dozen objects.
    pub fn new_pack(&self) -> NewPack {
        NewPack { tmp_dir: self.tmp_dir(), writer: Mutex::new(None) }
    }

    /// Hash the file at `path` and, unless the store has it, compress it to `to`. Errors if the
    /// file's length changes under us.
    pub fn stage_file(&self, path: &Path, to: StageTo) -> Result<Staged> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        if len <= WHOLE_FILE_MAX {
            self.stage_whole(file, len, path, to)
        } else {
            self.stage_stream(file, len, path, to)
        }
    }

    /// `stage_file` for a small file: read it whole, hash it, and compress it in one call with
    /// this thread's reused zstd context only if the store lacks it. Most files of a run are
    /// small; against streaming this skips the per-file compressor set-up and zstd's window
    /// copies, and an object the store already has costs a read and a hash, nothing written.
    fn stage_whole(&self, mut file: File, len: u64, origin: &Path, to: StageTo) -> Result<Staged> {
        ENCODING.with(|buf| {
            let mut encoding = buf.borrow_mut();
            encoding.clear();
            encoding.extend_from_slice(&object::header(Kind::Blob, len));
            let head = encoding.len();
            // One byte more than expected is enough to notice a file that grew.
            (&mut file).take(len + 1).read_to_end(&mut encoding).at(origin)?;
            if encoding.len() != head + len as usize {
                return Err(Error::FileChanged { path: origin.to_path_buf() });
            }
            let id = ObjectId(*blake3::hash(&encoding).as_bytes());
            self.stage_encoding(id, &encoding, origin, to)
        })
    }

    /// Compress a complete encoding of object `id` to `to`, unless the store has it.
    fn stage_encoding(
        &self,
        id: ObjectId,
        encoding: &[u8],
        origin: &Path,
        to: StageTo,
    ) -> Result<Staged> {
        let mut staged = Staged { id, stored: 0, place: Place::Existing };
        if matches!(to, StageTo::HashOnly) || self.has(&id) {
            return Ok(staged);
        }
        COMPRESSED.with(|out| {
            let mut out = out.borrow_mut();
            out.clear();
            out.reserve(zstd::zstd_safe::compress_bound(encoding.len()));
            COMPRESSOR
                .with(|c| -> std::io::Result<usize> {
                    let mut c = c.borrow_mut();
                    let compressor = match c.as_mut() {
                        Some(compressor) => compressor,
                        None => c.insert(zstd::bulk::Compressor::new(LEVEL)?),
                    };
                    compressor.compress_to_buffer(encoding, &mut *out)
                })
                .at(origin)?;
            self.place(&mut staged, &out, to)
        })?;
        Ok(staged)
    }

    /// Put the stored bytes of a new object where `to` says: into the pack (unless it holds
    /// them already) or a loose temp file whose writeback starts now.
    fn place(&self, staged: &mut Staged, stored: &[u8], to: StageTo) -> Result<()> {
        self.hold_for_writing()?;
        match to {
            StageTo::Pack(pack) => {
                if pack.append(staged.id, stored)? {
                    staged.place = Place::Packed;
                    staged.stored = stored.len() as u64;
                }
            }
            StageTo::Loose | StageTo::HashOnly => {
                let mut tmp = self.temp_file()?;
                tmp.write_all(stored).at(tmp.path())?;
                start_writeback(tmp.as_file());
                staged.stored = stored.len() as u64;
                staged.place = Place::Loose(tmp.into_temp_path());
            }
        }
        Ok(())
    }

    /// `stage_file` for a large file of exactly `len` bytes (`origin` names it in errors),
    /// streaming in chunks so memory stays bounded whatever the size. Always loose.
    fn stage_stream(
        &self,
        mut reader: impl Read,
        len: u64,
        origin: &Path,
        to: StageTo,
    ) -> Result<Staged> {
        let head = object::header(Kind::Blob, len);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&head);
        let mut buf = vec![0u8; CHUNK];
        let mut seen = 0u64;
        let mut encoder = if matches!(to, StageTo::HashOnly) {
            None
        } else {
            self.hold_for_writing()?;
            let tmp = self.temp_file()?;
            let mut enc = zstd::stream::write::Encoder::new(tmp, LEVEL).at(origin)?;
            enc.write_all(&head).at(origin)?;
            Some(enc)
        };
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(origin, e)),
            };
            seen += n as u64;
            if seen > len {
                return Err(Error::FileChanged { path: origin.to_path_buf() });
            }
            hasher.update(&buf[..n]);
            if let Some(enc) = encoder.as_mut() {
                enc.write_all(&buf[..n]).at(origin)?;
            }
        }
        if seen != len {
            return Err(Error::FileChanged { path: origin.to_path_buf() });
        }
        let id = ObjectId(*hasher.finalize().as_bytes());
        let mut staged = Staged { id, stored: 0, place: Place::Existing };
        if let Some(enc) = encoder {
            let tmp = enc.finish().at(origin)?;
            if !self.has(&id) {
                start_writeback(tmp.as_file());
                staged.stored = tmp.as_file().metadata().at(tmp.path())?.len();
                staged.place = Place::Loose(tmp.into_temp_path());
            }
        }
        Ok(staged)
    }

    /// Stage a small in-memory object (tree, commit, blob).
    pub fn stage_object(&self, obj: &Object, to: StageTo) -> Result<Staged> {
        let (id, bytes) = obj.encode();
        self.stage_encoding(id, &bytes, &self.dir, to)
    }

    /// Make staged objects (and the pack, if any) durable, then visible under their names, then
    /// make the names durable. After this returns, a ref may name any of them. Large batches of
    /// loose objects wait for each file's writeback and then pay for one journal commit (fsync
    /// of `objects/tmp/`), instead of one fsync per file.
    pub fn publish(&self, staged: Vec<Staged>, pack: Option<&NewPack>) -> Result<()> {
        let repaired: Vec<(ObjectId, bool)> = staged
            .iter()
            .filter(|s| s.is_new() && self.is_damaged(&s.id))
            .map(|s| (s.id, matches!(s.place, Place::Packed)))
            .collect();
        let new_pack = self.publish_staged(staged, pack)?;
        if !repaired.is_empty() {
            self.drop_bad_copies(&repaired, new_pack.as_deref())?;
        }
        Ok(())
    }

    /// After good copies of damaged objects were published (`repaired`: id, whether the good
    /// copy went into `new_pack`): delete the bad copies, which readers would otherwise still
    /// find first (a loose file the good copy did not replace; entries of other packs, by
    /// rewriting those packs without them), and take the ids off the damaged list.
    fn drop_bad_copies(
        &self,
        repaired: &[(ObjectId, bool)],
        new_pack: Option<&Path>,
    ) -> Result<()> {
        for (id, packed) in repaired {
            if *packed {
                self.remove(id)?;
            }
        }
        let ids: HashSet<ObjectId> = repaired.iter().map(|r| r.0).collect();
        let rewrite: Vec<(PackFile, Vec<pack::Entry>)> = self
            .packs()?
            .into_iter()
            .filter(|f| Some(f.pack.as_path()) != new_pack)
            .filter(|f| f.entries.iter().any(|e| ids.contains(&e.id)))
            .map(|f| {
                let keep = f.entries.iter().filter(|e| !ids.contains(&e.id)).copied().collect();
                (f, keep)
            })
            .collect();
        if !rewrite.is_empty() {
            self.repack(&rewrite, &[], false)?;
        }
        self.unmark_damaged(&ids)
    }

    /// `publish` without the repair: returns the new pack's path, if one was written.
    fn publish_staged(
        &self,
        staged: Vec<Staged>,
        pack: Option<&NewPack>,
    ) -> Result<Option<PathBuf>> {
        let writer =
            pack.and_then(|p| p.writer.lock().unwrap_or_else(PoisonError::into_inner).take());
        let mut new_pack = None;
        if let Some(writer) = writer.filter(|w| !w.is_empty()) {
            let (path, entries) = writer.finish(&self.pack_dir())?;
            self.packs.write().unwrap_or_else(PoisonError::into_inner).add(&path, entries);
            new_pack = Some(path);
        }
        let pending: Vec<(ObjectId, TempPath)> = staged
            .into_iter()
            .filter_map(|s| match s.place {
                Place::Loose(tmp) => Some((s.id, tmp)),
                Place::Existing | Place::Packed => None,
            })
            .collect();
        if pending.is_empty() {
            return Ok(new_pack);
        }
        let batch = pending.len() > 8;
        if batch {
            for (_, tmp) in &pending {
                wait_writeback(tmp)?;
            }
            fsync_dir(&self.tmp_dir())?;
        } else {
            for (_, tmp) in &pending {
                File::open(tmp).and_then(|f| f.sync_all()).at(tmp)?;
            }
        }
        let mut dirs = std::collections::BTreeSet::new();
        let mut new_dirs = false;
        for (id, tmp) in pending {
            let dest = self.path_of(&id);
            let dir = dest.parent().unwrap_or(&self.dir).to_path_buf();
            // Fan-out folders are made durable by the one fsync of objects/ below, not one
            // fsync each: a first commit creates up to 256 of them.
            if !dirs.contains(&dir) {
                match fs::create_dir(&dir) {
                    Ok(()) => new_dirs = true,
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io(&dir, e)),
                }
            }
            // Same id means same bytes, so replacing an object a concurrent writer just
            // published is harmless.
            tmp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
            dirs.insert(dir);
        }
        if new_dirs {
            fsync_dir(&self.dir)?;
        }
        for d in dirs {
            fsync_dir(&d)?;
        }
        tracing::debug!("names durable");
        Ok(new_pack)
    }

    /// The blob id the file at `path` would get, without any store (streaming; `hash-object`).
    pub fn hash_file(path: &Path) -> Result<ObjectId> {
        // A hash-only stage never touches the object folder, so any path will do.
        Odb::new(PathBuf::new()).stage_file(path, StageTo::HashOnly).map(|s| s.id)
    }

    /// Store the file at `path` as a blob (streaming, durable) and return its id.
    pub fn write_blob_from_path(&self, path: &Path) -> Result<ObjectId> {
        let staged = self.stage_file(path, StageTo::Loose)?;
        let id = staged.id;
        self.publish(vec![staged], None)?;
        Ok(id)
    }

    /// Store an in-memory object durably and return its id.
    pub fn write(&self, obj: &Object) -> Result<ObjectId> {
        let staged = self.stage_object(obj, StageTo::Loose)?;
        let id = staged.id;
        self.publish(vec![staged], None)?;
        Ok(id)
    }

    pub fn write_tree(&self, tree: &Tree) -> Result<ObjectId> {
        self.write(&Object::Tree(tree.clone()))
    }

    pub fn write_commit(&self, commit: &Commit) -> Result<ObjectId> {
        self.write(&Object::Commit(Box::new(commit.clone())))
    }

    /// A reader of object `id`'s stored bytes, and the file they come from. An object that
    /// vanished between finding and opening it (gc moved it into a new pack and deleted the old
    /// file) is looked up again in a fresh read of the pack folder.
    fn open(&self, id: &ObjectId) -> Result<(Box<dyn Read + Send>, PathBuf)> {
        let mut attempt = 1;
        loop {
            match self.open_once(id) {
                Err(Error::MissingObject { .. }) if attempt < READ_ATTEMPTS => {
                    attempt += 1;
                    self.rescan()?;
                }
                r => return r,
            }
        }
    }

    /// Forget what is known of the packs and read their indexes again.
    fn rescan(&self) -> Result<()> {
        let mut set = self.packs.write().unwrap_or_else(PoisonError::into_inner);
        set.forget();
        set.refresh(&self.pack_dir())
    }

    fn open_once(&self, id: &ObjectId) -> Result<(Box<dyn Read + Send>, PathBuf)> {
        let not_found = |path: PathBuf, e: std::io::Error| match e.kind() {
            ErrorKind::NotFound => Error::MissingObject { id: *id },
            _ => Error::io(path, e),
        };
        match self.locate(id)? {
            Location::Loose(path) => match File::open(&path) {
                Ok(f) => Ok((Box::new(f), path)),
                Err(e) => Err(not_found(path, e)),
            },
            Location::Packed(p) => {
                let path = p.pack.to_path_buf();
                let mut f = File::open(&path).map_err(|e| not_found(path.clone(), e))?;
                // A damaged index may name bytes past the pack's end, even past what a file
                // system can seek to (EINVAL): that is this object's damage, named as such.
                let size = f.metadata().at(&path)?.len();
                if p.offset.checked_add(p.len).is_none_or(|end| end > size) {
                    let reason = format!(
                        "its pack index names bytes {}..+{} of a {size}-byte pack",
                        p.offset, p.len
                    );
                    return Err(Error::CorruptObject { id: *id, path, reason });
                }
                f.seek(SeekFrom::Start(p.offset)).at(&path)?;
                Ok((Box::new(f.take(p.len)), path))
            }
        }
    }

    /// Stream object `id`'s payload into `out`, verifying its hash; returns (kind, size). On
    /// `CorruptObject` the caller must discard what was written.
    pub fn read_to(&self, id: &ObjectId, out: &mut dyn Write) -> Result<(Kind, u64)> {
        let (file, path) = self.open(id)?;
        let r = decode_verified(id, file, &path, out);
        if let Err(Error::CorruptObject { .. }) = &r {
            self.mark_damaged(id);
        }
        r
    }

    /// Re-hash object `id` without keeping its bytes (fsck).
    pub fn verify(&self, id: &ObjectId) -> Result<(Kind, u64)> {
        self.read_to(id, &mut std::io::sink())
    }

    /// Read and parse object `id`, verified.
    pub fn read(&self, id: &ObjectId) -> Result<Object> {
        let mut payload = Vec::new();
        let (kind, _) = self.read_to(id, &mut payload)?;
        Object::decode(kind, payload).map_err(|reason| Error::CorruptObject {
            id: *id,
            path: self.stored_at(id).map(|s| s.0).unwrap_or_else(|_| self.path_of(id)),
            reason,
        })
    }

    pub fn read_tree(&self, id: &ObjectId) -> Result<Tree> {
        match self.read(id)? {
            Object::Tree(t) => Ok(t),
            other => {
                Err(Error::WrongKind { id: *id, expected: "tree", actual: other.kind().as_str() })
            }
        }
    }

    pub fn read_commit(&self, id: &ObjectId) -> Result<Commit> {
        match self.read(id)? {
            Object::Commit(c) => Ok(*c),
            other => {
                Err(Error::WrongKind { id: *id, expected: "commit", actual: other.kind().as_str() })
            }
        }
    }

    pub fn read_blob(&self, id: &ObjectId) -> Result<Vec<u8>> {
        match self.read(id)? {
            Object::Blob(b) => Ok(b),
            other => {
                Err(Error::WrongKind { id: *id, expected: "blob", actual: other.kind().as_str() })
            }
        }
    }

    /// Kind and size from the header only (no verification; for `cat-object -t/-s`).
    pub fn header(&self, id: &ObjectId) -> Result<(Kind, u64)> {
        let (file, path) = self.open(id)?;
        let mut head = [0u8; 32];
        let read = with_decompressor(|context| {
            // A small buffer: only the header is read.
            let reader = std::io::BufReader::with_capacity(4096, file);
            let mut dec = zstd::stream::read::Decoder::with_context(reader, context);
            let mut got = 0;
            while got < head.len() {
                match dec.read(&mut head[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(got)
        })
        .unwrap_or_else(|| Err("cannot set up zstd".into()));
        let got =
            read.map_err(|reason| Error::CorruptObject { id: *id, path: path.clone(), reason })?;
        object::parse_header(&head[..got]).map(|(k, l, _)| (k, l)).ok_or(Error::CorruptObject {
            id: *id,
            path,
            reason: "bad header".into(),
        })
    }

    /// The stored (compressed) bytes, for copying to a remote as they are.
    pub fn read_raw(&self, id: &ObjectId) -> Result<Vec<u8>> {
        let (mut reader, path) = self.open(id)?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).at(&path)?;
        Ok(out)
    }

    /// Stage stored (compressed) bytes of object `id` that the caller has verified (a fetch
    /// checks them with `remote::local::check_raw` first, as it needs their links anyway).
    pub fn stage_checked(&self, id: ObjectId, stored: &[u8], to: StageTo) -> Result<Staged> {
        let mut staged = Staged { id, stored: 0, place: Place::Existing };
        if matches!(to, StageTo::HashOnly) || self.has(&id) {
            return Ok(staged);
        }
        self.place(&mut staged, stored, to)?;
        Ok(staged)
    }

    /// Every object id in the store, loose or packed.
    pub fn iter_ids(&self) -> Result<Vec<ObjectId>> {
        let mut ids = self.loose_ids()?;
        ids.extend(self.packed_ids()?);
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Ids of the loose objects.
    pub fn loose_ids(&self) -> Result<Vec<ObjectId>> {
        let mut ids = Vec::new();
        let Some(rd) = read_dir_if_exists(&self.dir)? else { return Ok(ids) };
        for fan in rd {
            let fan = fan.at(&self.dir)?;
            let prefix = fan.file_name().to_string_lossy().to_string();
            if prefix.len() != 2 || !ObjectId::is_hex_prefix(&prefix) {
                continue;
            }
            for entry in fs::read_dir(fan.path()).at(&fan.path())? {
                let entry = entry.at(&fan.path())?;
                let rest = entry.file_name().to_string_lossy().to_string();
                if let Ok(id) = format!("{prefix}{rest}").parse::<ObjectId>() {
                    ids.push(id);
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Ids in the packs, as of a fresh read of their indexes.
    fn packed_ids(&self) -> Result<Vec<ObjectId>> {
        let mut set = self.packs.write().unwrap_or_else(PoisonError::into_inner);
        set.refresh(&self.pack_dir())?;
        Ok(set.ids())
    }

    /// Ids starting with the hex `prefix` (at least 2 digits).
    pub fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<ObjectId>> {
        if prefix.len() < 2 || !ObjectId::is_hex_prefix(prefix) {
            return Ok(Vec::new());
        }
        let fan = self.dir.join(&prefix[..2]);
        let mut ids: Vec<ObjectId> =
            self.packed_ids()?.into_iter().filter(|id| id.to_hex().starts_with(prefix)).collect();
        if let Some(rd) = read_dir_if_exists(&fan)? {
            for entry in rd {
                let entry = entry.at(&fan)?;
                let full = format!("{}{}", &prefix[..2], entry.file_name().to_string_lossy());
                if full.starts_with(prefix)
                    && let Ok(id) = full.parse()
                {
                    ids.push(id);
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// When loose object `id` was written (gc's grace period).
    pub fn modified(&self, id: &ObjectId) -> Result<SystemTime> {
        let p = self.path_of(id);
        fs::metadata(&p).and_then(|m| m.modified()).at(&p)
    }

    /// Compressed size of object `id` on disk.
    pub fn stored_size(&self, id: &ObjectId) -> Result<u64> {
        self.stored_at(id).map(|(_, _, len)| len)
    }

    /// Delete loose object `id` (gc only).
    pub fn remove(&self, id: &ObjectId) -> Result<()> {
        let p = self.path_of(id);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(p, e)),
        }
    }

    /// The packs with their entries (gc, fsck); a damaged index is an error naming it.
    pub fn packs(&self) -> Result<Vec<PackFile>> {
        pack::list_packs(&self.pack_dir())
    }

    /// How many pack index files this handle has read so far: what its lookups cost.
    pub fn pack_indexes_read(&self) -> usize {
        self.packs.read().unwrap_or_else(PoisonError::into_inner).indexes_read()
    }

    /// Indexes that are damaged or cannot be read, with why (fsck: checked whole, which
    /// lookups do not do).
    pub fn damaged_pack_indexes(&self) -> Result<Vec<(PathBuf, String)>> {
        pack::check_indexes(&self.pack_dir())
    }

    /// Packs whose header or length contradicts their index, with why (fsck).
    pub fn damaged_packs(&self) -> Result<Vec<(PathBuf, String)>> {
        pack::check_packs(&self.pack_dir())
    }

    /// Replace `sources` and the `loose` objects by one new pack holding the given entries of
    /// each source and every loose object (gc). The new pack is published before anything old
    /// is deleted (a pack's index first), so every object kept stays readable throughout; a
    /// crash in between leaves both copies, which hold equal bytes.
    /// With `dense` (gc), objects not yet in a dense pack are recompressed at `DENSE_LEVEL`
    /// on both cores, and the new pack is marked dense.
    pub fn repack(
        &self,
        sources: &[(PackFile, Vec<pack::Entry>)],
        loose: &[ObjectId],
        dense: bool,
    ) -> Result<()> {
        let pack = self.new_pack();
        for (file, keep) in sources.iter().filter(|(_, keep)| !keep.is_empty()) {
            let source = File::open(&file.pack).at(&file.pack)?;
            let squeeze = dense && !self.is_dense(&file.pack);
            // In batches, so the recompression runs in parallel and the pack's order stays the
            // index's (a merge that changes nothing keeps its name).
            for batch in keep.chunks(64) {
                let stored: Vec<Vec<u8>> = batch
                    .par_iter()
                    .map(|e| {
                        let raw = pack::read_at(&source, e.offset, e.len).at(&file.pack)?;
                        Ok(if squeeze { recompressed(&e.id, &raw).unwrap_or(raw) } else { raw })
                    })
                    .collect::<Result<_>>()?;
                for (e, bytes) in batch.iter().zip(stored) {
                    pack.append(e.id, &bytes)?;
                }
            }
        }
        for batch in loose.chunks(64) {
            let stored: Vec<Vec<u8>> = batch
                .par_iter()
                .map(|id| {
                    let path = self.path_of(id);
                    let raw = fs::read(&path).at(&path)?;
                    Ok(if dense { recompressed(id, &raw).unwrap_or(raw) } else { raw })
                })
                .collect::<Result<_>>()?;
            for (id, bytes) in batch.iter().zip(stored) {
                pack.append(*id, &bytes)?;
            }
        }
        let new_pack = self.publish_staged(Vec::new(), Some(&pack))?;
        if dense && let Some(p) = &new_pack {
            let mark = p.with_extension(DENSE_MARK);
            File::create(&mark).at(&mark)?;
        }
        // Sources holding exactly the objects kept give a pack of the same name: that one stays.
        for (file, _) in sources.iter().filter(|(f, _)| Some(&f.pack) != new_pack.as_ref()) {
            for path in [&file.index, &file.pack, &file.pack.with_extension(DENSE_MARK)] {
                match fs::remove_file(path) {
                    Ok(()) => {}
                    // Another process repairing the same pack removed it first.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(path, e)),
                }
            }
        }
        for id in loose {
            self.remove(id)?;
        }
        self.packs.write().unwrap_or_else(PoisonError::into_inner).forget();
        fsync_dir(&self.pack_dir())
    }

    /// Keep the number of packs logarithmic in the store's size, as git's geometric repack
    /// does: every commit of a run of a few dozen files writes a pack, and every lookup reads
    /// every pack's index, so without this a commit's cost grew with the number of runs before
    /// it. Once there are more than `MAX_PACKS_BEFORE_MERGE` packs, the smallest ones are merged
    /// into one until each remaining pack is at least twice the size of all smaller ones
    /// together; a byte is thus copied O(log n) times over the store's life, and a commit of a
    /// large run never copies what other large runs stored. Returns how many packs were merged.
    pub fn merge_small_packs(&self) -> Result<usize> {
        let mut sized: Vec<(u64, PackFile)> = Vec::new();
        for file in pack::list(&self.pack_dir())? {
            match fs::metadata(&file.index) {
                Ok(_) => {}
                // No index: being published, or garbage gc removes.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&file.index, e)),
            }
            match fs::metadata(&file.pack) {
                Ok(m) => sized.push((m.len(), file)),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&file.pack, e)),
            }
        }
        if sized.len() <= MAX_PACKS_BEFORE_MERGE {
            return Ok(0);
        }
        sized.sort_by_key(|(len, _)| *len);
        let merge = geometric_split(&sized.iter().map(|(len, _)| *len).collect::<Vec<_>>());
        if merge < 2 {
            return Ok(0);
        }
        let mut sources = Vec::with_capacity(merge);
        for (_, mut file) in sized.into_iter().take(merge) {
            let bytes = match fs::read(&file.index) {
                Ok(b) => b,
                // Merged away by a concurrent commit: its objects are in that one's pack.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&file.index, e)),
            };
            file.entries = pack::decode_index(&bytes)
                .map_err(|reason| Error::DamagedPackIndex { path: file.index.clone(), reason })?;
            let keep = file.entries.clone();
            sources.push((file, keep));
        }
        self.repack(&sources, &[], false)?;
        Ok(sources.len())
    }

    /// Whether gc already recompressed the pack at `path` (`DENSE_MARK`).
    pub fn is_dense(&self, path: &Path) -> bool {
        path.with_extension(DENSE_MARK).is_file()
    }

    /// Leftovers of interrupted writes, with their age (gc removes old ones): temp files in
    /// objects/tmp and packs whose index was never written.
    pub fn temp_files(&self) -> Result<Vec<(PathBuf, SystemTime)>> {
        let dir = self.tmp_dir();
        let mut out = Vec::new();
        if let Some(rd) = read_dir_if_exists(&dir)? {
            for entry in rd {
                let entry = entry.at(&dir)?;
                let md = match entry.metadata() {
                    Ok(md) => md,
                    // Renamed into place (or removed) by its writer since the listing.
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(entry.path(), e)),
                };
                if md.is_file() {
                    out.push((entry.path(), md.modified().at(&entry.path())?));
                }
            }
        }
        out.extend(pack::orphans(&self.pack_dir())?);
        Ok(out)
    }
}

/// Decompress `stored` (the stored bytes of object `id`, read from `path`), stream the payload
/// into `out`, and check the hash.
fn decode_verified(
    id: &ObjectId,
    stored: impl Read,
    path: &Path,
    out: &mut dyn Write,
) -> Result<(Kind, u64)> {
    let compressed = BufReader::with_capacity(CHUNK, stored);
    stream_verified(id, compressed, &mut |_, chunk| out.write_all(chunk)).map_err(|e| match e {
        StreamError::Corrupt(reason) => {
            Error::CorruptObject { id: *id, path: path.to_path_buf(), reason }
        }
        StreamError::Sink(e) => Error::io(path, e),
    })
}

/// Why `stream_verified` stopped.
pub(crate) enum StreamError {
    /// The bytes are not a valid object, or not object `id`: the reason, for a corruption error.
    Corrupt(String),
    /// The sink refused a chunk (a full disk, say): not the object's fault.
    Sink(std::io::Error),
}

/// Decompresses a stored object's bytes, feeds its payload to `sink` chunk by chunk (with the
/// kind, known from the header before the first chunk), and checks that the whole encoding
/// hashes to `id`; returns (kind, payload size). The one verifier for objects read from this
/// store and objects arriving from a remote, so both refuse exactly the same bytes. Memory stays
/// one chunk whatever the size; on an error the sink may have seen part of the payload.
pub(crate) fn stream_verified(
    id: &ObjectId,
    compressed: impl BufRead,
    sink: &mut dyn FnMut(Kind, &[u8]) -> std::io::Result<()>,
) -> std::result::Result<(Kind, u64), StreamError> {
    with_decompressor(|context| stream_with(id, compressed, context, sink))
        .unwrap_or_else(|| Err(StreamError::Corrupt("cannot set up zstd".into())))
}

/// Runs `f` with this thread's zstd decompression context: taken for the call (an `f` that
/// reads another object meanwhile gets a new one) and put back after, reset first, as a failed
/// read may have left it mid-frame. `None` when no context can be made (out of memory).
fn with_decompressor<T>(f: impl FnOnce(&mut zstd::zstd_safe::DCtx<'static>) -> T) -> Option<T> {
    let mut context = match DECOMPRESSOR.with(|d| d.borrow_mut().take()) {
        Some(c) => c,
        None => zstd::zstd_safe::DCtx::try_create()?,
    };
    let _ = context.reset(zstd::zstd_safe::ResetDirective::SessionOnly);
    let result = f(&mut context);
    DECOMPRESSOR.with(|d| *d.borrow_mut() = Some(context));
    Some(result)
}

/// [`stream_verified`] with the zstd context to use.
fn stream_with(
    id: &ObjectId,
    compressed: impl BufRead,
    context: &mut zstd::zstd_safe::DCtx<'static>,
    sink: &mut dyn FnMut(Kind, &[u8]) -> std::io::Result<()>,
) -> std::result::Result<(Kind, u64), StreamError> {
    let corrupt = StreamError::Corrupt;
    let mut dec = zstd::stream::read::Decoder::with_context(compressed, context);
    let mut head = Vec::with_capacity(32);
    let mut byte = [0u8; 1];
    loop {
        dec.read_exact(&mut byte).map_err(|e| corrupt(format!("bad header: {e}")))?;
        head.push(byte[0]);
        if byte[0] == 0 {
            break;
        }
        if head.len() >= 32 {
            return Err(corrupt("bad header".into()));
        }
    }
    let (kind, len, _) = object::parse_header(&head).ok_or_else(|| corrupt("bad header".into()))?;
    // Trees and commits are parsed in memory: refuse an absurd size before reading any of it.
    if kind != Kind::Blob && len > object::MAX_PARSED_PAYLOAD {
        return Err(corrupt(format!(
            "a {kind} of {len} bytes, more than the {} exp reads",
            object::MAX_PARSED_PAYLOAD
        )));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&head);
    // A small object needs no 256 KiB buffer (zeroing it was a tenth of `exp log`); one byte
    // more than announced is enough to notice an object longer than its header says.
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK).saturating_add(1))];
    let mut seen = 0u64;
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(format!("cannot decompress: {e}"))),
        };
        seen += n as u64;
        if seen > len {
            return Err(corrupt("longer than its header says".into()));
        }
        hasher.update(&buf[..n]);
        sink(kind, &buf[..n]).map_err(StreamError::Sink)?;
    }
    if seen != len {
        return Err(corrupt("shorter than its header says".into()));
    }
    if hasher.finalize().as_bytes() != id.as_bytes() {
        return Err(corrupt("content does not match its id".into()));
    }
    Ok((kind, len))
}

/// The stored bytes of object `id` recompressed at `DENSE_LEVEL`; None when they do not verify
/// (kept as they are, for fsck to name), are too large, or would not shrink.
fn recompressed(id: &ObjectId, stored: &[u8]) -> Option<Vec<u8>> {
    if stored.len() > DENSE_MAX {
        return None;
    }
    let mut payload = Vec::new();
    let (kind, len) = stream_verified(id, stored, &mut |_, chunk| {
        payload.extend_from_slice(chunk);
        Ok(())
    })
    .ok()?;
    let mut encoding = object::header(kind, len);
    encoding.extend_from_slice(&payload);
    let dense = zstd::bulk::compress(&encoding, DENSE_LEVEL).ok()?;
    (dense.len() < stored.len()).then_some(dense)
}

/// How many of `sizes` (ascending) to merge so that every pack left is at least twice the size
/// of all smaller packs together (the merged one included).
fn geometric_split(sizes: &[u64]) -> usize {
    let mut prefix = 0u64;
    let mut split = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if size < prefix.saturating_mul(2) {
            split = i + 1;
        }
        prefix += size;
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_packs_merge_until_each_pack_is_twice_all_smaller_ones() {
        assert_eq!(geometric_split(&[1, 1]), 2);
        assert_eq!(geometric_split(&[1, 4, 16]), 0);
        assert_eq!(geometric_split(&[1, 1, 1, 8, 100]), 3);
        // Sixteen small runs since the last merge do not drag a much larger pack along.
        let mut sizes = vec![1; 16];
        sizes.push(40);
        assert_eq!(geometric_split(&sizes), 16);
    }

    fn odb() -> (tempfile::TempDir, Odb) {
        let dir = tempfile::tempdir().unwrap();
        let odb = Odb::new(dir.path().join("objects"));
        (dir, odb)
    }

    #[test]
    fn a_blob_written_from_a_file_reads_back_and_dedups() {
        let (dir, odb) = odb();
        let f = dir.path().join("f");
        fs::write(&f, b"hello world").unwrap();
        let id = odb.write_blob_from_path(&f).unwrap();
        assert_eq!(id, object::encode(Kind::Blob, b"hello world").0);
        assert_eq!(odb.read_blob(&id).unwrap(), b"hello world");
        assert_eq!(odb.header(&id).unwrap(), (Kind::Blob, 11));
        let again = odb.stage_file(&f, StageTo::Loose).unwrap();
        assert!(!again.is_new());
        assert_eq!(odb.iter_ids().unwrap(), vec![id]);
        assert!(odb.temp_files().unwrap().is_empty());
    }

    #[test]
    fn a_flipped_bit_is_an_error_naming_the_object() {
        let (_dir, odb) = odb();
        let id = odb.write(&Object::Blob(vec![7u8; 10_000])).unwrap();
        let path = odb.path_of(&id);
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
        let err = odb.read(&id).unwrap_err();
        assert!(err.to_string().contains(&id.to_hex()), "{err}");
    }

    #[test]
    fn stream_verified_feeds_the_payload_and_tells_a_failing_sink_from_corruption() {
        let (_dir, odb) = odb();
        let payload = vec![3u8; CHUNK + 10];
        let id = odb.write(&Object::Blob(payload.clone())).unwrap();
        let raw = odb.read_raw(&id).unwrap();
        let mut seen = Vec::new();
        let (kind, len) = stream_verified(&id, raw.as_slice(), &mut |kind, chunk| {
            assert_eq!(kind, Kind::Blob);
            seen.extend_from_slice(chunk);
            Ok(())
        })
        .ok()
        .unwrap();
        assert_eq!((kind, len, seen), (Kind::Blob, payload.len() as u64, payload));
        let full = || std::io::Error::new(ErrorKind::StorageFull, "disk full");
        let r = stream_verified(&id, raw.as_slice(), &mut |_, _| Err(full()));
        assert!(matches!(r, Err(StreamError::Sink(e)) if e.kind() == ErrorKind::StorageFull));
        let other = odb.write(&Object::Blob(b"other".to_vec())).unwrap();
        let r = stream_verified(&other, raw.as_slice(), &mut |_, _| Ok(()));
        assert!(
            matches!(r, Err(StreamError::Corrupt(why)) if why == "content does not match its id")
        );
    }

    #[test]
    fn a_pack_batch_stays_invisible_until_published_then_reads_like_loose_objects() {
        let (_dir, src) = odb();
        let (dir2, dst) = odb();
        let mut ids: Vec<ObjectId> = (0..5u8)
            .map(|i| src.write(&Object::Blob(vec![i; 1000 + i as usize])).unwrap())
            .collect();
        let pack = dst.new_pack();
        let stage = |id: &ObjectId| {
            dst.stage_checked(*id, &src.read_raw(id).unwrap(), StageTo::Pack(&pack)).unwrap()
        };
        let staged: Vec<Staged> = ids.iter().map(stage).collect();
        assert!(staged.iter().all(Staged::is_new) && !dst.has(&ids[0]));
        assert!(!stage(&ids[0]).is_new(), "a batch holds an object once");
        dst.publish(staged, Some(&pack)).unwrap();
        for id in &ids {
            assert_eq!(dst.read_raw(id).unwrap(), src.read_raw(id).unwrap());
        }
        ids.sort();
        assert_eq!(dst.iter_ids().unwrap(), ids);
        assert!(dst.loose_ids().unwrap().is_empty());
        assert_eq!(dst.ids_with_prefix(&ids[1].to_hex()[..6]).unwrap(), vec![ids[1]]);
        let (path, _, len) = dst.stored_at(&ids[2]).unwrap();
        assert_eq!(path.extension().unwrap(), "pack");
        assert_eq!(dst.stored_size(&ids[2]).unwrap(), len);
        // Another handle (another process) finds them through the index.
        let other = Odb::new(dir2.path().join("objects"));
        assert!(matches!(other.read(&ids[2]).unwrap(), Object::Blob(_)));
        assert!(dst.temp_files().unwrap().is_empty());
    }
}
