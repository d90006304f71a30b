//! Fuzzing of every parser that reads bytes exp did not write itself in this process: trees,
//! commits and stored objects, pack indexes and packs, ref and reflog files, the stat-cache
//! index, the YAML config, the OpenAI response decoder, response journals, and a whole remote as
//! `exp clone` reads it. Stable Rust has no cargo-fuzz, so this is proptest driving a mutation fuzzer.
//!
//! Each target starts from its committed seed corpus, `tests/data/fuzz/<target>/`: valid
//! encodings made by the real writers (`ok-*`, which must be accepted), known-nasty inputs
//! (`bad-*`, which must be refused: huge lengths, deep nesting, truncations, escapes) and
//! inputs that once broke a parser (`crash-*`, which must neither crash nor over-allocate).
//! `EXP_FUZZ_WRITE_CORPUS=1 cargo test --test fuzz_parsers` rewrites the `ok-*`/`bad-*` seeds
//! from the writers. A seed is a file, or a folder of files for targets that read several.
//!
//! Cases are seeds mutated (bit flips, byte sets, truncations, insertions, deletions, splices
//! from other seeds, lengths overwritten with huge values, repeated slices) or random bytes.
//! Every case must: not panic; return Ok or a typed error; allocate at most `BUDGET` (plus
//! `PER_INPUT_BYTE` per byte of input) on its thread at peak, as a counting global allocator
//! measures it; recurse within `STACK`; and finish within `MAX_CASE_TIME`.
//! Targets with a checksum or a hash in the way also get cases where it is recomputed after
//! mutating, so the mutations reach the parser behind it.
//!
//! Time: each target runs for `EXP_FUZZ_SECS` seconds (default 10; `scripts/test.sh` and CI use
//! the default). A long local soak: `EXP_FUZZ_SECS=600 cargo test --release --test
//! fuzz_parsers`. `EXP_FUZZ_SEED=N` replays a run; a failure prints its seed and writes the
//! minimal input under the target folder to copy into the corpus as `crash-<what>`.
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exp::store::object::{self, Commit, Kind, Mode, Object, Tree, TreeEntry};
use exp::store::pack::{self, Entry};
use exp::store::{Head, ObjectId, Odb, RefName, Refs};
use proptest::prelude::*;
use proptest::sample::Index as Pick;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

// ---------------------------------------------------------------------------------------------
// Memory and stack bounds

/// Peak bytes one case may hold on its thread: `BUDGET` plus `PER_INPUT_BYTE` per byte of input.
/// Linear in what was read (a YAML parser keeps a few hundred bytes per nesting level), never in
/// what the input claims: a length believed before it is checked blows through it.
const BUDGET: isize = 32 << 20;
const PER_INPUT_BYTE: isize = 256;
/// A single allocation this large during a case is refused (the process then aborts) after the
/// input is printed: a claimed length went straight into an allocation.
const HARD_CAP: usize = 1 << 30;
/// Largest input a case is cut to.
const MAX_INPUT: usize = 256 << 10;
/// Longest one case may take (a debug build on a loaded machine): parsing time that grows
/// faster than the input shows up here.
const MAX_CASE_TIME: Duration = Duration::from_secs(5);
/// Stack of the thread that runs a target: a parser that recurses per byte of input overflows it.
const STACK: usize = 4 << 20;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// The input of the case running on this thread, for the over-cap message.
    static CASE: Cell<(*const u8, usize, &'static str)> =
        const { Cell::new((std::ptr::null(), 0, "")) };
}

/// Counts each thread's live bytes and their peak; refuses `HARD_CAP` during a case.
struct Counting;

