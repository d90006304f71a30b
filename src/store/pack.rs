//! Packs: many objects in one file, with an index naming each one's offset and length.
//!
//! A commit of a run with thousands of small files would otherwise create, rename and fsync
//! thousands of object files; on ext4 creating the inodes alone costs as much CPU as
//! compressing the bytes. So `exp commit` appends small new objects to one pack instead, and
//! remotes move objects in packs of the same format (`remote::pack`). Objects inside a pack are
//! stored exactly as loose ones (zstd of the canonical encoding), so nothing is recompressed
//! when an object moves between a pack, a loose file and a remote.
//!
//! Local packs live in `objects/pack/pack-<hex>.pack` with their index `pack-<hex>.idx`, where
//! `<hex>` is the BLAKE3 of the index. The pack is renamed into place before its index, and a
//! reader only believes indexes, so a crash can leave a pack without an index (ignored, removed
//! by gc) but never an index pointing at missing bytes.
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use memmap2::Mmap;
use tempfile::NamedTempFile;

use super::ObjectId;
use super::atomic::{create_dirs, fsync_dir, start_writeback, temp_file_in};
use super::error::{Error, IoContext, Result, read_dir_if_exists};

/// First bytes of every pack.
pub const PACK_MAGIC: &[u8; 8] = b"EXPPACK1";
/// First bytes of every index.
pub const INDEX_MAGIC: &[u8; 8] = b"EXPIDX01";
/// id (32) + offset (8) + length (8).
const ENTRY_LEN: usize = 48;
/// How much a pack being written may hold in dirty pages before its writeback is started.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Where an object sits in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: ObjectId,
    pub offset: u64,
    pub len: u64,
}

impl Entry {
    /// After the pack's magic and before i64::MAX (no file reaches past it; seeking there
    /// fails with a bare EINVAL). Whether the pack really is that long is checked on reading.
    fn may_lie_in_a_pack(&self) -> bool {
        let end = self.offset.checked_add(self.len).filter(|&end| end <= i64::MAX as u64);
        self.offset >= PACK_MAGIC.len() as u64 && end.is_some()
    }
}

/// `magic, count (u32 LE), entries sorted by id, BLAKE3 of everything before it`. The checksum
/// lets fsck, gc and a fetch tell a damaged index (and a remote's index be trusted whole); the
/// order lets a reader binary-search the entries where they lie ([`PackSet`]).
/// The inverse, checked whole, is [`decode_index`].
pub fn encode_index(entries: &[Entry]) -> Vec<u8> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_unstable_by_key(|e| e.id);
    let mut out = Vec::with_capacity(8 + 4 + entries.len() * ENTRY_LEN + 32);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in sorted {
        out.extend_from_slice(e.id.as_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// The entries of an index checked whole (checksum, every entry inside a possible pack); the
/// error says what is wrong.
pub fn decode_index(bytes: &[u8]) -> std::result::Result<Vec<Entry>, String> {
    let raw = RawIndex::check(bytes)?;
    Ok((0..raw.len()).map(|i| raw.entry(i)).collect())
}

/// A pack index's entry bytes, not decoded: a lookup in a sorted index binary-searches them
/// where they lie.
#[derive(Debug)]
struct RawIndex<'a> {
    entries: &'a [u8],
}

impl<'a> RawIndex<'a> {
    /// The entries of an index whose header and length agree. O(1): what every command does
    /// before searching an index (see [`Entries`]).
    fn open(bytes: &'a [u8]) -> std::result::Result<RawIndex<'a>, String> {
        if bytes.len() < 8 + 4 + 32 || &bytes[..8] != INDEX_MAGIC {
            return Err("not a pack index (bad header)".to_string());
        }
        let body = &bytes[..bytes.len() - 32];
        let count = u32::from_le_bytes([body[8], body[9], body[10], body[11]]) as usize;
        let entries = &body[12..];
        if entries.len() != count * ENTRY_LEN {
            return Err(format!("{count} entries announced, {} bytes present", entries.len()));
        }
        Ok(RawIndex { entries })
    }

    /// `open`, then the checksum and every entry inside a possible pack: what fsck, gc and a
    /// pack merge do before trusting a whole index.
    fn check(bytes: &'a [u8]) -> std::result::Result<RawIndex<'a>, String> {
        let raw = RawIndex::open(bytes)?;
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err("checksum mismatch".to_string());
        }
        for i in 0..raw.len() {
            let e = raw.entry(i);
            if !e.may_lie_in_a_pack() {
                return Err(format!("entry for {} points outside its pack", e.id));
            }
        }
        Ok(raw)
    }

    fn len(&self) -> usize {
        self.entries.len() / ENTRY_LEN
    }

    fn id_bytes(&self, i: usize) -> &[u8] {
        &self.entries[i * ENTRY_LEN..i * ENTRY_LEN + 32]
    }

    fn entry(&self, i: usize) -> Entry {
        let chunk = &self.entries[i * ENTRY_LEN..(i + 1) * ENTRY_LEN];
        let mut id = [0u8; 32];
        id.copy_from_slice(&chunk[..32]);
        let word = |r: Range<usize>| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&chunk[r]);
            u64::from_le_bytes(w)
        };
        Entry { id: ObjectId::from_bytes(id), offset: word(32..40), len: word(40..48) }
    }

    fn is_sorted(&self) -> bool {
        (1..self.len()).all(|i| self.id_bytes(i - 1) <= self.id_bytes(i))
    }

    fn find(&self, id: &ObjectId) -> Option<Entry> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.id_bytes(mid).cmp(id.as_bytes().as_slice()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.entry(mid)),
            }
        }
        None
    }
}

