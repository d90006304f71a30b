//! Objects and their canonical encoding: `<kind> <payload length>\0<payload>`, hashed with BLAKE3
//! to give the `ObjectId`, and stored zstd-compressed by the `Odb`.
//!
//! - blob: the file's bytes (for a symlink: the link target).
//! - tree: entries sorted by name, each `<mode> <name>\0<32-byte id>`; modes are git's
//!   (`100644` file, `100755` executable, `120000` symlink, `40000` tree).
//! - commit: compact JSON of `Commit` (fields in declaration order, so the encoding is stable).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ObjectId;
use super::error::{Error, Result};
use crate::provenance::Provenance;

/// Folders nest at most this deep in a tree: deeper ones are refused on commit, checkout,
/// status and fsck, so walking a tree from a remote can never exhaust the stack. (Linux paths
/// end at 4096 bytes, so a real folder rarely nests deeper than a few dozen levels.)
pub const MAX_TREE_DEPTH: usize = 256;
/// A tree or commit payload is read into memory whole: at most this many bytes (a tree of a
/// million files is about 80 MB less than that). Blobs stream and have no limit.
pub const MAX_PARSED_PAYLOAD: u64 = 256 << 20;

/// What an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Blob,
    Tree,
    Commit,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Blob => "blob",
            Kind::Tree => "tree",
            Kind::Commit => "commit",
        }
    }

    pub fn parse(s: &[u8]) -> Option<Kind> {
        match s {
            b"blob" => Some(Kind::Blob),
            b"tree" => Some(Kind::Tree),
            b"commit" => Some(Kind::Commit),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The header that starts every canonical encoding.
pub fn header(kind: Kind, len: u64) -> Vec<u8> {
    format!("{} {len}\0", kind.as_str()).into_bytes()
}

/// Parse a header at the start of `bytes`: (kind, payload length, header length).
pub fn parse_header(bytes: &[u8]) -> Option<(Kind, u64, usize)> {
    let nul = bytes.iter().take(32).position(|&b| b == 0)?;
    let head = &bytes[..nul];
    let space = head.iter().position(|&b| b == b' ')?;
    let kind = Kind::parse(&head[..space])?;
    let len: u64 = std::str::from_utf8(&head[space + 1..]).ok()?.parse().ok()?;
    Some((kind, len, nul + 1))
}

/// The canonical encoding of an in-memory payload, and its id.
pub fn encode(kind: Kind, payload: &[u8]) -> (ObjectId, Vec<u8>) {
    let mut bytes = header(kind, payload.len() as u64);
    bytes.extend_from_slice(payload);
    (ObjectId(*blake3::hash(&bytes).as_bytes()), bytes)
}

/// How a tree entry is checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    File,
    Executable,
    Symlink,
    Tree,
}

impl Mode {
    pub fn as_octal(self) -> &'static str {
        match self {
            Mode::File => "100644",
            Mode::Executable => "100755",
            Mode::Symlink => "120000",
            Mode::Tree => "40000",
        }
    }

    fn parse(s: &[u8]) -> Option<Mode> {
        match s {
            b"100644" => Some(Mode::File),
            b"100755" => Some(Mode::Executable),
            b"120000" => Some(Mode::Symlink),
            b"40000" => Some(Mode::Tree),
            _ => None,
        }
    }
}

/// One name in a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    pub name: String,
    pub mode: Mode,
    pub id: ObjectId,
}

/// A folder: entries sorted by name, names unique and safe (see `check_name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub entries: Vec<TreeEntry>,
}

/// Refuse names that could escape the folder they are checked out into or that no file system
/// can hold: empty, `.`, `..`, anything with `/` or NUL (an absolute path contains `/`).
pub fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty name"
    } else if name == "." || name == ".." {
        "'.' and '..' are not names"
    } else if name.contains('/') {
        "contains '/' (or is an absolute path)"
    } else if name.contains('\0') {
        "contains NUL"
    } else if name == super::STORE_DIR {
        "'.exprepo' is the store's folder, never part of a tree"
    } else {
        return Ok(());
    };
    Err(Error::BadName { name: name.to_string(), reason })
}

impl Tree {
    /// Builds a tree, sorting entries and checking every name.
    pub fn new(mut entries: Vec<TreeEntry>) -> Result<Tree> {
        for e in &entries {
            check_name(&e.name)?;
        }
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        if let Some(w) = entries.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::BadName { name: w[0].name.clone(), reason: "appears twice" });
        }
        Ok(Tree { entries })
    }

    pub fn get(&self, name: &str) -> Option<&TreeEntry> {
        self.entries
            .binary_search_by(|e| e.name.as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| &self.entries[i])
    }

    pub fn encode_payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 64);
        for e in &self.entries {
            out.extend_from_slice(e.mode.as_octal().as_bytes());
            out.push(b' ');
            out.extend_from_slice(e.name.as_bytes());
            out.push(0);
            out.extend_from_slice(&e.id.0);
        }
        out
    }

    /// Parses and validates a tree payload; `Err(reason)` on anything malformed or unsafe.
    pub fn decode_payload(mut p: &[u8]) -> std::result::Result<Tree, String> {
        let mut entries = Vec::new();
        while !p.is_empty() {
            let space = p.iter().position(|&b| b == b' ').ok_or("tree entry without mode")?;
            let mode = Mode::parse(&p[..space]).ok_or("tree entry with an unknown mode")?;
            p = &p[space + 1..];
            let nul = p.iter().position(|&b| b == 0).ok_or("tree entry without end of name")?;
            let name = std::str::from_utf8(&p[..nul]).map_err(|_| "tree entry name not UTF-8")?;
            check_name(name).map_err(|e| e.to_string())?;
            p = &p[nul + 1..];
            if p.len() < 32 {
                return Err("tree entry with a truncated id".into());
            }
            let mut id = [0u8; 32];
            id.copy_from_slice(&p[..32]);
            p = &p[32..];
            entries.push(TreeEntry { name: name.to_string(), mode, id: ObjectId(id) });
        }
        let sorted = entries.windows(2).all(|w| w[0].name.as_bytes() < w[1].name.as_bytes());
        if !sorted {
            return Err("tree entries not sorted or not unique".into());
        }
        Ok(Tree { entries })
    }
}