impl Counting {
    fn grew(size: usize) {
        let _ = LIVE.try_with(|l| {
            let now = l.get() + size as isize;
            l.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
    }

    fn shrank(size: usize) {
        let _ = LIVE.try_with(|l| l.set(l.get() - size as isize));
    }

    /// Whether the allocation may go ahead; if not, says why on stderr without allocating.
    fn allowed(size: usize) -> bool {
        let Ok((ptr, len, target)) = CASE.try_with(Cell::get) else { return true };
        if ptr.is_null() || size < HARD_CAP {
            return true;
        }
        let mut w = RawStderr::new();
        use std::fmt::Write as _;
        let _ = write!(w, "\nfuzz target `{target}` asked for {size} bytes; input (hex): ");
        // SAFETY: `CASE` points at the input slice of the case running on this thread, which
        // outlives the case (see `measured`).
        let input = unsafe { std::slice::from_raw_parts(ptr, len) };
        for b in input {
            let _ = write!(w, "{b:02x}");
        }
        let _ = w.write_str("\n");
        w.flush();
        false
    }
}

// SAFETY: every call is forwarded to `System`; the bookkeeping only touches const-initialized
// thread-locals of plain integers, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::allowed(layout.size()) {
            return std::ptr::null_mut();
        }
        Self::grew(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::allowed(layout.size()) {
            return std::ptr::null_mut();
        }
        Self::grew(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::shrank(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !Self::allowed(new_size) {
            return std::ptr::null_mut();
        }
        Self::shrank(layout.size());
        Self::grew(new_size);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A stderr writer that never allocates (usable inside the allocator).
struct RawStderr {
    buf: [u8; 256],
    len: usize,
}

impl RawStderr {
    fn new() -> RawStderr {
        RawStderr { buf: [0; 256], len: 0 }
    }

    fn flush(&mut self) {
        // SAFETY: write(2) on fd 2 with a buffer we own; a short or failed write only loses text.
        unsafe { libc::write(2, self.buf.as_ptr().cast(), self.len) };
        self.len = 0;
    }
}

impl std::fmt::Write for RawStderr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Runs `f` on `input` of `target`, returning what it returned and the peak bytes it held.
fn measured<T>(target: &'static str, input: &[u8], f: impl FnOnce() -> T) -> (T, isize) {
    CASE.with(|c| c.set((input.as_ptr(), input.len(), target)));
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    let out = f();
    CASE.with(|c| c.set((std::ptr::null(), 0, "")));
    (out, PEAK.with(Cell::get))
}

// ---------------------------------------------------------------------------------------------
// Cases, seeds and mutations

/// Files by name and their bytes.
type Files = Vec<(String, Vec<u8>)>;

/// One input: the files a target reads, by name (`""` for single-file targets).
#[derive(Clone, Debug)]
struct Case {
    files: Files,
}

impl Case {
    fn single(bytes: Vec<u8>) -> Case {
        Case { files: vec![(String::new(), bytes)] }
    }

    fn bytes(&self) -> &[u8] {
        &self.files[0].1
    }

    fn file(&self, name: &str) -> &[u8] {
        self.files.iter().find(|f| f.0 == name).map(|f| f.1.as_slice()).unwrap_or_default()
    }

    fn all_bytes(&self) -> Vec<u8> {
        self.files.iter().flat_map(|f| f.1.iter().copied()).collect()
    }
}

/// Lengths that break naive parsers: around powers of two, the type limits, and zero.
fn huge() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(u64::MAX - 7),
        Just(i64::MAX as u64),
        Just(u32::MAX as u64),
        Just(u32::MAX as u64 + 1),
        Just(1 << 40),
        (0u32..64).prop_map(|s| 1u64 << s),
        any::<u64>(),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Pick, u8),
    SetByte(Pick, u8),
    Truncate(Pick),
    Insert(Pick, Vec<u8>),
    Remove(Pick, usize),
    /// Insert a slice of another seed's bytes.
    Splice(Pick, Pick, Pick, usize),
    /// Overwrite 8 bytes with a little-endian length (pack index fields).
    Le64(Pick, u64),
    /// Overwrite 4 bytes with a little-endian count.
    Le32(Pick, u32),
    /// Replace the run of ASCII digits at or after a position with a decimal length (object
    /// headers, JSON and YAML numbers).
    Decimal(Pick, u64),
    /// Repeat a slice many times (deep nesting: `[`, `- `, `{"a":`).
    Repeat(Pick, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<Pick>;
    prop_oneof![
        (at(), 0u8..8).prop_map(|(a, b)| Mutation::FlipBit(a, b)),
        (at(), any::<u8>()).prop_map(|(a, v)| Mutation::SetByte(a, v)),
        at().prop_map(Mutation::Truncate),
        (at(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(a, v)| Mutation::Insert(a, v)),
        (at(), 1usize..64).prop_map(|(a, n)| Mutation::Remove(a, n)),
        (at(), at(), at(), 1usize..128).prop_map(|(a, s, f, n)| Mutation::Splice(a, s, f, n)),
        (at(), huge()).prop_map(|(a, v)| Mutation::Le64(a, v)),
        (at(), huge()).prop_map(|(a, v)| Mutation::Le32(a, v as u32)),
        (at(), huge()).prop_map(|(a, v)| Mutation::Decimal(a, v)),
        (at(), 1usize..8, 2usize..20_000).prop_map(|(a, n, k)| Mutation::Repeat(a, n, k)),
    ]
}

fn overwrite(b: &mut [u8], at: usize, bytes: &[u8]) {
    let end = (at + bytes.len()).min(b.len());
    b[at..end].copy_from_slice(&bytes[..end - at]);
}

/// Applies `m` to `b`; `seeds` are the other inputs a splice may take bytes from.
fn apply(m: &Mutation, b: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = b.len();
    let pos = |p: &Pick| if len == 0 { 0 } else { p.index(len) };
    match m {
        Mutation::FlipBit(p, bit) if len > 0 => b[pos(p)] ^= 1 << bit,
        Mutation::SetByte(p, v) if len > 0 => b[pos(p)] = *v,
        Mutation::Truncate(p) => b.truncate(pos(p)),
        Mutation::Insert(p, bytes) => {
            let at = pos(p);
            b.splice(at..at, bytes.iter().copied());
        }
        Mutation::Remove(p, n) if len > 0 => {
            let at = pos(p);
            b.drain(at..(at + n).min(len));
        }
        Mutation::Splice(p, s, f, n) if !seeds.is_empty() => {
            let other = &seeds[s.index(seeds.len())];
            if !other.is_empty() {
                let from = f.index(other.len());
                let chunk = &other[from..(from + n).min(other.len())];
                let at = pos(p);
                b.splice(at..at, chunk.iter().copied());
            }
        }
        Mutation::Le64(p, v) if len > 0 => overwrite(b, pos(p), &v.to_le_bytes()),
        Mutation::Le32(p, v) if len > 0 => overwrite(b, pos(p), &v.to_le_bytes()),
        Mutation::Decimal(p, v) if len > 0 => {
            let start = (pos(p)..len).find(|&i| b[i].is_ascii_digit()).unwrap_or(pos(p));
            let end = (start..len).find(|&i| !b[i].is_ascii_digit()).unwrap_or(len);
            b.splice(start..end, v.to_string().into_bytes());
        }
        Mutation::Repeat(p, n, k) if len > 0 => {
            let at = pos(p);
            let slice = b[at..(at + n).min(len)].to_vec();
            let times = (*k).min(MAX_INPUT / slice.len().max(1));
            let repeated = slice.repeat(times);
            b.splice(at..at, repeated);
        }
        _ => {}
    }
    b.truncate(MAX_INPUT);
}

/// How a case is made: a seed with mutations on its files, or random bytes for one file.
#[derive(Clone, Debug)]
enum Recipe {
    Mutated { seed: Pick, edits: Vec<(Pick, Mutation)>, repair_after: bool },
    Random { seed: Pick, file: Pick, bytes: Vec<u8> },
}

fn recipe() -> impl Strategy<Value = Recipe> {
    prop_oneof![
        4 => (any::<Pick>(), prop::collection::vec((any::<Pick>(), mutation()), 1..6), any::<bool>())
            .prop_map(|(seed, edits, repair_after)| Recipe::Mutated { seed, edits, repair_after }),
        1 => (any::<Pick>(), any::<Pick>(), prop::collection::vec(any::<u8>(), 0..2048))
            .prop_map(|(seed, file, bytes)| Recipe::Random { seed, file, bytes }),
    ]
}

/// A target's seeds, read from `tests/data/fuzz/<name>/`.
struct Corpus {
    seeds: Vec<(String, Case)>,
    /// Every file of every seed, for splices.
    pool: Vec<Vec<u8>>,
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz").join(target)
}

fn read_tree(dir: &Path, rel: &str, out: &mut Files) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        if p.is_dir() {
            read_tree(&p, &rel, out);
        } else {
            out.push((rel, fs::read(&p).unwrap()));
        }
    }
}

fn load_corpus(target: &str) -> Corpus {
    let dir = corpus_dir(target);
    let mut names: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut seeds = Vec::new();
    for p in names {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let case = if p.is_dir() {
            let mut files = Vec::new();
            read_tree(&p, "", &mut files);
            Case { files }
        } else {
            Case::single(fs::read(&p).unwrap())
        };
        seeds.push((name, case));
    }
    assert!(!seeds.is_empty(), "{} holds no seeds", dir.display());
    let pool = seeds.iter().flat_map(|(_, c)| c.files.iter().map(|f| f.1.clone())).collect();
    Corpus { seeds, pool }
}

// ---------------------------------------------------------------------------------------------
// Targets

/// What a target checks of one case: whether the input was accepted, or `Err(violation)` when
/// a property fails. Parsers run inside `measured`; the checks around them may allocate freely.
type Check = fn(&mut Scratch, &Case) -> Result<bool, String>;

struct Target {
    name: &'static str,
    check: Check,
    /// Repairs what guards the parser (a checksum), for the cases that ask for it after
    /// mutating, so the mutations reach the parser behind it.
    repair: fn(&mut Case),
    /// Cases per proptest batch: fewer for targets that start a process per case.
    batch: u32,
}

/// Per-thread scratch space (a temp folder) reused by every case of a target.
struct Scratch {
    dir: tempfile::TempDir,
}

fn no_repair(_: &mut Case) {}

fn within_budget(target: &str, peak: isize, input: usize) -> Result<(), String> {
    let budget = BUDGET + PER_INPUT_BYTE * input as isize;
    if peak > budget {
        return Err(format!(
            "{target}: held {peak} bytes at peak for {input} bytes of input (budget {budget})"
        ));
    }
    Ok(())
}

/// Trees: accepted payloads are canonical (re-encoding gives the same bytes) and every name is
/// safe to check out.
fn check_tree(_: &mut Scratch, case: &Case) -> Result<bool, String> {
    let b = case.bytes();
    let (r, peak) = measured("tree", b, || Tree::decode_payload(b));
    within_budget("tree", peak, b.len())?;
    let Ok(t) = r else { return Ok(false) };
    if t.encode_payload() != b {
        return Err("accepted a tree that is not in canonical form".into());
    }
    if let Some(e) = t.entries.iter().find(|e| object::check_name(&e.name).is_err()) {
        return Err(format!("accepted the unsafe name {:?}", e.name));
    }
    Ok(true)
}

/// Commits: an accepted commit encodes to a payload that decodes again.
fn check_commit(_: &mut Scratch, case: &Case) -> Result<bool, String> {
    let b = case.bytes();
    let (r, peak) = measured("commit", b, || Commit::decode_payload(b));
    within_budget("commit", peak, b.len())?;
    let Ok(c) = r else { return Ok(false) };
    Commit::decode_payload(&c.encode_payload())
        .map_err(|e| format!("an accepted commit does not decode after encoding: {e}"))?;
    Ok(true)
}

/// The object the stored bytes `b` hold by the pure functions, if any: (id, parsed object).
fn expected_object(b: &[u8]) -> Option<(ObjectId, Object)> {
    let raw = zstd::bulk::decompress(b, 4 * MAX_INPUT).ok()?;
    let (kind, len, head) = object::parse_header(&raw)?;
    if raw.len() - head != len as usize {
        return None;
    }
    let obj = Object::decode(kind, raw[head..].to_vec()).ok()?;
    Some((ObjectId::from_bytes(*blake3::hash(&raw).as_bytes()), obj))
}

/// Stored bytes `b` read through the odb (the one verifier, for local reads and for objects
/// arriving from a remote): under the id they hash to, they read back as exactly the object the
/// pure parsers see, or are refused when those refuse them; under any other id they are always
/// refused, naming the object. Never wrong data.
fn read_stored(s: &mut Scratch, target: &'static str, b: &[u8]) -> Result<bool, String> {
    let expected = expected_object(b);
    let wrong = ObjectId::from_bytes([0x5a; 32]);
    let right = expected.as_ref().map(|e| e.0).unwrap_or(wrong);
    let objects = s.dir.path().join("objects");
    let mut accepted = false;
    for id in [right, wrong] {
        let _ = fs::remove_dir_all(&objects);
        let odb = Odb::new(objects.clone());
        let path = odb.path_of(&id);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b).unwrap();
        let (r, peak) = measured(target, b, || odb.read(&id));
        within_budget(target, peak, b.len())?;
        match (r, &expected) {
            (Ok(obj), Some((want, parsed))) if id == *want => {
                if obj != *parsed {
                    return Err("read back another object than the bytes hold".into());
                }
                accepted = true;
            }
            (Ok(_), _) => return Err(format!("read object {id} from bytes that are not it")),
            (Err(e), Some((want, _))) if id == *want => {
                return Err(format!("refused a valid object: {e}"));
            }
            (Err(e), _) if !e.to_string().contains(&id.to_hex()) => {
                return Err(format!("the error does not name the object: {e}"));
            }
            (Err(_), _) => {}
        }
    }
    Ok(accepted)
}

/// Stored objects as the odb writes them (zstd of the canonical encoding): mutations hit the
/// compressed bytes.
fn check_object(s: &mut Scratch, case: &Case) -> Result<bool, String> {
    read_stored(s, "object", case.bytes())
}

/// Canonical encodings (`<kind> <len>\0<payload>`), compressed after mutating and stored under
/// the id they hash to, so mutations reach the header and payload parsers behind the hash.
fn check_encoding(s: &mut Scratch, case: &Case) -> Result<bool, String> {
    read_stored(s, "encoding", &zstd::bulk::compress(case.bytes(), 1).unwrap())
}

/// Recomputes a pack index's trailing checksum, so mutations reach the entries behind it.
fn fix_index_checksum(b: &mut [u8]) {
    if b.len() >= 44 && &b[..8] == pack::INDEX_MAGIC {
        let body = b.len() - 32;
        let sum = *blake3::hash(&b[..body]).as_bytes();
        b[body..].copy_from_slice(&sum);
    }
}

fn fix_index_files(case: &mut Case) {
    for (name, b) in &mut case.files {
        if name.is_empty() || name.ends_with(".idx") {
            fix_index_checksum(b);
        }
    }
}

/// Pack indexes: an accepted index whose entries are sorted by id (what exp writes) re-encodes
/// to the same bytes, an unsorted one (an older exp's) to the same entries sorted, and no entry
/// points before the pack's magic or past the end of the 64-bit range.
fn check_pack_index(_: &mut Scratch, case: &Case) -> Result<bool, String> {
    let b = case.bytes();
    let (r, peak) = measured("pack_index", b, || pack::decode_index(b));
    within_budget("pack_index", peak, b.len())?;
    let Ok(entries) = r else { return Ok(false) };
    let again = pack::encode_index(&entries);
    let sorted = entries.is_sorted_by(|a, b| a.id <= b.id);
    if sorted && again != b {
        return Err("accepted an index that does not re-encode to itself".into());
    }
    let normal = |mut e: Vec<pack::Entry>| {
        e.sort_by_key(|x| (x.id, x.offset, x.len));
        e
    };
    if pack::decode_index(&again).map(normal) != Ok(normal(entries.clone())) {
        return Err("an accepted index re-encodes to other entries".into());
    }
    if let Some(e) = entries.iter().find(|e| e.offset < 8 || e.offset.checked_add(e.len).is_none())
    {
        return Err(format!("accepted an entry outside any pack: {e:?}"));
    }
    Ok(true)
}

/// A local pack and its index (`p.pack`, `p.idx` of the seed) as a store finds them: every
/// object the index names reads back as itself or is refused naming it. Accepted: the index
/// names objects and all of them read.
fn check_pack(s: &mut Scratch, case: &Case) -> Result<bool, String> {
    let objects = s.dir.path().join("objects");
    let _ = fs::remove_dir_all(&objects);
    let packs = objects.join("pack");
    fs::create_dir_all(&packs).unwrap();
    fs::write(packs.join("pack-x.pack"), case.file("p.pack")).unwrap();
    fs::write(packs.join("pack-x.idx"), case.file("p.idx")).unwrap();
    let odb = Odb::new(objects);
    let input = case.all_bytes();
    let (r, peak) = measured("pack", &input, || -> Result<bool, String> {
        let Ok(ids) = odb.iter_ids() else { return Ok(false) };
        let mut all_read = !ids.is_empty();
        for id in ids {
            match odb.read(&id) {
                Ok(obj) if obj.encode().0 != id => return Err(format!("{id} read as another")),
                Ok(_) => {}
                Err(e) if !e.to_string().contains(&id.to_hex()) => {
                    return Err(format!("the error does not name the object: {e}"));
                }
                Err(_) => all_read = false,
            }
            if odb.verify(&id).is_ok() && odb.read(&id).is_err() {
                let kind = odb.header(&id).map(|h| h.0);
                if matches!(kind, Ok(Kind::Blob)) {
                    return Err(format!("{id} verifies as a blob but does not read"));
                }
            }
        }
        Ok(all_read)
    });
    within_budget("pack", peak, input.len())?;
    r
}

/// Ref files, HEAD and reflogs all holding the input: reading refs answers Ok or an error and
/// never loops; an id read back is exactly the file's text. Accepted: a ref, HEAD or a reflog
/// line came out of it.
fn check_refs(s: &mut Scratch, case: &Case) -> Result<bool, String> {
    let b = case.bytes();
    let root = s.dir.path().join("store");
    let _ = fs::remove_dir_all(&root);
    for rel in ["refs/runs/r1", "HEAD", "logs/refs/runs/r1", "logs/HEAD"] {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b).unwrap();
    }
    let refs = Refs::new(root);
    let run = RefName::run("r1").unwrap();
    let ((read, head, log), peak) = measured("refs", b, || {
        let _ = refs.read(&RefName::head());
        let _ = refs.list("");
        let _ = refs.all_reflogs();
        (refs.read(&run), refs.head(), refs.reflog(&run))
    });
    within_budget("refs", peak, b.len())?;
    if let Ok(Some(id)) = read {
        let text = String::from_utf8_lossy(b);
        if text.trim() != id.to_hex() {
            return Err(format!("read {id} from a ref holding {text:?}"));
        }
    }
    let head_named = matches!(head, Ok(Head::Symbolic(_) | Head::Detached(_)));
    Ok(matches!(read, Ok(Some(_))) || head_named || log.is_ok_and(|l| !l.is_empty()))
}