/// One pack's entries as a [`PackSet`] keeps them, sorted by id either way.
///
/// Every command looks objects up, so what a lookup costs before its first answer is paid by
/// every command and must not grow with the store: a sorted index is mapped (`IndexBytes`) and
/// searched where it lies, only its header and length checked (O(1)) and its order (a compare
/// per entry, no copy). Its checksum and entry bounds are checked whole by fsck, gc and pack
/// merges, not per command, as git checks its `.idx` checksums only in fsck: a damaged entry cannot give wrong
/// data, since every read re-hashes the object it was sent to and every read checks the range
/// against the pack's size; it can only hide an object (a commit then stores it again) or send
/// a read to bytes that fail verification, an error naming the object.
#[derive(Debug)]
enum Entries {
    /// An index whose entries were written sorted (every exp since pack indexes were sorted).
    Sorted(IndexBytes),
    /// Entries just written, or read from an unsorted index (an older exp's), sorted here.
    Decoded(Vec<Entry>),
}

impl Entries {
    /// An index file's entries, or why the file cannot be one.
    fn open(path: &Path) -> std::io::Result<std::result::Result<Entries, String>> {
        let file = File::open(path)?;
        let bytes = IndexBytes::of(&file, path)?;
        let raw = match RawIndex::open(&bytes) {
            Ok(raw) => raw,
            Err(why) => return Ok(Err(why)),
        };
        if raw.is_sorted() {
            return Ok(Ok(Entries::Sorted(bytes)));
        }
        Ok(Ok(Entries::decoded((0..raw.len()).map(|i| raw.entry(i)).collect())))
    }

    fn decoded(mut entries: Vec<Entry>) -> Entries {
        if !entries.is_sorted_by(|a, b| a.id <= b.id) {
            entries.sort_unstable_by_key(|e| e.id);
        }
        Entries::Decoded(entries)
    }

    /// Where `id` is; an entry that cannot lie in a pack (damage fsck reports) hides its object
    /// rather than send a read astray, so another copy is found or a commit stores it again.
    fn find(&self, id: &ObjectId) -> Option<Entry> {
        match self {
            Entries::Sorted(bytes) => {
                RawIndex::open(bytes).ok()?.find(id).filter(Entry::may_lie_in_a_pack)
            }
            Entries::Decoded(entries) => {
                entries.binary_search_by(|e| e.id.cmp(id)).ok().map(|i| entries[i])
            }
        }
    }

