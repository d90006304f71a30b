//! Datasets, normalized: raw JSONL or CSV rows become items `{id, label, cluster, fields}` in
//! `prepared/<name>-<hash>.jsonl`, where the hash covers the raw bytes and the field mapping, so an
//! unchanged dataset is read once and reused by every later run, and a changed one never is.
//!
//! Every row problem (no id, no label, duplicate id, bad JSON) names the file and line: a dataset
//! that silently loses rows would make every statistic downstream wrong.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::config::DatasetConfig;
use crate::error::Hint;

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("cannot read dataset {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}, line {line}: {problem}")]
    Row { path: PathBuf, line: usize, problem: String, fix: String },
    #[error("dataset {path} has no rows")]
    Empty { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("dataset `{dataset}` was never prepared in {dir}")]
    NotPrepared { dataset: String, dir: PathBuf },
}

impl Hint for PrepareError {
    fn hint(&self) -> Option<String> {
        match self {
            PrepareError::Read { .. } => Some("check the dataset's `path` in the config".into()),
            PrepareError::Row { fix, .. } => Some(fix.clone()),
            PrepareError::Empty { .. } => Some(
                "add rows (JSONL: one JSON object a line; CSV: a header line, then rows)".into(),
            ),
            PrepareError::Write { .. } => {
                Some("check that the prepared_dir folder is writable and the disk has space".into())
            }
            PrepareError::NotPrepared { .. } => {
                Some("run once without --skip-prepare so the dataset gets prepared".into())
            }
        }
    }
}

/// One dataset row, normalized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub id: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Every column as text, for `user_template` placeholders; `input` holds the input field.
    pub fields: Fields,
}

/// A row of the prepared file as read back (`Item` with its columns in a map).
#[derive(Deserialize)]
struct PreparedRow {
    id: String,
    label: String,
    #[serde(default)]
    cluster: Option<String>,
    fields: BTreeMap<String, String>,
}

/// An item's columns (name -> text), sorted by name, in one allocation with column names
/// shared between items (`Names`). A million items are in memory at once while their user
/// messages are rendered: as a `BTreeMap` of owned strings each cost about 1 KB, most of a
/// 1.2 GB peak; this is about a third of that.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(Box<[(Arc<str>, Box<str>)]>);

/// Column names seen so far, so each is allocated once per dataset, not once per row.
#[derive(Default)]
pub struct Names(HashMap<String, Arc<str>>);

impl Names {
    fn get(&mut self, name: String) -> Arc<str> {
        self.0.entry(name).or_insert_with_key(|k| Arc::from(k.as_str())).clone()
    }
}

impl Fields {
    /// The columns of `map`, with names from `names`.
    pub fn new(map: BTreeMap<String, String>, names: &mut Names) -> Fields {
        Fields(map.into_iter().map(|(k, v)| (names.get(k), v.into_boxed_str())).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.0.binary_search_by(|(k, _)| k.as_ref().cmp(name)).ok()?;
        Some(&self.0[i].1)
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
    }
}

/// A prepared dataset in memory.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub name: String,
    /// `prepared/<name>-<hash>.jsonl`.
    pub path: PathBuf,
    /// BLAKE3 of the raw bytes and the field mapping (hex).
    pub hash: String,
    /// Shared with the request tasks, which need the gold answers (sim) without a copy.
    pub items: std::sync::Arc<Vec<Item>>,
    /// Whether this invocation wrote the file (false: reused).
    pub written: bool,
}

