//! Packs and their indexes: how objects travel, as restic stores them.
//!
//! One request per object would make a run with thousands of small files slow to push and clone,
//! so objects are concatenated into packs of a few MiB, exactly as the local store keeps them
//! (zstd-compressed, so nothing is recompressed and the hash is checked on arrival). Each pack has
//! a small index naming every object with its offset and length; a reader lists the indexes
//! once, keeps them in a local cache, and then fetches just the byte ranges it needs, merged into
//! few requests. A pack is uploaded before its index, so an index never names a missing pack;
//! a pack without an index (an interrupted push) is ignored and uploaded again.
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::store::ObjectId;

pub use crate::store::pack::{Entry, INDEX_MAGIC, PACK_MAGIC, decode_index, encode_index};

/// Builds one pack in memory.
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<Entry>,
}

/// A finished pack, named by the BLAKE3 hash of its bytes.
pub struct Pack {
    pub name: String,
    pub bytes: Bytes,
    pub index: Bytes,
    pub entries: Vec<Entry>,
}

impl PackBuilder {
    pub fn new() -> Self {
        PackBuilder { buf: PACK_MAGIC.to_vec(), entries: Vec::new() }
    }

    /// Appends an object's stored (compressed) bytes.
    pub fn push(&mut self, id: ObjectId, raw: &[u8]) {
        let offset = self.buf.len() as u64;
        self.buf.extend_from_slice(raw);
        self.entries.push(Entry { id, offset, len: raw.len() as u64 });
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn finish(self) -> Pack {
        let name = blake3::hash(&self.buf).to_hex().to_string();
        let index = Bytes::from(encode_index(&self.entries));
        Pack { name, bytes: Bytes::from(self.buf), index, entries: self.entries }
    }
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Where each object the remote holds can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: Arc<str>,
    pub offset: u64,
    pub len: u64,
}

/// Every object named by the remote's indexes.
#[derive(Default)]
pub struct RemoteIndex {
    objects: HashMap<ObjectId, Location>,
}

impl RemoteIndex {
    pub fn add(&mut self, pack: &str, entries: &[Entry]) {
        let pack: Arc<str> = Arc::from(pack);
        for e in entries {
            // The first pack wins: two packs holding one object (two pushers racing) are equal.
            self.objects.entry(e.id).or_insert_with(|| Location {
                pack: pack.clone(),
                offset: e.offset,
                len: e.len,
            });
        }
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.objects.contains_key(id)
    }

    pub fn get(&self, id: &ObjectId) -> Option<&Location> {
        self.objects.get(id)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// One ranged read of a pack, and the objects it carries.
#[derive(Debug, PartialEq, Eq)]
pub struct Read {
    pub pack: Arc<str>,
    pub range: Range<u64>,
    /// (object, offset relative to `range.start`, length)
    pub objects: Vec<(ObjectId, u64, u64)>,
}

/// Groups wanted objects into as few ranged reads as is sensible: neighbours in a pack are merged
/// when the bytes skipped between them are at most `max_gap`, up to `max_read` bytes per read.
/// Push writes a run's objects next to each other, so a clone reads whole packs in one request.
pub fn plan_reads(wanted: &[(ObjectId, Location)], max_gap: u64, max_read: u64) -> Vec<Read> {
    let mut by_pack: HashMap<Arc<str>, Vec<(ObjectId, u64, u64)>> = HashMap::new();
    for (id, loc) in wanted {
        by_pack.entry(loc.pack.clone()).or_default().push((*id, loc.offset, loc.len));
    }
    let mut packs: Vec<_> = by_pack.into_iter().collect();
    packs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut reads = Vec::new();
    for (pack, mut objs) in packs {
        objs.sort_by_key(|o| o.1);
        objs.dedup_by_key(|o| o.1);
        let mut current: Option<Read> = None;
        for (id, offset, len) in objs {
            let end = offset + len;
            if let Some(r) = current.as_mut() {
                let gap = offset.saturating_sub(r.range.end);
                if gap <= max_gap && end - r.range.start <= max_read {
                    r.objects.push((id, offset - r.range.start, len));
                    r.range.end = r.range.end.max(end);
                    continue;
                }
            }
            if let Some(done) = current.take() {
                reads.push(done);
            }
            current =
                Some(Read { pack: pack.clone(), range: offset..end, objects: vec![(id, 0, len)] });
        }
        reads.extend(current);
    }
    reads
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes([n; 32])
    }

    #[test]
    fn a_built_pack_holds_its_objects_where_its_index_says() {
        let mut b = PackBuilder::new();
        b.push(id(1), b"hello");
        b.push(id(2), b"world!");
        let pack = b.finish();
        assert_eq!(&pack.bytes[..8], PACK_MAGIC);
        let entries = decode_index(&pack.index).unwrap();
        assert_eq!(entries, pack.entries);
        let e = entries[1];
        assert_eq!(&pack.bytes[e.offset as usize..(e.offset + e.len) as usize], b"world!");
        assert_eq!(pack.name, blake3::hash(&pack.bytes).to_hex().to_string());
    }

    #[test]
    fn neighbouring_objects_are_read_in_one_request() {
        let loc = |pack: &str, offset, len| Location { pack: Arc::from(pack), offset, len };
        let wanted = vec![
            (id(3), loc("a", 208, 100)),
            (id(1), loc("a", 8, 100)),
            (id(2), loc("a", 108, 100)),
            (id(4), loc("a", 10_000, 10)),
            (id(5), loc("b", 8, 5)),
        ];
        let reads = plan_reads(&wanted, 64, 1 << 20);
        assert_eq!(reads.len(), 3, "{reads:?}");
        assert_eq!(reads[0].range, 8..308);
        assert_eq!(reads[0].objects, vec![(id(1), 0, 100), (id(2), 100, 100), (id(3), 200, 100)]);
        assert_eq!(reads[1].range, 10_000..10_010);
        assert_eq!(&*reads[2].pack, "b");
        // A read never grows past max_read.
        let small = plan_reads(&wanted[..3], 64, 150);
        assert_eq!(small.len(), 3);
    }
}