/// The stat-cache index: any bytes load (an unreadable index is an empty one), and every id
/// it then vouches for came from the file. Accepted: it holds entries.
fn check_index(s: &mut Scratch, case: &Case) -> Result<bool, String> {
    let b = case.bytes();
    let dir = s.dir.path().join("indexes");
    fs::create_dir_all(&dir).unwrap();
    fs::write(exp::store::index::Index::open(&dir).file_of("experiments/run_a"), b).unwrap();
    let (ids, peak) = measured("index", b, || {
        let mut index = exp::store::index::Index::open(&dir);
        index.load_all();
        index.ids().map(|id| id.to_hex()).collect::<Vec<_>>()
    });
    within_budget("index", peak, b.len())?;
    let text = String::from_utf8_lossy(b);
    if let Some(id) = ids.iter().find(|id| !text.contains(id.as_str())) {
        return Err(format!("the index vouches for {id}, which its file does not hold"));
    }
    Ok(!ids.is_empty())
}

/// The YAML config, in a workspace holding the demo's prompts and data: `load` and
/// `load_paths` answer Ok or a `ConfigError` that names the file. Accepted: `load` took it.
fn check_config(s: &mut Scratch, case: &Case) -> Result<bool, String> {
    let b = case.bytes();
    let ws = s.dir.path().join("ws");
    if !ws.join("data").exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for rel in ["data/demo_sentiment.jsonl", "config/prompts"] {
            copy(&root.join(rel), &ws.join(rel));
        }
    }
    let path = ws.join("config/eval_config.yaml");
    fs::write(&path, b).unwrap();
    let ((full, paths), peak) = measured("config", b, || {
        (exp::eval::config::load(&path, &ws), exp::eval::config::load_paths(&path, &ws))
    });
    within_budget("config", peak, b.len())?;
    let accepted = full.is_ok();
    for e in [full.err().map(|e| e.to_string()), paths.err().map(|e| e.to_string())]
        .into_iter()
        .flatten()
    {
        if !e.contains("eval_config.yaml") {
            return Err(format!("a config error that does not name the file: {e}"));
        }
    }
    Ok(accepted)
}