    fn ids(&self) -> Vec<ObjectId> {
        match self {
            Entries::Sorted(bytes) => match RawIndex::open(bytes) {
                Ok(raw) => (0..raw.len()).map(|i| raw.entry(i).id).collect(),
                Err(_) => Vec::new(),
            },
            Entries::Decoded(entries) => entries.iter().map(|e| e.id).collect(),
        }
    }
}

/// An index file's bytes: mapped, or read whole where the file system cannot map files.
#[derive(Debug)]
enum IndexBytes {
    Mapped(Mmap),
    Read(Vec<u8>),
}

impl IndexBytes {
    fn of(file: &File, path: &Path) -> std::io::Result<IndexBytes> {
        // SAFETY: an index file is never written in place: it is written to a temp file and
        // renamed (a pack merge or gc deletes it, which leaves the mapping intact). Only
        // something outside exp truncating it could make a read of the map fault.
        match unsafe { Mmap::map(file) } {
            Ok(map) => Ok(IndexBytes::Mapped(map)),
            Err(_) => fs::read(path).map(IndexBytes::Read),
        }
    }
}

impl std::ops::Deref for IndexBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            IndexBytes::Mapped(map) => map,
            IndexBytes::Read(bytes) => bytes,
        }
    }
}

/// Where a packed object's stored bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed {
    pub pack: Arc<Path>,
    pub offset: u64,
    pub len: u64,
}

/// One local pack, as `gc` and `fsck` see it.
#[derive(Clone, Debug)]
pub struct PackFile {
    pub pack: PathBuf,
    pub index: PathBuf,
    pub modified: SystemTime,
    pub entries: Vec<Entry>,
}

/// The local packs, read from their indexes on first use and refreshed when an object is not
/// found (another process may have written a pack since).
///
/// Each pack keeps its index entries sorted by id and a lookup binary-searches the packs, newest
/// first. A hash map of every packed object would make each command pay for the whole store
/// (hashing every entry of every index) before its first lookup; this maps each index (see
/// [`Entries`] for what is checked when), and commits keep the number of packs small
/// (`Odb::merge_small_packs`).
#[derive(Debug, Default)]
pub struct PackSet {
    scanned: bool,
    /// Index files already read, good or damaged.
    seen: HashSet<PathBuf>,
    /// In the order they were added.
    packs: Vec<(Arc<Path>, Entries)>,
    /// Index files read over this set's life, `forget` included.
    reads: usize,
}

impl PackSet {
    /// Where `id` is stored; the pack added last wins when several hold it (equal bytes).
    pub fn get(&self, id: &ObjectId) -> Option<Packed> {
        self.packs.iter().rev().find_map(|(pack, entries)| {
            let e = entries.find(id)?;
            Some(Packed { pack: pack.clone(), offset: e.offset, len: e.len })
        })
    }

    pub fn is_scanned(&self) -> bool {
        self.scanned
    }

    /// Every packed id once, sorted.
    pub fn ids(&self) -> Vec<ObjectId> {
        let mut ids: Vec<ObjectId> =
            self.packs.iter().flat_map(|(_, entries)| entries.ids()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// How many index files this set has read, over its whole life.
    pub fn indexes_read(&self) -> usize {
        self.reads
    }

    /// Read every index in `dir` not read before. One that is not an index at all is skipped
    /// (its objects unseen); [`check_indexes`] says why.
    pub fn refresh(&mut self, dir: &Path) -> Result<()> {
        self.scanned = true;
        for file in list(dir)? {
            if self.seen.contains(&file.index) {
                continue;
            }
            match Entries::open(&file.index) {
                Ok(opened) => {
                    self.reads += 1;
                    self.seen.insert(file.index.clone());
                    if let Ok(entries) = opened {
                        self.packs.push((Arc::from(file.pack.as_path()), entries));
                    }
                }
                // No index yet (a pack being published) or no more (gc just replaced it).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => {
                    self.seen.insert(file.index.clone());
                }
            }
        }
        Ok(())
    }

    /// Believe the index of `pack` (read, or just written). For an object several packs hold
    /// (equal bytes), the pack added last is where it is read from.
    pub fn add(&mut self, pack: &Path, entries: Vec<Entry>) {
        self.seen.insert(pack.with_extension("idx"));
        self.packs.push((Arc::from(pack), Entries::decoded(entries)));
    }

    /// Forget everything after packs were deleted (gc): the next lookup reads the indexes
    /// again, so an object another pack also holds is found there.
    pub fn forget(&mut self) {
        *self = PackSet { reads: self.reads, ..PackSet::default() };
    }
}

/// Every `pack-*.pack` in `dir` with its index path (which may not exist: an interrupted write).
pub(crate) fn list(dir: &Path) -> Result<Vec<PackFile>> {
    let mut out = Vec::new();
    let Some(rd) = read_dir_if_exists(dir)? else { return Ok(out) };
    for entry in rd {
        let entry = entry.at(dir)?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "pack") {
            let modified = match entry.metadata().and_then(|m| m.modified()) {
                Ok(t) => t,
                // Deleted since the listing (gc replaced it): not there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(path, e)),
            };
            let index = path.with_extension("idx");
            out.push(PackFile { pack: path, index, modified, entries: Vec::new() });
        }
    }
    out.sort_by(|a, b| a.pack.cmp(&b.pack));
    Ok(out)
}