/// One committed state of a run. `log`/`list` read only commits, never trees, so everything
/// they show lives here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    pub tree: ObjectId,
    pub parents: Vec<ObjectId>,
    /// RFC 3339, UTC.
    pub time: String,
    pub message: String,
    pub run_id: String,
    /// The run's name (`exp run --name`); absent from commits of unnamed runs, so their ids
    /// are what they always were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// From run.json: running|complete|incomplete|failed|awaiting_outputs; None when the folder has no run.json.
    pub status: Option<String>,
    pub config_hash: Option<String>,
    pub provenance: Option<Provenance>,
    pub exp_version: String,
    /// The folder the run was committed from, relative to the workspace (`experiments/run_ID`);
    /// where `exp checkout` puts it back. None when it lay outside the workspace.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub summary: Summary,
}

/// The headline numbers of a run, read from its files at commit time (docs/RUN_FILES.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub trials: Vec<TrialSummary>,
    /// Total cost in USD, when known.
    pub usd: Option<f64>,
    pub failures: Option<u64>,
}

/// One trial's headline: accuracy per condition, effect, p-values, cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrialSummary {
    pub slug: String,
    pub status: Option<String>,
    /// Keyed by condition (`control`, `treatment`).
    pub conditions: BTreeMap<String, ConditionSummary>,
    /// treatment accuracy - control accuracy.
    pub effect: Option<f64>,
    pub p_value: Option<f64>,
    pub holm_p: Option<f64>,
    pub usd: Option<f64>,
    pub failures: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConditionSummary {
    pub n: Option<u64>,
    pub accuracy: Option<f64>,
}

impl Commit {
    /// The run as people read it: its id, and its name after it when it has one.
    pub fn run_label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} ({name})", self.run_id),
            None => self.run_id.clone(),
        }
    }

    pub fn encode_payload(&self) -> Vec<u8> {
        // Serializing plain structs of strings, numbers and options cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode_payload(p: &[u8]) -> std::result::Result<Commit, String> {
        serde_json::from_slice(p).map_err(|e| format!("bad commit: {e}"))
    }
}

/// A parsed object.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Blob(Vec<u8>),
    Tree(Tree),
    Commit(Box<Commit>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Blob(_) => Kind::Blob,
            Object::Tree(_) => Kind::Tree,
            Object::Commit(_) => Kind::Commit,
        }
    }

    pub fn encode(&self) -> (ObjectId, Vec<u8>) {
        match self {
            Object::Blob(b) => encode(Kind::Blob, b),
            Object::Tree(t) => encode(Kind::Tree, &t.encode_payload()),
            Object::Commit(c) => encode(Kind::Commit, &c.encode_payload()),
        }
    }

    pub fn decode(kind: Kind, payload: Vec<u8>) -> std::result::Result<Object, String> {
        Ok(match kind {
            Kind::Blob => Object::Blob(payload),
            Kind::Tree => Object::Tree(Tree::decode_payload(&payload)?),
            Kind::Commit => Object::Commit(Box::new(Commit::decode_payload(&payload)?)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> ObjectId {
        ObjectId([b; 32])
    }

    #[test]
    fn trees_sort_round_trip_and_refuse_unsafe_names() {
        let t = Tree::new(vec![
            TreeEntry { name: "b".into(), mode: Mode::Executable, id: id(1) },
            TreeEntry { name: "é ü.csv".into(), mode: Mode::File, id: id(2) },
            TreeEntry { name: "a".into(), mode: Mode::Tree, id: id(3) },
        ])
        .unwrap();
        assert_eq!(t.entries[0].name, "a");
        assert_eq!(Tree::decode_payload(&t.encode_payload()).unwrap(), t);
        for bad in ["", ".", "..", "a/b", "/etc", "a\0b"] {
            let e = TreeEntry { name: bad.into(), mode: Mode::File, id: id(1) };
            assert!(Tree::new(vec![e]).is_err(), "{bad:?} accepted");
        }
        // A hand-made payload with `..` is refused on read too.
        let mut evil = b"100644 ..\0".to_vec();
        evil.extend_from_slice(&[0u8; 32]);
        assert!(Tree::decode_payload(&evil).is_err());
    }

    #[test]
    fn header_parses_back() {
        let (_, bytes) = encode(Kind::Blob, b"hello");
        assert_eq!(parse_header(&bytes), Some((Kind::Blob, 5, 7)));
        assert_eq!(&bytes[7..], b"hello");
    }
}