/// Response journals (`responses/<condition>/part-NNNN.jsonl`), read on `--resume`: entries come
/// out only of complete lines, none claims more tokens than any request can use, and an error
/// names the file. Accepted: entries came out.
fn check_journal(s: &mut Scratch, case: &Case) -> Result<bool, String> {
    use exp::eval::{journal, providers::MAX_TOKENS_PER_REQUEST};
    let b = case.bytes();
    let path = s.dir.path().join("part-0000.jsonl");
    fs::write(&path, b).unwrap();
    let (r, peak) = measured("journal", b, || journal::read(&path));
    within_budget("journal", peak, b.len())?;
    match r {
        Ok(entries) => {
            let lines = b.iter().filter(|&&c| c == b'\n').count();
            if entries.len() > lines {
                return Err(format!("{} entries from {lines} complete lines", entries.len()));
            }
            if let Some(e) = entries
                .values()
                .find(|e| e.input_tokens.max(e.output_tokens) > MAX_TOKENS_PER_REQUEST)
            {
                return Err(format!("accepted {} claiming implausible usage", e.custom_id));
            }
            Ok(!entries.is_empty())
        }
        Err(e) if !e.to_string().contains("part-0000.jsonl") => {
            Err(format!("a journal error that does not name the file: {e}"))
        }
        Err(_) => Ok(false),
    }
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy(&e.path(), &to.join(e.file_name()));
        }
    } else {
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, to).unwrap();
    }
}

/// OpenAI-compatible response bodies: a completion or a failure, whatever the endpoint sent.
fn check_openai(_: &mut Scratch, case: &Case) -> Result<bool, String> {
    let b = case.bytes();
    let (r, peak) = measured("openai", b, || exp::eval::providers::openai::parse(b));
    within_budget("openai", peak, b.len())?;
    match r {
        Ok(_) => Ok(true),
        Err(f) if f.message().is_empty() => Err("a failure without a message".into()),
        Err(_) => Ok(false),
    }
}

/// Batch output files (`exp ingest`, the Batch API backend's downloads): every line is an entry,
/// a request the batch never ran, or an error naming the file and line; no entry claims more
/// tokens than any request can use. Accepted: some line was read.
fn check_batch_output(s: &mut Scratch, case: &Case) -> Result<bool, String> {
    use exp::eval::batch::{lines::Outcome, outputs};
    use exp::eval::providers::{MAX_TOKENS_PER_REQUEST, redact::Redactor};
    let b = case.bytes();
    let path = s.dir.path().join("batch_out.jsonl");
    fs::write(&path, b).unwrap();
    let bounds = outputs::Bounds::for_run(1 << 20, 1000);
    let mut implausible = None;
    let (r, peak) = measured("batch_output", b, || {
        outputs::read(&path, bounds, &Redactor::new(None), |_, id, outcome| {
            if let Outcome::Answered(e) = outcome
                && e.input_tokens.max(e.output_tokens) > MAX_TOKENS_PER_REQUEST
            {
                implausible = Some(id);
            }
            Ok(())
        })
    });
    within_budget("batch_output", peak, b.len())?;
    if let Some(id) = implausible {
        return Err(format!("accepted {id} claiming implausible usage"));
    }
    match r {
        Ok(lines) => Ok(lines > 0),
        Err(e) if !e.to_string().contains("batch_out.jsonl, line ") => {
            Err(format!("an output-file error that does not name the file and line: {e}"))
        }
        Err(_) => Ok(false),
    }
}

/// Address space an `exp clone` of a few-KB remote may reserve: the binary, its threads' stacks
/// and one malloc arena each, and nothing sized by what the remote claims.
const CLONE_ADDRESS_SPACE: u64 = 2 << 30;