/// Prepares `ds` (raw file at `raw`) into `prepared_dir`, reusing an earlier identical result.
pub fn prepare(
    ds: &DatasetConfig,
    raw: &Path,
    prepared_dir: &Path,
) -> Result<Prepared, PrepareError> {
    let bytes = std::fs::read(raw)
        .map_err(|source| PrepareError::Read { path: raw.to_path_buf(), source })?;
    let hash = content_hash(ds, &bytes);
    let path = prepared_dir.join(format!("{}-{}.jsonl", ds.name, &hash[..16]));
    let pointer = prepared_dir.join(format!("{}.latest", ds.name));
    if path.is_file()
        && let Ok(items) = read_prepared(&path)
    {
        write_pointer(&pointer, &path, &hash)?;
        return Ok(Prepared {
            name: ds.name.clone(),
            path,
            hash,
            items: items.into(),
            written: false,
        });
    }
    let items = normalize(ds, raw, &bytes)?;
    std::fs::create_dir_all(prepared_dir)
        .map_err(|source| PrepareError::Write { path: prepared_dir.to_path_buf(), source })?;
    // Written to a temporary file and renamed, so a crash never leaves a half file under the
    // content-hashed name that a later run would trust.
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(prepared_dir)?;
        {
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            for item in &items {
                serde_json::to_writer(&mut w, item)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    };
    write().map_err(|source| PrepareError::Write { path: path.clone(), source })?;
    write_pointer(&pointer, &path, &hash)?;
    Ok(Prepared { name: ds.name.clone(), path, hash, items: items.into(), written: true })
}

/// `--dry-run`: reads and checks the dataset like `prepare`, writing nothing.
pub fn prepare_in_memory(ds: &DatasetConfig, raw: &Path) -> Result<Prepared, PrepareError> {
    let bytes = std::fs::read(raw)
        .map_err(|source| PrepareError::Read { path: raw.to_path_buf(), source })?;
    let hash = content_hash(ds, &bytes);
    let items = normalize(ds, raw, &bytes)?;
    Ok(Prepared {
        name: ds.name.clone(),
        path: raw.to_path_buf(),
        hash,
        items: items.into(),
        written: false,
    })
}

fn content_hash(ds: &DatasetConfig, bytes: &[u8]) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(bytes);
    let mapping =
        serde_json::json!([ds.id_field, ds.input_field, ds.label_field, ds.cluster_field]);
    hasher.update(b"\0exp-prepare-v1\0");
    hasher.update(mapping.to_string().as_bytes());
    hasher.finalize().to_hex().to_string()
}

/// `--skip-prepare`: the dataset as last prepared, without reading the raw file.
pub fn load_latest(ds: &DatasetConfig, prepared_dir: &Path) -> Result<Prepared, PrepareError> {
    let pointer = prepared_dir.join(format!("{}.latest", ds.name));
    let not_prepared =
        || PrepareError::NotPrepared { dataset: ds.name.clone(), dir: prepared_dir.to_path_buf() };
    let text = std::fs::read_to_string(&pointer).map_err(|_| not_prepared())?;
    let mut lines = text.lines();
    let (Some(name), Some(hash)) = (lines.next(), lines.next()) else {
        return Err(not_prepared());
    };
    let (name, hash) = (name.trim(), hash.trim());
    // The pointer only ever names the file `prepare` wrote for that hash: anything else (an
    // edited `../../x`) is not followed, so it cannot choose what is read.
    let hex = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex || name != format!("{}-{}.jsonl", ds.name, &hash[..16]) {
        return Err(not_prepared());
    }
    let path = prepared_dir.join(name);
    let items = read_prepared(&path).map_err(|_| not_prepared())?;
    Ok(Prepared {
        name: ds.name.clone(),
        path,
        hash: hash.to_string(),
        items: items.into(),
        written: false,
    })
}

/// `<name>.latest`: the file name, then the full content hash, one a line.
fn write_pointer(pointer: &Path, path: &Path, hash: &str) -> Result<(), PrepareError> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    std::fs::write(pointer, format!("{name}\n{hash}\n"))
        .map_err(|source| PrepareError::Write { path: pointer.to_path_buf(), source })
}

