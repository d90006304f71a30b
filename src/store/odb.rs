//! The object database: `objects/<2 hex>/<62 hex>` files holding zstd-compressed canonical
//! encodings (see `object`).
//!
//! Writes stream: a file is read once in 256 KiB chunks that feed the BLAKE3 hasher and the zstd
//! encoder together, into a temp file under `objects/tmp/`; only when the id is known is the temp
//! file made durable and renamed into place, so a name in `objects/` always holds complete bytes.
//! Memory stays bounded whatever the file size. Reads verify: every read re-hashes what it
//! decompressed, and a mismatch is `Error::CorruptObject` naming the object, never wrong data.
use std::fs::{self, File};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tempfile::TempPath;

use super::ObjectId;
use super::atomic::{create_dirs, fsync_dir, start_writeback, wait_writeback};
use super::error::{Error, IoContext, Result, read_dir_if_exists};
use super::object::{self, Commit, Kind, Object, Tree};

const CHUNK: usize = 256 * 1024;
/// zstd level 1. On eval output (JSONL/CSV/Markdown, bench/store) it stores about 10% less than
/// git's loose objects (zlib level 1) at half git's CPU; level 3 is 5% smaller but 20% slower.
/// Readers accept any level: it is not part of the format.
const LEVEL: i32 = 1;

/// Handle on `.exprepo/objects`.
#[derive(Debug, Clone)]
pub struct Odb {
    dir: PathBuf,
}

/// An object written to a temp file but not yet visible under its name.
pub struct Staged {
    pub id: ObjectId,
    pub kind: Kind,
    /// Payload size (uncompressed, without header).
    pub size: u64,
    /// Compressed size on disk; 0 when the object already existed.
    pub stored: u64,
    tmp: Option<TempPath>,
}

impl Staged {
    /// Whether publishing it adds a new object (false: the store already had it).
    pub fn is_new(&self) -> bool {
        self.tmp.is_some()
    }
}