/// A whole remote (a folder as `exp push` writes it) cloned by the real binary: exit 0 with a
/// store fsck finds clean, or exit 1 with one `error:` line; never a panic or an abort, and
/// within `CLONE_ADDRESS_SPACE`.
fn check_remote(s: &mut Scratch, case: &Case) -> Result<bool, String> {
    let remote = s.dir.path().join("remote");
    let into = s.dir.path().join("clone");
    let _ = fs::remove_dir_all(&remote);
    let _ = fs::remove_dir_all(&into);
    for (name, b) in &case.files {
        let p = remote.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b).unwrap();
    }
    let out = limited(common::exp_process(s.dir.path()).arg("clone").arg(&remote).arg(&into));
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            let fsck = limited(common::exp_process(&into).arg("fsck"));
            if !fsck.status.success() {
                return Err(format!(
                    "clone succeeded but fsck fails: {}",
                    String::from_utf8_lossy(&fsck.stdout)
                ));
            }
            Ok(true)
        }
        Some(1) if stderr.starts_with("error: ") && !stderr.contains("panicked") => Ok(false),
        _ => Err(format!("exp clone ended with {:?}: {stderr}", out.status)),
    }
}

/// Runs `cmd` with its address space capped, its output captured.
fn limited(cmd: &mut Command) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit { rlim_cur: CLONE_ADDRESS_SPACE, rlim_max: CLONE_ADDRESS_SPACE };
    // One malloc arena per thread would reserve 64 MiB each before anything is read.
    cmd.env("MALLOC_ARENA_MAX", "2").stdin(Stdio::null());
    // SAFETY: setrlimit(2) is async-signal-safe and touches only the child being started.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

const TARGETS: &[Target] = &[
    Target { name: "tree", check: check_tree, repair: no_repair, batch: 256 },
    Target { name: "commit", check: check_commit, repair: no_repair, batch: 256 },
    Target { name: "object", check: check_object, repair: no_repair, batch: 128 },
    Target { name: "encoding", check: check_encoding, repair: no_repair, batch: 128 },
    Target { name: "pack_index", check: check_pack_index, repair: fix_index_files, batch: 256 },
    Target { name: "pack", check: check_pack, repair: fix_index_files, batch: 64 },
    Target { name: "refs", check: check_refs, repair: no_repair, batch: 64 },
    Target { name: "index", check: check_index, repair: no_repair, batch: 128 },
    Target { name: "config", check: check_config, repair: no_repair, batch: 64 },
    Target { name: "openai", check: check_openai, repair: no_repair, batch: 256 },
    Target { name: "journal", check: check_journal, repair: no_repair, batch: 128 },
    Target { name: "batch_output", check: check_batch_output, repair: no_repair, batch: 128 },
    Target { name: "remote", check: check_remote, repair: fix_index_files, batch: 8 },
];

fn target(name: &str) -> &'static Target {
    TARGETS.iter().find(|t| t.name == name).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Seeds from the real writers (`EXP_FUZZ_WRITE_CORPUS=1`)

fn oid(n: u8) -> ObjectId {
    ObjectId::from_bytes([n; 32])
}

fn sample_tree() -> Tree {
    let entry = |name: &str, mode, n| TreeEntry { name: name.into(), mode, id: oid(n) };
    Tree::new(vec![
        entry("run.json", Mode::File, 1),
        entry("run.sh", Mode::Executable, 2),
        entry("latest", Mode::Symlink, 3),
        entry("gpt-oss-120b-operational_only-tp1", Mode::Tree, 4),
        entry("é ü.csv", Mode::File, 5),
    ])
    .unwrap()
}

fn sample_commit(parents: Vec<ObjectId>) -> Commit {
    let condition =
        |n, accuracy| exp::store::ConditionSummary { n: Some(n), accuracy: Some(accuracy) };
    Commit {
        tree: oid(9),
        parents,
        time: "2025-08-21T10:00:00Z".into(),
        message: "commit run t1_r20250821".into(),
        run_id: "t1_r20250821".into(),
        name: None,
        status: Some("complete".into()),
        config_hash: Some("ab".repeat(32)),
        provenance: Some(exp::provenance::Provenance {
            git_commit: Some("cd".repeat(20)),
            dirty: true,
            untracked: false,
            note: None,
        }),
        exp_version: "0.1.0".into(),
        path: Some("experiments/run_t1_r20250821".into()),
        summary: exp::store::Summary {
            trials: vec![exp::store::TrialSummary {
                slug: "gpt-oss-120b-operational_only-tp1-tk50-mx1024".into(),
                status: Some("complete".into()),
                conditions: [
                    ("control".to_string(), condition(300, 0.7)),
                    ("treatment".to_string(), condition(300, 0.78)),
                ]
                .into_iter()
                .collect(),
                effect: Some(0.08),
                p_value: Some(0.012),
                holm_p: Some(0.024),
                usd: Some(1.25),
                failures: Some(0),
            }],
            usd: Some(1.25),
            failures: Some(0),
        },
    }
}

/// `n` nested JSON arrays around `inner`.
fn nested(n: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(n), "]".repeat(n))
}

fn with_id(prefix: &[u8]) -> Vec<u8> {
    let mut b = prefix.to_vec();
    b.extend_from_slice(&[7u8; 32]);
    b
}

fn index_with(entries: &[Entry], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = pack::encode_index(entries);
    edit(&mut b);
    fix_index_checksum(&mut b);
    b
}

/// A pack of a blob, a tree and a commit written by `PackWriter`, and its index.
fn sample_pack() -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let odb = Odb::new(dir.path().join("objects"));
    let pack = odb.new_pack();
    let objects = [
        Object::Blob(b"item,label\n1,positive\n".to_vec()),
        Object::Tree(sample_tree()),
        Object::Commit(Box::new(sample_commit(Vec::new()))),
    ];
    let staged = objects
        .iter()
        .map(|o| odb.stage_object(o, exp::store::odb::StageTo::Pack(&pack)).unwrap())
        .collect();
    odb.publish(staged, Some(&pack)).unwrap();
    let file = &odb.packs().unwrap()[0];
    (fs::read(&file.pack).unwrap(), fs::read(&file.index).unwrap())
}

/// A journal of two answers and a failure, as `exp run` appends it.
fn sample_journal() -> Vec<u8> {
    use exp::eval::journal::{self, Entry, Status, Syncer};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("part-0000.jsonl");
    let j = journal::open(&path).unwrap();
    let syncer = Syncer::start(false);
    let entry = |id: &str, status, content: Option<&str>, error: Option<&str>| Entry {
        custom_id: id.into(),
        status,
        content: content.map(str::to_string),
        finish_reason: content.map(|_| "stop".to_string()),
        input_tokens: 25,
        output_tokens: 1,
        reasoning_tokens: 0,
        usage_missing: false,
        latency_ms: 120,
        attempts: 1,
        error: error.map(str::to_string),
        reused: None,
    };
    j.append(&entry("d-i1-control", Status::Ok, Some("positive"), None), &syncer).unwrap();
    j.append(&entry("d-i2-control", Status::Ok, Some("négative é"), None), &syncer).unwrap();
    j.append(&entry("d-i3-control", Status::Error, None, Some("HTTP 500: [redacted]")), &syncer)
        .unwrap();
    syncer.finish().unwrap();
    fs::read(&path).unwrap()
}