fn read_prepared(path: &Path) -> Result<Vec<Item>, PrepareError> {
    let f = std::fs::File::open(path)
        .map_err(|source| PrepareError::Read { path: path.to_path_buf(), source })?;
    let mut items = Vec::new();
    let mut names = Names::default();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line =
            line.map_err(|source| PrepareError::Read { path: path.to_path_buf(), source })?;
        let row: PreparedRow = serde_json::from_str(&line).map_err(|e| PrepareError::Row {
            path: path.to_path_buf(),
            line: i + 1,
            problem: format!("corrupt prepared row: {e}"),
            fix: "delete the prepared/ file; it is rebuilt from the raw dataset".into(),
        })?;
        let fields = Fields::new(row.fields, &mut names);
        items.push(Item { id: row.id, label: row.label, cluster: row.cluster, fields });
    }
    Ok(items)
}

fn is_csv(raw: &Path) -> bool {
    raw.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// A raw row: its line number and its columns as text.
type Row = (usize, BTreeMap<String, String>);

/// Raw rows -> items, each row made an item as it is read: all rows as maps at once would
/// double the peak.
fn normalize(ds: &DatasetConfig, raw: &Path, bytes: &[u8]) -> Result<Vec<Item>, PrepareError> {
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    let mut names = Names::default();
    let each = |row: Row| -> Result<(), PrepareError> {
        items.push(normalize_row(ds, raw, row, &mut seen, &mut names)?);
        Ok(())
    };
    if is_csv(raw) {
        csv_rows(raw, bytes, each)?;
    } else {
        jsonl_rows(raw, bytes, each)?;
    }
    if items.is_empty() {
        return Err(PrepareError::Empty { path: raw.to_path_buf() });
    }
    Ok(items)
}

/// One raw row -> its item; `seen` holds the ids so far, as 128-bit BLAKE3 digests (a false
/// duplicate would take a collision): a table with no allocation per id. A million id strings
/// freed after preparing left holes all over the heap, which the items' compact copies
/// (`keep_item_keys`) then filled, so none of the old items' pages could be returned.
fn normalize_row(
    ds: &DatasetConfig,
    raw: &Path,
    (line, mut fields): Row,
    seen: &mut HashSet<[u8; 16]>,
    names: &mut Names,
) -> Result<Item, PrepareError> {
    {
        let row_err = |problem: String, fix: String| PrepareError::Row {
            path: raw.to_path_buf(),
            line,
            problem,
            fix,
        };
        let missing = |field: &str, key: &str| {
            row_err(
                format!("row has no `{field}` (the config's {key})"),
                format!(
                    "give every row a non-empty `{field}`, or set {key} in the dataset's config entry to the column that holds it"
                ),
            )
        };
        let id = fields
            .get(&ds.id_field)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| missing(&ds.id_field, "id_field"))?;
        let label = fields
            .get(&ds.label_field)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| missing(&ds.label_field, "label_field"))?;
        let input = fields
            .get(&ds.input_field)
            .cloned()
            .ok_or_else(|| missing(&ds.input_field, "input_field"))?;
        let cluster = match &ds.cluster_field {
            Some(c) => Some(
                fields
                    .get(c)
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .ok_or_else(|| missing(c, "cluster_field"))?,
            ),
            None => None,
        };
        let digest = blake3::hash(id.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.as_bytes()[..16]);
        if !seen.insert(key) {
            return Err(row_err(
                format!("id `{id}` appears twice"),
                "give every row a distinct id: results are paired by id".into(),
            ));
        }
        fields.insert("input".into(), input);
        Ok(Item { id, label, cluster, fields: Fields::new(fields, names) })
    }
}