impl Odb {
    pub fn new(dir: PathBuf) -> Odb {
        Odb { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where object `id` lives.
    pub fn path_of(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    pub fn has(&self, id: &ObjectId) -> bool {
        self.path_of(id).is_file()
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        let tmp = self.tmp_dir();
        create_dirs(&tmp)?;
        tempfile::Builder::new().prefix("obj-").tempfile_in(&tmp).at(&tmp)
    }

    /// Hash and compress the file at `path` into a temp file, streaming. With `hash_only`, only
    /// hash (for `--dry-run` and `status`). Errors if the file's length changes under us.
    pub fn stage_file(&self, path: &Path, hash_only: bool) -> Result<Staged> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        self.stage_reader(file, len, path, hash_only)
    }

    /// Like `stage_file` for any reader of exactly `len` bytes (`origin` names it in errors).
    pub fn stage_reader(
        &self,
        mut reader: impl Read,
        len: u64,
        origin: &Path,
        hash_only: bool,
    ) -> Result<Staged> {
        let head = object::header(Kind::Blob, len);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&head);
        let mut buf = vec![0u8; CHUNK];
        let mut seen = 0u64;
        let mut encoder = if hash_only {
            None
        } else {
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
        let mut staged = Staged { id, kind: Kind::Blob, size: len, stored: 0, tmp: None };
        if let Some(enc) = encoder {
            let tmp = enc.finish().at(origin)?;
            if !self.has(&id) {
                start_writeback(tmp.as_file());
                staged.stored = tmp.as_file().metadata().at(tmp.path())?.len();
                staged.tmp = Some(tmp.into_temp_path());
            }
        }
        Ok(staged)
    }

    /// Stage a small in-memory object (tree, commit, blob).
    pub fn stage_object(&self, obj: &Object) -> Result<Staged> {
        let (id, bytes) = obj.encode();
        let size = (bytes.len() - object::parse_header(&bytes).map(|h| h.2).unwrap_or(0)) as u64;
        let mut staged = Staged { id, kind: obj.kind(), size, stored: 0, tmp: None };
        if !self.has(&id) {
            let compressed = zstd::bulk::compress(&bytes, LEVEL).at(&self.dir)?;
            let mut tmp = self.temp_file()?;
            tmp.write_all(&compressed).at(tmp.path())?;
            staged.stored = compressed.len() as u64;
            staged.tmp = Some(tmp.into_temp_path());
        }
        Ok(staged)
    }

    /// Make staged objects durable, then visible under their names, then make the names durable.
    /// After this returns, a ref may name any of them. Large batches wait for each file's
    /// writeback and then pay for one journal commit (fsync of `objects/tmp/`), instead of one
    /// fsync per file, the expensive part of committing hundreds of files.
    pub fn publish(&self, staged: Vec<Staged>) -> Result<()> {
        let pending: Vec<(ObjectId, TempPath)> =
            staged.into_iter().filter_map(|s| s.tmp.map(|t| (s.id, t))).collect();
        if pending.is_empty() {
            return Ok(());
        }
        let batch = pending.len() > 8;
        if batch {
            for (_, tmp) in &pending {
                wait_writeback(tmp)?;
            }
            fsync_dir(&self.tmp_dir())?;
            tracing::debug!(objects = pending.len(), "batch durable; naming");
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
        Ok(())
    }

    /// The blob id the file at `path` would get, without any store (streaming; `hash-object`).
    pub fn hash_file(path: &Path) -> Result<ObjectId> {
        // A hash-only stage never touches the object folder, so any path will do.
        Odb::new(PathBuf::new()).stage_file(path, true).map(|s| s.id)
    }

    /// Store the file at `path` as a blob (streaming, durable) and return its id.
    pub fn write_blob_from_path(&self, path: &Path) -> Result<ObjectId> {
        let staged = self.stage_file(path, false)?;
        let id = staged.id;
        self.publish(vec![staged])?;
        Ok(id)
    }

    /// Store an in-memory object durably and return its id.
    pub fn write(&self, obj: &Object) -> Result<ObjectId> {
        let staged = self.stage_object(obj)?;
        let id = staged.id;
        self.publish(vec![staged])?;
        Ok(id)
    }

    pub fn write_tree(&self, tree: &Tree) -> Result<ObjectId> {
        self.write(&Object::Tree(tree.clone()))
    }

    pub fn write_commit(&self, commit: &Commit) -> Result<ObjectId> {
        self.write(&Object::Commit(Box::new(commit.clone())))
    }

    fn open(&self, id: &ObjectId) -> Result<(File, PathBuf)> {
        let path = self.path_of(id);
        match File::open(&path) {
            Ok(f) => Ok((f, path)),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::MissingObject { id: *id }),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Stream object `id`'s payload into `out`, verifying its hash; returns (kind, size). On
    /// `CorruptObject` the caller must discard what was written.
    pub fn read_to(&self, id: &ObjectId, out: &mut dyn Write) -> Result<(Kind, u64)> {
        let (file, path) = self.open(id)?;
        decode_verified(id, file, &path, out)
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
            path: self.path_of(id),
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
        let mut dec = zstd::stream::read::Decoder::new(file).map_err(|e| Error::io(&path, e))?;
        let mut head = [0u8; 32];
        let mut got = 0;
        while got < head.len() {
            match dec.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => {
                    return Err(Error::CorruptObject { id: *id, path, reason: e.to_string() });
                }
            }
        }
        object::parse_header(&head[..got]).map(|(k, l, _)| (k, l)).ok_or(Error::CorruptObject {
            id: *id,
            path,
            reason: "bad header".into(),
        })
    }

    /// The stored (compressed) bytes, for copying to a remote as they are.
    pub fn read_raw(&self, id: &ObjectId) -> Result<Vec<u8>> {
        let (mut file, path) = self.open(id)?;
        let mut out = Vec::new();
        file.read_to_end(&mut out).at(&path)?;
        Ok(out)
    }

    /// Store compressed bytes received from elsewhere under `id`, after checking that they
    /// decompress to an object whose hash is `id`: nothing corrupt ever becomes visible.
    pub fn write_raw(&self, id: &ObjectId, compressed: &[u8]) -> Result<()> {
        let staged = self.stage_raw(id, compressed)?;
        self.publish(vec![staged])
    }

    /// `write_raw` without publishing: verify and stage, so a fetch of many objects can
    /// `publish` them in one batch (one journal commit instead of one fsync per object).
    pub fn stage_raw(&self, id: &ObjectId, compressed: &[u8]) -> Result<Staged> {
        if self.has(id) {
            let (kind, size) = self.header(id)?;
            return Ok(Staged { id: *id, kind, size, stored: 0, tmp: None });
        }
        let mut tmp = self.temp_file()?;
        tmp.write_all(compressed).at(tmp.path())?;
        start_writeback(tmp.as_file());
        let tmp_path = tmp.into_temp_path();
        let file = File::open(&tmp_path).at(&tmp_path)?;
        let (kind, size) = decode_verified(id, file, &tmp_path, &mut std::io::sink())?;
        Ok(Staged { id: *id, kind, size, stored: compressed.len() as u64, tmp: Some(tmp_path) })
    }

    /// Every object id in the store.
    pub fn iter_ids(&self) -> Result<Vec<ObjectId>> {
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

    /// Ids starting with the hex `prefix` (at least 2 digits).
    pub fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<ObjectId>> {
        if prefix.len() < 2 || !ObjectId::is_hex_prefix(prefix) {
            return Ok(Vec::new());
        }
        let fan = self.dir.join(&prefix[..2]);
        let mut ids = Vec::new();
        let Some(rd) = read_dir_if_exists(&fan)? else { return Ok(ids) };
        for entry in rd {
            let entry = entry.at(&fan)?;
            let full = format!("{}{}", &prefix[..2], entry.file_name().to_string_lossy());
            if full.starts_with(prefix)
                && let Ok(id) = full.parse()
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// When object `id` was written (gc's grace period).
    pub fn modified(&self, id: &ObjectId) -> Result<SystemTime> {
        let p = self.path_of(id);
        fs::metadata(&p).and_then(|m| m.modified()).at(&p)
    }

    /// Compressed size of object `id` on disk.
    pub fn stored_size(&self, id: &ObjectId) -> Result<u64> {
        let p = self.path_of(id);
        fs::metadata(&p).map(|m| m.len()).at(&p)
    }

    /// Delete object `id` (gc only).
    pub fn remove(&self, id: &ObjectId) -> Result<()> {
        let p = self.path_of(id);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(p, e)),
        }
    }

    /// Temp files left by interrupted writes, with their age (gc removes old ones).
    pub fn temp_files(&self) -> Result<Vec<(PathBuf, SystemTime)>> {
        let dir = self.tmp_dir();
        let mut out = Vec::new();
        let Some(rd) = read_dir_if_exists(&dir)? else { return Ok(out) };
        for entry in rd {
            let entry = entry.at(&dir)?;
            let md = entry.metadata().at(&entry.path())?;
            if md.is_file() {
                out.push((entry.path(), md.modified().at(&entry.path())?));
            }
        }
        Ok(out)
    }
}

/// Decompress `file` (stored object `id`), stream the payload into `out`, and check the hash.
fn decode_verified(
    id: &ObjectId,
    file: File,
    path: &Path,
    out: &mut dyn Write,
) -> Result<(Kind, u64)> {
    let compressed = BufReader::with_capacity(CHUNK, file);
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
    let corrupt = StreamError::Corrupt;
    let mut dec =
        zstd::stream::read::Decoder::with_buffer(compressed).map_err(|e| corrupt(e.to_string()))?;
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
    let mut hasher = blake3::Hasher::new();
    hasher.update(&head);
    let mut buf = vec![0u8; CHUNK];
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let again = odb.stage_file(&f, false).unwrap();
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
    fn write_raw_refuses_bytes_that_do_not_hash_to_the_id() {
        let (_dir, src) = odb();
        let (_dir2, dst) = odb();
        let a = src.write(&Object::Blob(b"a".to_vec())).unwrap();
        let b = src.write(&Object::Blob(b"b".to_vec())).unwrap();
        let raw_a = src.read_raw(&a).unwrap();
        assert!(matches!(dst.write_raw(&b, &raw_a), Err(Error::CorruptObject { .. })));
        assert!(!dst.has(&b));
        dst.write_raw(&a, &raw_a).unwrap();
        assert_eq!(dst.read_blob(&a).unwrap(), b"a");
        // A batch: staged objects stay invisible until published.
        let staged = dst.stage_raw(&b, &src.read_raw(&b).unwrap()).unwrap();
        assert!(staged.is_new() && !dst.has(&b));
        dst.publish(vec![staged]).unwrap();
        assert_eq!(dst.read_blob(&b).unwrap(), b"b");
        assert!(dst.temp_files().unwrap().is_empty());
    }
}