/// A remote with two runs and a tag, as `exp push` writes it.
fn sample_remote() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let remote = dir.path().join("remote");
    fs::create_dir_all(&ws).unwrap();
    let exp = |args: &[&str]| {
        let out = common::exp_process(&ws).args(args).output().unwrap();
        assert!(out.status.success(), "exp {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    exp(&["init"]);
    for (run, rows) in [("a", "1,positive\n"), ("b", "1,negative\n2,neutral\n")] {
        common::write_files(
            &ws,
            &[
                (&format!("experiments/run_{run}/results/predictions.csv"), rows),
                (&format!("experiments/run_{run}/run.json"), &format!("{{\"id\": \"{run}\"}}")),
            ],
        );
        exp(&["commit", &format!("experiments/run_{run}")]);
    }
    exp(&["tag", "v1", "a"]);
    exp(&["remote", "add", "origin", remote.to_str().unwrap()]);
    exp(&["push", "--all"]);
    let mut files = Vec::new();
    read_tree(&remote, "", &mut files);
    files
}

fn write_seed(target: &str, name: &str, files: &Files) {
    let path = corpus_dir(target).join(name);
    let _ = fs::remove_dir_all(&path);
    for (file, bytes) in files {
        let p = if file.is_empty() { path.clone() } else { path.join(file) };
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
    }
}

fn one(b: impl Into<Vec<u8>>) -> Files {
    vec![(String::new(), b.into())]
}

/// (Re)writes the `ok-*` and `bad-*` seeds of `target`; `crash-*` seeds are kept.
fn write_seeds(target: &str) {
    let zstd = |b: &[u8]| zstd::bulk::compress(b, 1).unwrap();
    let seeds: Vec<(&str, Files)> = match target {
        "tree" => vec![
            ("ok-empty", one(Vec::new())),
            ("ok-run-folder", one(sample_tree().encode_payload())),
            ("bad-dot-dot", one(with_id(b"40000 ..\0"))),
            ("bad-absolute-path", one(with_id(b"100644 /etc/passwd\0"))),
            ("bad-slash", one(with_id(b"100644 a/b\0"))),
            ("bad-unknown-mode", one(with_id(b"100666 x\0"))),
            ("bad-truncated-id", one(b"100644 x\0abc".to_vec())),
            ("bad-not-utf8", one(with_id(b"100644 \xff\xfe\0"))),
            ("bad-unsorted", one([with_id(b"100644 b\0"), with_id(b"100644 a\0")].concat())),
            ("bad-duplicate", one([with_id(b"100644 a\0"), with_id(b"100755 a\0")].concat())),
        ],
        "commit" => vec![
            ("ok-first-run", one(sample_commit(Vec::new()).encode_payload())),
            ("ok-child", one(sample_commit(vec![oid(1)]).encode_payload())),
            (
                "ok-before-summaries",
                one(&br#"{"tree":"0909090909090909090909090909090909090909090909090909090909090909","parents":[],"time":"2025-08-18T00:00:00Z","message":"import","run_id":"t0_r20250818","status":null,"config_hash":null,"provenance":null,"exp_version":"0.1.0"}"#[..]),
            ),
            ("bad-deep-nesting", one(format!("{{\"tree\": {}}}", nested(10_000, "0")))),
            ("bad-truncated", one(sample_commit(Vec::new()).encode_payload()[..100].to_vec())),
            ("bad-short-id", one(&br#"{"tree":"09","parents":[]}"#[..])),
            ("bad-huge-number", one(String::from_utf8(sample_commit(Vec::new()).encode_payload()).unwrap().replace("\"failures\":0", "\"failures\":184467440737095516160"))),
        ],
        "object" | "encoding" => {
            let (_, tree) = object::encode(Kind::Tree, &sample_tree().encode_payload());
            let (_, commit) = object::encode(Kind::Commit, &sample_commit(vec![oid(2)]).encode_payload());
            let (_, blob) = object::encode(Kind::Blob, b"id,text,label\n1,a happy day,positive\n");
            let (_, empty) = object::encode(Kind::Blob, b"");
            let (_, escape) = object::encode(Kind::Tree, &with_id(b"100644 ..\0"));
            let canonical: Vec<(&str, Vec<u8>)> = vec![
                ("ok-tree", tree),
                ("ok-commit", commit),
                ("ok-blob", blob),
                ("ok-empty-blob", empty),
                ("bad-tree-escaping-its-folder", escape),
                ("bad-length-huge", b"blob 18446744073709551615\0abc".to_vec()),
                ("bad-length-past-u64", b"blob 99999999999999999999999\0abc".to_vec()),
                ("bad-length-short", b"blob 2\0abc".to_vec()),
                ("bad-no-end-of-header", b"blob 3abc".to_vec()),
                ("bad-unknown-kind", b"tag 3\0abc".to_vec()),
            ];
            let stored = target == "object";
            canonical
                .into_iter()
                .map(|(n, b)| (n, one(if stored { zstd(&b) } else { b })))
                .chain(stored.then(|| ("bad-not-zstd", one(b"EXPPACK1 plainly not zstd".to_vec()))))
                .collect()
        }
        "pack_index" => {
            let entries = [Entry { id: oid(1), offset: 8, len: 5 }, Entry { id: oid(2), offset: 13, len: 6 }];
            let mut bad_sum = pack::encode_index(&entries);
            bad_sum[20] ^= 1;
            vec![
                ("ok-empty", one(pack::encode_index(&[]))),
                ("ok-two-entries", one(pack::encode_index(&entries))),
                ("bad-checksum", one(bad_sum)),
                ("bad-count-huge", one(index_with(&entries, |b| b[8..12].copy_from_slice(&u32::MAX.to_le_bytes())))),
                ("bad-offset-in-magic", one(index_with(&entries, |b| b[44..52].copy_from_slice(&0u64.to_le_bytes())))),
                ("bad-end-past-i64", one(index_with(&entries, |b| b[44..52].copy_from_slice(&(i64::MAX as u64).to_le_bytes())))),
            ("bad-end-past-u64", one(index_with(&entries, |b| b[52..60].copy_from_slice(&u64::MAX.to_le_bytes())))),
                ("bad-truncated", one(pack::encode_index(&entries)[..50].to_vec())),
            ]
        }
        "pack" => {
            let (p, idx) = sample_pack();
            let entries = pack::decode_index(&idx).unwrap();
            let files = |idx: Vec<u8>| vec![("p.idx".to_string(), idx), ("p.pack".to_string(), p.clone())];
            let edited = |edit: &dyn Fn(&mut Entry)| {
                let mut e = entries.clone();
                e.iter_mut().for_each(edit);
                files(pack::encode_index(&e))
            };
            vec![
                ("ok-blob-tree-commit", files(idx.clone())),
                ("bad-lengths-huge", edited(&|e| e.len = 1 << 40)),
                ("bad-offsets-past-the-end", edited(&|e| e.offset += 1 << 20)),
                ("bad-lengths-short", edited(&|e| e.len /= 2)),
                ("bad-truncated-pack", vec![("p.idx".to_string(), idx.clone()), ("p.pack".to_string(), p[..p.len() / 2].to_vec())]),
            ]
        }
        "refs" => {
            let dir = tempfile::tempdir().unwrap();
            let refs = Refs::new(dir.path().to_path_buf());
            let run = RefName::run("r1").unwrap();
            refs.update(&run, oid(1), exp::store::Expect::Absent, "commit").unwrap();
            refs.update(&run, oid(2), exp::store::Expect::Value(oid(1)), "commit").unwrap();
            refs.set_head(&Head::Symbolic(run.clone()), "checkout").unwrap();
            let read = |rel: &str| one(fs::read(dir.path().join(rel)).unwrap());
            vec![
                ("ok-ref", read("refs/runs/r1")),
                ("ok-head", read("HEAD")),
                ("ok-reflog", read("logs/refs/runs/r1")),
                ("ok-detached-head", one(format!("{}\n", oid(3)))),
                ("bad-short-id", one(b"abcdef\n".to_vec())),
                ("bad-uppercase-id", one(format!("{}\n", oid(0xab)).to_uppercase())),
                ("bad-head-escaping-refs", one(b"ref: refs/../../../etc/passwd\n".to_vec())),
                ("bad-reflog-torn-line", one(format!("{} {}", oid(1), &oid(2).to_hex()[..20]))),
            ]
        }
        "index" => {
            let dir = tempfile::tempdir().unwrap();
            let indexes = dir.path().join("indexes");
            let file = dir.path().join("f");
            fs::write(&file, b"x").unwrap();
            let meta = fs::metadata(&file).unwrap();
            let mut index = exp::store::index::Index::open(&indexes);
            index.insert("experiments/run_a", "run.json", &meta, oid(1));
            index.insert("experiments/run_a", "é.csv", &meta, oid(2));
            index.save().unwrap();
            let path = index.file_of("experiments/run_a");
            let ok = fs::read(&path).unwrap();
            let text = String::from_utf8(ok.clone()).unwrap();
            vec![
                ("ok-two-entries", one(ok)),
                ("bad-unknown-format", one(text.replacen("\"format\":2", "\"format\":3", 1))),
                ("bad-deep-nesting", one(format!("{{\"format\":2,\"folder\":\"experiments/run_a\",\"entries\":{}}}", nested(10_000, "")))),
                ("bad-huge-size", one(text.replacen("\"size\":1", "\"size\":184467440737095516150", 1))),
                ("bad-truncated", one(text[..text.len() / 2].to_string())),
            ]
        }
        "config" => {
            let demo = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/eval_config.yaml")).unwrap();
            let aliases: String = (1..10)
                .map(|i| format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 9].join(", ")))
                .collect();
            vec![
                ("ok-demo", one(demo.clone())),
                ("ok-openai-model", one(demo.replace("  - name: sim-demo\n    provider: sim\n    sim: {accuracy: {control: 0.70, treatment: 0.78}, seed: 7}", "  - name: m\n    provider: openai\n    base_url: http://127.0.0.1:8000/v1\n    api_key_env: OPENAI_API_KEY\n    model: m\n    extra_body: {reasoning_effort: low}"))),
                ("bad-billion-laughs", one(format!("a0: &a0 [lol]\n{aliases}"))),
                ("bad-deep-nesting", one(format!("datasets: {}\n", nested(10_000, "")))),
                ("bad-regex-too-big", one(demo.replace("\"(?i)\\\\b(positive|negative|neutral)\\\\b\"", "\"((a{1000}){1000}){1000}\""))),
                ("bad-experiments-dir-is-the-workspace", one(demo.replace("experiments_dir: experiments", "experiments_dir: .."))),
                ("bad-huge-number", one(demo.replace("parts_per_dataset: 1", "parts_per_dataset: 184467440737095516160"))),
                ("bad-truncated", one(demo[..demo.len() / 2].to_string())),
            ]
        }
        "openai" => vec![
            ("ok-openai", one(&br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"positive","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":25,"completion_tokens":1,"total_tokens":26,"prompt_tokens_details":{"cached_tokens":0}}}"#[..])),
            ("ok-vllm-reasoning", one(&br#"{"id":"chatcmpl-2","object":"chat.completion","model":"openai/gpt-oss-120b","choices":[{"index":0,"message":{"role":"assistant","content":"negative","reasoning_content":"The text says gloomy.","tool_calls":[]},"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":80,"completion_tokens":40,"total_tokens":120}}"#[..])),
            ("ok-llama-cpp", one(&br#"{"choices":[{"finish_reason":"length","index":0,"message":{"content":"neu","role":"assistant"}}],"created":1,"model":"tiny","object":"chat.completion","usage":{"completion_tokens":16,"prompt_tokens":30,"total_tokens":46},"timings":{"prompt_n":30,"predicted_n":16}}"#[..])),
            ("ok-no-usage-null-content", one(&br#"{"choices":[{"message":{"content":null},"finish_reason":"content_filter"}]}"#[..])),
            ("bad-no-choices", one(&br#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":0}}"#[..])),
            ("bad-html", one(&b"<html><body>502 Bad Gateway</body></html>"[..])),
            ("bad-deep-nesting", one(format!("{{\"choices\":{}}}", nested(10_000, "")))),
            ("bad-negative-tokens", one(&br#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":-1,"completion_tokens":1}}"#[..])),
            ("bad-tokens-past-u64", one(&br#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":184467440737095516160,"completion_tokens":1}}"#[..])),
            ("bad-truncated", one(&br#"{"choices":[{"message":{"content":"posi"#[..])),
        ],
        "journal" => {
            let ok = sample_journal();
            let text = String::from_utf8(ok.clone()).unwrap();
            vec![
                ("ok-answers-and-a-failure", one(ok)),
                ("bad-torn-only-line", one(text.lines().next().unwrap()[..40].to_string())),
                ("bad-usage-past-any-request", one(text.replacen("\"input_tokens\":25", "\"input_tokens\":100000001", 1).lines().next().unwrap().to_string() + "\n")),
                ("bad-tokens-past-u64", one(text.replacen("\"input_tokens\":25", "\"input_tokens\":184467440737095516160", 1))),
                ("bad-deep-nesting", one(format!("{{\"custom_id\":{}}}\n", nested(10_000, "")))),
            ]
        }
        "batch_output" => {
            let ok = br#"{"id":"batch_req_1","custom_id":"t/d:i0:control:r0","response":{"status_code":200,"request_id":"req_1","body":{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"positive"},"finish_reason":"stop"}],"usage":{"prompt_tokens":25,"completion_tokens":1,"total_tokens":26}}},"error":null}"#;
            let errors = br#"{"id":"batch_req_2","custom_id":"t/d:i1:control:r0","response":{"status_code":400,"request_id":"req_2","body":{"error":{"message":"bad","type":"invalid_request_error"}}},"error":null}
{"id":"batch_req_3","custom_id":"t/d:i2:control:r0","response":null,"error":{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}
"#;
            let vllm = br#"{"id":"vllm-1","custom_id":"d:i0:control:r0","response":{"status_code":200,"request_id":"vllm-batch-1","body":{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"negative","tool_calls":[]},"logprobs":null,"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":9,"total_tokens":10,"completion_tokens":1}}},"error":null}"#;
            vec![
                ("ok-openai-output", one([&ok[..], b"\n"].concat())),
                ("ok-openai-error-file", one(&errors[..])),
                ("ok-vllm-output", one([&vllm[..], b"\n"].concat())),
                ("bad-not-json", one(&b"<html>502</html>\n"[..])),
                ("bad-no-response-or-error", one(&b"{\"custom_id\":\"x\"}\n"[..])),
                ("bad-deep-nesting", one(format!("{{\"custom_id\":\"x\",\"response\":{}}}\n", nested(10_000, "")))),
            ]
        }
        "remote" => {
            let files = sample_remote();
            let edit = |pick: &dyn Fn(&str) -> bool, f: &dyn Fn(&mut Vec<u8>)| -> Files {
                let mut files = files.clone();
                for (name, b) in &mut files {
                    if pick(name) {
                        f(b);
                    }
                }
                files
            };
            let huge_lengths = |b: &mut Vec<u8>| {
                let mut entries = pack::decode_index(b).unwrap();
                entries.iter_mut().for_each(|e| e.len = 1 << 40);
                *b = pack::encode_index(&entries);
            };
            vec![
                ("ok-two-runs-and-a-tag", files.clone()),
                ("bad-ref-not-an-id", edit(&|n| n == "refs/runs/a", &|b| *b = b"../../etc/passwd\n".to_vec())),
                ("bad-pack-flipped-byte", edit(&|n| n.ends_with(".pack"), &|b| { let mid = b.len() / 2; b[mid] ^= 0x40 })),
                ("bad-index-lengths-huge", edit(&|n| n.ends_with(".idx"), &huge_lengths)),
                ("bad-unknown-format", edit(&|n| n == "exp-remote.json", &|b| *b = br#"{"format": 99, "kind": "exp-remote"}"#.to_vec())),
            ]
        }
        other => panic!("no seeds for {other}"),
    };
    for (name, files) in seeds {
        write_seed(target, name, &files);
    }
}

// ---------------------------------------------------------------------------------------------
// The driver

fn make_case(r: &Recipe, corpus: &Corpus, repair: fn(&mut Case)) -> Case {
    match r {
        Recipe::Mutated { seed, edits, repair_after } => {
            let mut case = corpus.seeds[seed.index(corpus.seeds.len())].1.clone();
            for (file, m) in edits {
                let n = case.files.len();
                apply(m, &mut case.files[file.index(n)].1, &corpus.pool);
            }
            if *repair_after {
                repair(&mut case);
            }
            case
        }
        Recipe::Random { seed, file, bytes } => {
            let mut case = corpus.seeds[seed.index(corpus.seeds.len())].1.clone();
            let n = case.files.len();
            case.files[file.index(n)].1 = bytes.clone();
            case
        }
    }
}

fn seconds() -> u64 {
    std::env::var("EXP_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

fn run_seed() -> u64 {
    std::env::var("EXP_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64
    })
}

/// The committed seeds: `ok-*` accepted, `bad-*` refused, and every one within the properties.
fn check_seeds(t: &Target, corpus: &Corpus, scratch: &mut Scratch) {
    for (name, case) in &corpus.seeds {
        let accepted = match (t.check)(scratch, case) {
            Ok(accepted) => accepted,
            Err(violation) => panic!("{}/{name}: {violation}", t.name),
        };
        if name.starts_with("ok-") {
            assert!(accepted, "{}/{name} was refused", t.name);
        } else if name.starts_with("bad-") {
            assert!(!accepted, "{}/{name} was accepted", t.name);
        }
    }
}

/// Fuzzes `target` for `EXP_FUZZ_SECS` on a thread with a `STACK`-sized stack.
fn fuzz(name: &'static str) {
    let handle = std::thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .stack_size(STACK)
        .spawn(move || fuzz_on_this_thread(target(name)))
        .unwrap();
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
}

fn fuzz_on_this_thread(t: &'static Target) {
    if std::env::var("EXP_FUZZ_WRITE_CORPUS").as_deref() == Ok("1") {
        write_seeds(t.name);
    }
    let corpus = load_corpus(t.name);
    let mut scratch = Scratch { dir: scratch_dir() };
    check_seeds(t, &corpus, &mut scratch);
    let seed = run_seed();
    let budget = Duration::from_secs(seconds());
    let started = Instant::now();
    let scratch = std::cell::RefCell::new(scratch);
    let mut cases = 0u64;
    let mut batch = 0u64;
    while started.elapsed() < budget {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        bytes[8..16].copy_from_slice(&batch.to_le_bytes());
        let config = Config {
            cases: t.batch,
            failure_persistence: None,
            max_shrink_time: 60_000,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
        let result = runner.run(&recipe(), |r| {
            let case = make_case(&r, &corpus, t.repair);
            let started = Instant::now();
            (t.check)(&mut scratch.borrow_mut(), &case).map_err(TestCaseError::fail)?;
            let took = started.elapsed();
            if took > MAX_CASE_TIME {
                return Err(TestCaseError::fail(format!("one case took {took:.1?}")));
            }
            Ok(())
        });
        if let Err(e) = result {
            let (reason, recipe) = match e {
                TestError::Fail(reason, recipe) => (reason.to_string(), recipe),
                TestError::Abort(reason) => panic!("{}: proptest aborted: {reason}", t.name),
            };
            let case = make_case(&recipe, &corpus, t.repair);
            let saved = save_failure(t.name, &case);
            panic!(
                "fuzz target `{}` failed (EXP_FUZZ_SEED={seed}, batch {batch}): {reason}\n\
                 minimal input written to {}: copy it into tests/data/fuzz/{}/crash-<what> once \
                 fixed",
                t.name,
                saved.display(),
                t.name
            );
        }
        cases += u64::from(t.batch);
        batch += 1;
    }
    eprintln!("fuzz {}: {cases} cases in {:.1?} (EXP_FUZZ_SEED={seed})", t.name, started.elapsed());
}

/// A temp folder in memory where there is one: cases write and delete files thousands of times,
/// which on a disk file system costs ten times the parsing.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// Writes a failing case where a developer can pick it up.
fn save_failure(target: &str, case: &Case) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{target}-failure"));
    let _ = fs::remove_dir_all(&dir);
    if case.files.len() == 1 && case.files[0].0.is_empty() {
        fs::create_dir_all(dir.parent().unwrap()).unwrap();
        fs::write(&dir, case.bytes()).unwrap();
    } else {
        for (name, b) in &case.files {
            let p = dir.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, b).unwrap();
        }
    }
    dir
}

#[test]
fn fuzz_tree_payloads() {
    fuzz("tree");
}

#[test]
fn fuzz_commit_payloads() {
    fuzz("commit");
}

#[test]
fn fuzz_stored_objects() {
    fuzz("object");
}

#[test]
fn fuzz_canonical_encodings() {
    fuzz("encoding");
}

#[test]
fn fuzz_pack_indexes() {
    fuzz("pack_index");
}

#[test]
fn fuzz_local_packs() {
    fuzz("pack");
}

#[test]
fn fuzz_ref_and_reflog_files() {
    fuzz("refs");
}

#[test]
fn fuzz_the_stat_cache_index() {
    fuzz("index");
}

#[test]
fn fuzz_configs() {
    fuzz("config");
}

#[test]
fn fuzz_openai_response_bodies() {
    fuzz("openai");
}

#[test]
fn fuzz_response_journals() {
    fuzz("journal");
}

#[test]
fn fuzz_batch_output_files() {
    fuzz("batch_output");
}

#[test]
fn fuzz_remotes_through_exp_clone() {
    fuzz("remote");
}