/// The packs in `dir` that have an index, with their entries; a damaged index is an error.
pub fn list_packs(dir: &Path) -> Result<Vec<PackFile>> {
    let mut out = Vec::new();
    for mut file in list(dir)?.into_iter().filter(|f| f.index.exists()) {
        let bytes = fs::read(&file.index).at(&file.index)?;
        file.entries = decode_index(&bytes)
            .map_err(|reason| Error::DamagedPackIndex { path: file.index.clone(), reason })?;
        out.push(file);
    }
    Ok(out)
}

/// Every index in `dir` that is damaged (header, length, checksum or an entry outside any
/// pack) or cannot be read, with why (fsck).
pub fn check_indexes(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for file in list(dir)? {
        let why = match fs::read(&file.index) {
            Ok(bytes) => decode_index(&bytes).err(),
            // No index yet (a pack being published): fsck reports it as a leftover.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(e.to_string()),
        };
        out.extend(why.map(|why| (file.index, why)));
    }
    Ok(out)
}

/// Why the pack at `path` cannot hold what its index says: a wrong magic, or entries past its
/// end (fsck). None when it looks whole; the objects themselves are checked one by one.
pub fn check_pack(path: &Path, entries: &[Entry]) -> Option<String> {
    let mut magic = [0u8; 8];
    let read = File::open(path).and_then(|mut f| {
        std::io::Read::read_exact(&mut f, &mut magic)?;
        f.metadata()
    });
    let size = match read {
        Ok(m) => m.len(),
        // Deleted since it was listed (gc replaced it).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("cannot read its header: {e}")),
    };
    if &magic != PACK_MAGIC {
        return Some(format!(
            "bad magic {:?} (expected {:?})",
            String::from_utf8_lossy(&magic),
            "EXPPACK1"
        ));
    }
    let end = entries.iter().map(|e| e.offset + e.len).max().unwrap_or(8);
    (end > size).then(|| format!("its index names bytes up to {end}, the pack has {size}"))
}

/// Every pack in `dir` with a readable index that `check_pack` finds wrong, with why. Damaged
/// indexes are `PackSet::damaged`'s to report.
pub fn check_packs(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for file in list(dir)? {
        let Ok(entries) = fs::read(&file.index).map(|b| decode_index(&b)) else { continue };
        if let Some(why) = entries.ok().and_then(|entries| check_pack(&file.pack, &entries)) {
            out.push((file.pack, why));
        }
    }
    Ok(out)
}

/// Packs in `dir` whose index was never written (an interrupted write), with their age.
pub fn orphans(dir: &Path) -> Result<Vec<(PathBuf, SystemTime)>> {
    Ok(list(dir)?.into_iter().filter(|f| !f.index.exists()).map(|f| (f.pack, f.modified)).collect())
}