fn jsonl_rows(
    raw: &Path,
    bytes: &[u8],
    mut each: impl FnMut(Row) -> Result<(), PrepareError>,
) -> Result<(), PrepareError> {
    let text = std::str::from_utf8(bytes).map_err(|e| PrepareError::Row {
        path: raw.to_path_buf(),
        line: 1 + bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count(),
        problem: "is not UTF-8 text".into(),
        fix: "save the dataset as UTF-8".into(),
    })?;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| PrepareError::Row {
                path: raw.to_path_buf(),
                line: i + 1,
                problem: format!("not a JSON object: {e}"),
                fix: "write one JSON object per line (JSONL)".into(),
            })?;
        let serde_json::Value::Object(map) = value else {
            return Err(PrepareError::Row {
                path: raw.to_path_buf(),
                line: i + 1,
                problem: "is JSON but not an object".into(),
                fix: "write one JSON object per line, e.g. {\"id\": 1, \"text\": \"…\", \"label\": \"positive\"}".into(),
            });
        };
        let fields = map
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect();
        each((i + 1, fields))?;
    }
    Ok(())
}

fn csv_rows(
    raw: &Path,
    bytes: &[u8],
    mut each: impl FnMut(Row) -> Result<(), PrepareError>,
) -> Result<(), PrepareError> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| PrepareError::Row {
            path: raw.to_path_buf(),
            line: 1,
            problem: format!("bad CSV header: {e}"),
            fix: "the first line must name the columns".into(),
        })?
        .clone();
    for record in reader.records() {
        let record = record.map_err(|e| PrepareError::Row {
            path: raw.to_path_buf(),
            line: e.position().map(|p| p.line() as usize).unwrap_or(0),
            problem: format!("bad CSV row: {e}"),
            fix: "every row needs as many fields as the header; quote fields holding commas".into(),
        })?;
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        let fields = headers
            .iter()
            .zip(record.iter())
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        each((line, fields))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(name: &str) -> DatasetConfig {
        DatasetConfig {
            name: name.into(),
            path: "x".into(),
            id_field: "id".into(),
            input_field: "text".into(),
            label_field: "label".into(),
            cluster_field: None,
        }
    }

    #[test]
    fn jsonl_is_prepared_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.jsonl");
        std::fs::write(&raw, "{\"id\":1,\"text\":\"good\",\"label\":\"positive\"}\n{\"id\":\"b\",\"text\":\"bad\",\"label\":\"negative\"}\n").unwrap();
        let out = dir.path().join("prepared");
        let a = prepare(&ds("d"), &raw, &out).unwrap();
        assert!(a.written);
        assert_eq!(a.items[0].id, "1");
        assert_eq!(a.items[0].fields.get("input"), Some("good"));
        let b = prepare(&ds("d"), &raw, &out).unwrap();
        assert!(!b.written);
        assert_eq!(a.items, b.items);
        assert_eq!(load_latest(&ds("d"), &out).unwrap().items, a.items);
        // A pointer edited to name another file (a valid one, outside) is not followed.
        std::fs::copy(&a.path, dir.path().join("outside.jsonl")).unwrap();
        let pointer = out.join("d.latest");
        std::fs::write(&pointer, format!("../outside.jsonl\n{}\n", a.hash)).unwrap();
        assert!(matches!(load_latest(&ds("d"), &out), Err(PrepareError::NotPrepared { .. })));
    }

    #[test]
    fn csv_rows_are_read_with_their_header() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.csv");
        std::fs::write(&raw, "id,text,label\n1,\"a, b\",neutral\n").unwrap();
        let p = prepare(&ds("d"), &raw, &dir.path().join("p")).unwrap();
        assert_eq!(p.items[0].fields.get("text"), Some("a, b"));
    }

    #[test]
    fn a_row_without_a_label_names_its_line_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.jsonl");
        std::fs::write(
            &raw,
            "{\"id\":1,\"text\":\"a\",\"label\":\"x\"}\n\n{\"id\":2,\"text\":\"b\"}\n",
        )
        .unwrap();
        let err = prepare(&ds("d"), &raw, &dir.path().join("p")).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(err.hint().unwrap().contains("label_field"));
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.jsonl");
        std::fs::write(&raw, "{\"id\":1,\"text\":\"a\",\"label\":\"x\"}\n{\"id\":1,\"text\":\"b\",\"label\":\"y\"}\n").unwrap();
        let err = prepare(&ds("d"), &raw, &dir.path().join("p")).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }
}
