//! Batch input files: the pending requests of batch jobs, read back from `inputs/` and written
//! as OpenAI batch JSONL, one model per file, split at the provider's limits (requests and
//! bytes per file). Bodies are copied byte for byte: a batch asks exactly what a live run would.
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::lines::request_line;
use super::{BatchError, BatchJob, Limits, batch_id};
use crate::eval::execute::parse_request;

/// One batch input file, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Relative to the run folder.
    pub path: String,
    pub model: String,
    pub requests: usize,
    pub bytes: u64,
}

/// Calls `f` with each request line's custom_id and body, in file order.
pub fn for_each_request(
    inputs: &Path,
    mut f: impl FnMut(&str, bytes::Bytes) -> Result<(), BatchError>,
) -> Result<(), BatchError> {
    let file = std::fs::File::open(inputs)
        .map_err(|source| BatchError::Read { path: inputs.to_path_buf(), source })?;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line =
            line.map_err(|source| BatchError::Read { path: inputs.to_path_buf(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let (id, body) = parse_request(&line).map_err(|e| BatchError::Line {
            path: inputs.to_path_buf(),
            line: i + 1,
            problem: format!("not a request line: {e}"),
        })?;
        f(&id, body)?;
    }
    Ok(())
}

/// Writes the requests of `jobs` that are neither answered nor in `skip` (batch custom_ids of
/// batches still open) into new files `<run>/<folder>/<model>/NNNN.jsonl`, numbered after the
/// files already there; `admit(model, body)` may hold a request back (the budget).
pub fn write(
    run_dir: &Path,
    folder: &str,
    jobs: &[BatchJob],
    skip: &HashSet<String>,
    limits: Limits,
    admit: &mut dyn FnMut(&str, &[u8]) -> bool,
) -> Result<Vec<Chunk>, BatchError> {
    let mut by_model: BTreeMap<&str, Vec<&BatchJob>> = BTreeMap::new();
    for j in jobs {
        by_model.entry(j.model.as_str()).or_default().push(j);
    }
    let mut out = Vec::new();
    for (model, jobs) in by_model {
        let mut w = Writer::new(run_dir, &format!("{folder}/{model}"), model, limits)?;
        for job in jobs {
            for_each_request(&job.inputs, |id, body| {
                let bid = batch_id(&job.slug, id);
                if job.done.contains(id) || skip.contains(&bid) || !admit(model, &body) {
                    return Ok(());
                }
                w.push(&request_line(&bid, &body))
            })?;
        }
        out.extend(w.finish()?);
    }
    Ok(out)
}

/// Rewrites the lines of `chunk` whose batch custom_ids are in `keep` into new files (a batch
/// that expired: only what it left unanswered is sent again).
pub fn rewrite(
    run_dir: &Path,
    chunk: &Chunk,
    keep: &HashSet<String>,
    limits: Limits,
) -> Result<Vec<Chunk>, BatchError> {
    let folder = Path::new(&chunk.path)
        .parent()
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut w = Writer::new(run_dir, &folder, &chunk.model, limits)?;
    for_each_request(&run_dir.join(&chunk.path), |id, body| {
        if keep.contains(id) { w.push(&request_line(id, &body)) } else { Ok(()) }
    })?;
    w.finish()
}

/// The batch custom_ids of a chunk file.
pub fn ids(run_dir: &Path, chunk: &str) -> Result<HashSet<String>, BatchError> {
    let mut out = HashSet::new();
    for_each_request(&run_dir.join(chunk), |id, _| {
        out.insert(id.to_string());
        Ok(())
    })?;
    Ok(out)
}

/// Fills numbered files one after another, starting a new one before a line would break a limit.
struct Writer<'a> {
    run_dir: &'a Path,
    folder: String,
    model: &'a str,
    limits: Limits,
    next: usize,
    open: Option<(tempfile::NamedTempFile, Chunk)>,
    done: Vec<Chunk>,
}

impl<'a> Writer<'a> {
    fn new(
        run_dir: &'a Path,
        folder: &str,
        model: &'a str,
        limits: Limits,
    ) -> Result<Self, BatchError> {
        let dir = run_dir.join(folder);
        // Numbers continue after the files already there: a resubmission never overwrites the
        // file a journaled batch was made from.
        let next = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    name.strip_suffix(".jsonl")?.parse::<usize>().ok()
                })
                .max()
                .map_or(1, |n| n + 1),
            Err(_) => 1,
        };
        Ok(Writer {
            run_dir,
            folder: folder.into(),
            model,
            limits,
            next,
            open: None,
            done: Vec::new(),
        })
    }

    fn push(&mut self, line: &[u8]) -> Result<(), BatchError> {
        let len = line.len() as u64;
        if len > self.limits.max_bytes {
            return Err(BatchError::File {
                path: self.run_dir.join(&self.folder),
                problem: format!(
                    "one request is {len} bytes, more than execution.batch_max_bytes ({})",
                    self.limits.max_bytes
                ),
            });
        }
        let full = self.open.as_ref().is_some_and(|(_, c)| {
            c.requests >= self.limits.max_requests || c.bytes + len > self.limits.max_bytes
        });
        if full {
            self.close()?;
        }
        if self.open.is_none() {
            let dir = self.run_dir.join(&self.folder);
            std::fs::create_dir_all(&dir)
                .map_err(|source| BatchError::Write { path: dir.clone(), source })?;
            let tmp = tempfile::NamedTempFile::new_in(&dir)
                .map_err(|source| BatchError::Write { path: dir.clone(), source })?;
            let path = format!("{}/{:04}.jsonl", self.folder, self.next);
            self.next += 1;
            let chunk = Chunk { path, model: self.model.to_string(), requests: 0, bytes: 0 };
            self.open = Some((tmp, chunk));
        }
        if let Some((tmp, chunk)) = &mut self.open {
            tmp.write_all(line).map_err(|source| BatchError::Write {
                path: self.run_dir.join(&chunk.path),
                source,
            })?;
            chunk.requests += 1;
            chunk.bytes += len;
        }
        Ok(())
    }

    /// Makes the open file durable under its final name.
    fn close(&mut self) -> Result<(), BatchError> {
        if let Some((tmp, chunk)) = self.open.take() {
            let path: PathBuf = self.run_dir.join(&chunk.path);
            let err = |source| BatchError::Write { path: path.clone(), source };
            tmp.as_file().sync_all().map_err(err)?;
            tmp.persist(&path).map_err(|e| err(e.error))?;
            self.done.push(chunk);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Chunk>, BatchError> {
        self.close()?;
        Ok(self.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_split_at_the_request_and_byte_limits() {
        let d = tempfile::tempdir().unwrap();
        let inputs = d.path().join("in.jsonl");
        let mut text = String::new();
        for i in 0..5 {
            text.push_str(&format!(
                "{{\"custom_id\":\"ds:{i}:control:r0\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"m\"}}}}\n"
            ));
        }
        std::fs::write(&inputs, text).unwrap();
        let job = BatchJob {
            slug: "t".into(),
            model: "m".into(),
            inputs,
            journal: d.path().join("j.jsonl"),
            done: ["ds:0:control:r0".to_string()].into(),
        };
        let limits = Limits { max_requests: 2, max_bytes: 1 << 20 };
        let skip: HashSet<String> = ["t/ds:4:control:r0".to_string()].into();
        let all = &mut |_: &str, _: &[u8]| true;
        let chunks = write(d.path(), "b", std::slice::from_ref(&job), &skip, limits, all).unwrap();
        assert_eq!(chunks.iter().map(|c| c.requests).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(chunks[0].path, "b/m/0001.jsonl");
        let first = ids(d.path(), &chunks[0].path).unwrap();
        assert!(first.contains("t/ds:1:control:r0") && first.contains("t/ds:2:control:r0"));
        // A byte limit a bit above one line puts each line in its own file, numbered on.
        let one = chunks[1].bytes;
        let tight = Limits { max_requests: 100, max_bytes: one + 10 };
        let more = write(d.path(), "b", &[job], &HashSet::new(), tight, all).unwrap();
        assert_eq!(more.len(), 4);
        assert_eq!(more[0].path, "b/m/0003.jsonl");
        let keep: HashSet<String> = ["t/ds:2:control:r0".to_string()].into();
        let again = rewrite(d.path(), &chunks[0], &keep, limits).unwrap();
        assert_eq!((again.len(), again[0].requests), (1, 1));
        assert_eq!(ids(d.path(), &again[0].path).unwrap(), keep);
    }
}
