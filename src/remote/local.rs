//! What the remote code needs from the local store, in one place: raw object bytes, the links
//! between objects, ancestry, and a batch writer for objects that arrive from a remote.
//!
//! Arriving objects are verified here (`check_raw`) before anything becomes visible: the bytes
//! must decompress to a canonical encoding whose BLAKE3 hash is the id the remote's index claims.
//! Verified objects then go into one new local pack (`Odb::stage_checked`), published as one
//! batch once the fetch has everything; a crash leaves a temp file, never a half-written object.
use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use crate::store::ObjectId;
use crate::store::atomic::{create_dirs, temp_file_in};
use crate::store::object::{self, Kind, Object};
use crate::store::odb::{Odb, StreamError, stream_verified};

/// Outcome of checking one object's bytes.
pub struct Checked {
    pub kind: Kind,
    /// The objects it names (tree entries; a commit's tree and parents). Empty for blobs.
    pub links: Vec<ObjectId>,
}

/// The links of a parsed object.
pub fn links_of(obj: &Object) -> Vec<ObjectId> {
    match obj {
        Object::Blob(_) => Vec::new(),
        Object::Tree(t) => t.entries.iter().map(|e| e.id).collect(),
        Object::Commit(c) => {
            let mut v = vec![c.tree];
            v.extend(c.parents.iter().copied());
            v
        }
    }
}

/// Decompresses `raw` (a stored object), checks that it hashes to `id`, and parses trees and
/// commits for their links. Blobs are hashed as a stream and never held whole.
pub fn check_raw(id: &ObjectId, raw: &[u8]) -> std::result::Result<Checked, String> {
    let mut payload = Vec::new();
    let (kind, _) = stream_verified(id, raw, &mut |kind, chunk| {
        if kind != Kind::Blob {
            payload.extend_from_slice(chunk);
        }
        Ok(())
    })
    .map_err(|e| match e {
        StreamError::Corrupt(reason) => reason,
        StreamError::Sink(e) => e.to_string(),
    })?;
    let links =
        if kind == Kind::Blob { Vec::new() } else { links_of(&Object::decode(kind, payload)?) };
    Ok(Checked { kind, links })
}

/// Every object reachable from `roots`, parents before children in the order found, never
/// entering a commit in `stop` (everything a remote ref names is on that remote already).
/// Blobs are listed, not read.
pub fn reachable(odb: &Odb, roots: &[ObjectId], stop: &HashSet<ObjectId>) -> Result<Vec<ObjectId>> {
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut order = Vec::new();
    let mut queue: VecDeque<(ObjectId, Kind)> = VecDeque::new();
    for r in roots {
        if !stop.contains(r) && seen.insert(*r) {
            queue.push_back((*r, Kind::Commit));
        }
    }
    while let Some((id, kind)) = queue.pop_front() {
        order.push(id);
        match kind {
            Kind::Blob => {}
            Kind::Tree => {
                for e in odb.read_tree(&id)?.entries {
                    let k = if e.mode == object::Mode::Tree { Kind::Tree } else { Kind::Blob };
                    if seen.insert(e.id) {
                        queue.push_back((e.id, k));
                    }
                }
            }
            Kind::Commit => {
                let c = odb.read_commit(&id)?;
                if seen.insert(c.tree) {
                    queue.push_back((c.tree, Kind::Tree));
                }
                for p in c.parents {
                    if !stop.contains(&p) && seen.insert(p) {
                        queue.push_back((p, Kind::Commit));
                    }
                }
            }
        }
    }
    Ok(order)
}

/// Whether commit `ancestor` is `descendant` or one of its ancestors (both must be local).
pub fn is_ancestor(odb: &Odb, ancestor: &ObjectId, descendant: &ObjectId) -> Result<bool> {
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([*descendant]);
    while let Some(id) = queue.pop_front() {
        if id == *ancestor {
            return Ok(true);
        }
        if !seen.insert(id) || !odb.has(&id) {
            continue;
        }
        queue.extend(odb.read_commit(&id)?.parents);
    }
    Ok(false)
}

/// `.exprepo/remote-cache/<remote>/`: the remote's pack indexes already downloaded.
pub fn cache_dir(store_dir: &Path, remote: &str) -> PathBuf {
    store_dir.join("remote-cache").join(remote)
}

/// Keeps a copy of a pack index in the cache: renamed into place (never half-written under its
/// name) but not fsynced, because the cache is disposable: every read checks the index's
/// checksum, and a damaged or missing copy is simply downloaded again.
pub fn cache_index(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    create_dirs(dir)?;
    let mut tmp = temp_file_in(dir, ".tmp-")?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    let dest = dir.join(format!("{name}.idx"));
    tmp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::odb::StageTo;
    use crate::store::{Tree, TreeEntry};

    #[test]
    fn arriving_bytes_are_checked_against_their_id_and_give_their_links() {
        let dir = tempfile::tempdir().unwrap();
        let src = Odb::new(dir.path().join("src"));
        let blob = src.write(&Object::Blob(b"hello".to_vec())).unwrap();
        let entry = TreeEntry { name: "a.txt".into(), mode: object::Mode::File, id: blob };
        let tree = src.write_tree(&Tree::new(vec![entry]).unwrap()).unwrap();
        let raw = src.read_raw(&tree).unwrap();
        let checked = check_raw(&tree, &raw).unwrap();
        assert_eq!(checked.kind, Kind::Tree);
        assert_eq!(checked.links, vec![blob]);
        assert!(check_raw(&blob, &src.read_raw(&blob).unwrap()).unwrap().links.is_empty());
        // The right bytes under the wrong id, and damaged bytes, are both refused.
        assert_eq!(check_raw(&blob, &raw).err().unwrap(), "content does not match its id");
        let mut bad = raw.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(check_raw(&tree, &bad).is_err());

        let dst = Odb::new(dir.path().join("dst"));
        let pack = dst.new_pack();
        let staged = dst.stage_checked(tree, &raw, StageTo::Pack(&pack)).unwrap();
        assert!(!dst.has(&tree), "staged objects are not visible");
        dst.publish(vec![staged], Some(&pack)).unwrap();
        assert_eq!(dst.read_tree(&tree).unwrap().entries.len(), 1);
        assert!(is_ancestor(&dst, &tree, &tree).unwrap());
    }
}