/// A pack being written: objects are appended to a temp file as they come, and `finish`
/// makes it durable and visible. Memory holds only the entry list.
pub struct PackWriter {
    out: BufWriter<NamedTempFile>,
    offset: u64,
    /// Bytes appended since writeback was last started.
    unflushed: u64,
    entries: Vec<Entry>,
    ids: HashSet<ObjectId>,
}

impl PackWriter {
    /// A new pack in a temp file under `tmp_dir`.
    pub fn new(tmp_dir: &Path) -> Result<PackWriter> {
        create_dirs(tmp_dir)?;
        let tmp = temp_file_in(tmp_dir, "pack-")?;
        let mut out = BufWriter::with_capacity(1 << 20, tmp);
        out.write_all(PACK_MAGIC).at(tmp_dir)?;
        Ok(PackWriter {
            out,
            offset: PACK_MAGIC.len() as u64,
            unflushed: 0,
            entries: Vec::new(),
            ids: HashSet::new(),
        })
    }

    /// Append an object's stored bytes; false when this pack already holds it.
    pub fn append(&mut self, id: ObjectId, stored: &[u8]) -> Result<bool> {
        if !self.ids.insert(id) {
            return Ok(false);
        }
        let path = self.out.get_ref().path().to_path_buf();
        self.out.write_all(stored).at(&path)?;
        self.entries.push(Entry { id, offset: self.offset, len: stored.len() as u64 });
        self.offset += stored.len() as u64;
        self.unflushed += stored.len() as u64;
        // Start the disk on what is written so far, so `finish` mostly finds it there already.
        if self.unflushed >= WRITEBACK_EVERY {
            self.out.flush().at(&path)?;
            start_writeback(self.out.get_ref().as_file());
            self.unflushed = 0;
        }
        Ok(true)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Make the pack durable, then its index, then move both into `dir` (pack first) and make
    /// the names durable. Returns the pack's path and entries.
    pub fn finish(self, dir: &Path) -> Result<(PathBuf, Vec<Entry>)> {
        let tmp_dir = self.out.get_ref().path().parent().map(Path::to_path_buf).unwrap_or_default();
        let pack_tmp = self.out.into_inner().map_err(|e| {
            let (error, out) = e.into_parts();
            Error::io(out.get_ref().path(), error)
        })?;
        pack_tmp.as_file().sync_all().at(pack_tmp.path())?;
        let index = encode_index(&self.entries);
        let name = format!("pack-{}", blake3::hash(&index).to_hex());
        let mut index_tmp = temp_file_in(&tmp_dir, "idx-")?;
        index_tmp.write_all(&index).at(index_tmp.path())?;
        index_tmp.as_file().sync_all().at(index_tmp.path())?;
        create_dirs(dir)?;
        let pack_path = dir.join(format!("{name}.pack"));
        let index_path = dir.join(format!("{name}.idx"));
        pack_tmp.persist(&pack_path).map_err(|e| Error::io(&pack_path, e.error))?;
        index_tmp.persist(&index_path).map_err(|e| Error::io(&index_path, e.error))?;
        fsync_dir(dir)?;
        Ok((pack_path, self.entries))
    }
}

/// Read `len` bytes at `offset` of `file` (a packed object's stored bytes). A range beyond the
/// end of the file (a damaged or forged index) is an error before anything is allocated.
pub fn read_at(file: &File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata()?.len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the index names bytes {offset}..+{len}, past the pack's end ({size} bytes)"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes([n; 32])
    }

    #[test]
    fn an_unsorted_index_of_an_older_exp_is_still_searched_right() {
        let dir = tempfile::tempdir().unwrap();
        let entries = [(id(9), 8u64), (id(2), 20), (id(5), 40)];
        let mut bytes = INDEX_MAGIC.to_vec();
        bytes.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (i, offset) in entries {
            bytes.extend_from_slice(i.as_bytes());
            bytes.extend_from_slice(&offset.to_le_bytes());
            bytes.extend_from_slice(&4u64.to_le_bytes());
        }
        let sum = *blake3::hash(&bytes).as_bytes();
        bytes.extend_from_slice(&sum);
        fs::write(dir.path().join("pack-old.pack"), b"EXPPACK1").unwrap();
        fs::write(dir.path().join("pack-old.idx"), &bytes).unwrap();
        let mut set = PackSet::default();
        set.refresh(dir.path()).unwrap();
        for (i, offset) in entries {
            assert_eq!(set.get(&i).map(|p| p.offset), Some(offset));
        }
        assert!(set.get(&id(3)).is_none());
        assert_eq!(set.ids(), vec![id(2), id(5), id(9)]);
    }

    #[test]
    fn lookups_check_an_index_s_shape_and_fsck_checks_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let entries = [
            Entry { id: id(1), offset: 8, len: 5 },
            // Damage a checksum would catch: an entry over the pack's magic.
            Entry { id: id(2), offset: 0, len: 5 },
            Entry { id: id(3), offset: 13, len: 6 },
        ];
        let mut index = encode_index(&entries);
        let last = index.len() - 1;
        index[last] ^= 1;
        fs::write(dir.path().join("pack-a.pack"), b"EXPPACK1hello world!").unwrap();
        fs::write(dir.path().join("pack-a.idx"), &index).unwrap();
        fs::write(dir.path().join("pack-b.pack"), b"EXPPACK1").unwrap();
        fs::write(dir.path().join("pack-b.idx"), b"EXPIDX01 short").unwrap();
        let mut set = PackSet::default();
        set.refresh(dir.path()).unwrap();
        assert_eq!(set.get(&id(3)).map(|p| (p.offset, p.len)), Some((13, 6)));
        assert!(set.get(&id(2)).is_none(), "an entry that cannot lie in a pack hides its object");
        let damaged = check_indexes(dir.path()).unwrap();
        let reasons: Vec<(String, &str)> = damaged
            .iter()
            .map(|(p, why)| (p.file_name().unwrap().to_string_lossy().into_owned(), why.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("pack-a.idx".to_string(), "checksum mismatch"),
                ("pack-b.idx".to_string(), "not a pack index (bad header)")
            ]
        );
    }

    #[test]
    fn an_index_round_trips_and_a_flipped_bit_is_caught() {
        let entries =
            vec![Entry { id: id(1), offset: 8, len: 5 }, Entry { id: id(2), offset: 13, len: 6 }];
        let index = encode_index(&entries);
        assert_eq!(decode_index(&index).unwrap(), entries);
        let mut bad = index.clone();
        bad[20] ^= 1;
        assert_eq!(decode_index(&bad).unwrap_err(), "checksum mismatch");
        assert!(decode_index(b"garbage").is_err());
        let past = encode_index(&[Entry { id: id(1), offset: i64::MAX as u64, len: 1 }]);
        assert!(decode_index(&past).unwrap_err().contains("outside its pack"));
    }

    #[test]
    fn a_written_pack_is_found_by_its_index_and_a_pack_without_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let packs = dir.path().join("pack");
        let mut w = PackWriter::new(&dir.path().join("tmp")).unwrap();
        assert!(w.append(id(1), b"hello").unwrap());
        assert!(!w.append(id(1), b"hello").unwrap(), "an object goes into a pack once");
        assert!(w.append(id(2), b"world!").unwrap());
        let (path, entries) = w.finish(&packs).unwrap();
        assert_eq!(entries.len(), 2);
        let file = File::open(&path).unwrap();
        assert_eq!(read_at(&file, entries[1].offset, entries[1].len).unwrap(), b"world!");
        // An interrupted write: a pack whose index never arrived.
        fs::write(packs.join("pack-0000.pack"), b"EXPPACK1xyz").unwrap();
        let mut set = PackSet::default();
        set.refresh(&packs).unwrap();
        assert_eq!(set.get(&id(2)).unwrap().offset, entries[1].offset);
        assert_eq!(set.ids().len(), 2);
        assert_eq!(list_packs(&packs).unwrap().len(), 1);
        let orphans: Vec<PathBuf> = orphans(&packs).unwrap().into_iter().map(|o| o.0).collect();
        assert_eq!(orphans, vec![packs.join("pack-0000.pack")]);
        assert!(fs::read_dir(dir.path().join("tmp")).unwrap().next().is_none(), "no temp left");
    }
}
