//! Reading batch output files (OpenAI's output and error files, vLLM's `run-batch` output) line by
//! line, with every bound checked before anything is allocated: a line's length, the number of
//! lines, the JSON nesting (in `lines`).
use std::io::{BufRead, Read};
use std::path::Path;

use super::BatchError;
use super::lines::{Outcome, parse_output};
use crate::eval::providers::redact::Redactor;

/// Bounds on one output file.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Bytes of one line (an answer is at most `execution.max_response_bytes`, plus framing).
    pub max_line: usize,
    /// Lines of one file (a batch answers each request once).
    pub max_lines: usize,
}

impl Bounds {
    /// What an output file of a run with `requests` requests may hold.
    pub fn for_run(max_response_bytes: u64, requests: usize) -> Bounds {
        Bounds {
            max_line: usize::try_from(max_response_bytes)
                .unwrap_or(usize::MAX)
                .saturating_add(64 << 10),
            // Twice the requests: every line could be answered once in the output file and once
            // more in a resubmission's file given alongside; more is not a batch of this run.
            max_lines: requests.saturating_mul(2).max(16),
        }
    }
}

/// Calls `f(line number, custom_id, outcome)` for each line of the output file at `path`; the
/// first malformed or oversized line is an error naming the file and line.
pub fn read(
    path: &Path,
    bounds: Bounds,
    redactor: &Redactor,
    mut f: impl FnMut(usize, String, Outcome) -> Result<(), BatchError>,
) -> Result<usize, BatchError> {
    let file = std::fs::File::open(path)
        .map_err(|source| BatchError::Read { path: path.to_path_buf(), source })?;
    let mut r = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    let mut lineno = 0;
    loop {
        buf.clear();
        let n = (&mut r)
            .take(bounds.max_line as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| BatchError::Read { path: path.to_path_buf(), source })?;
        if n == 0 {
            return Ok(lineno);
        }
        lineno += 1;
        let bad =
            |problem: String| BatchError::Line { path: path.to_path_buf(), line: lineno, problem };
        if buf.len() > bounds.max_line {
            return Err(bad(format!("line longer than {} bytes", bounds.max_line)));
        }
        if lineno > bounds.max_lines {
            return Err(bad(format!(
                "more than {} lines: more than twice the run's requests, so not an output of this run",
                bounds.max_lines
            )));
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let (id, outcome) = parse_output(line, redactor).map_err(bad)?;
        f(lineno, id, outcome)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_and_too_many_lines_are_refused_with_their_line_number() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.jsonl");
        let ok = r#"{"custom_id":"c","response":null,"error":{"code":"x","message":"y"}}"#;
        std::fs::write(&p, format!("{ok}\n{}\n", "x".repeat(5000))).unwrap();
        let bounds = Bounds { max_line: 1000, max_lines: 10 };
        let err = read(&p, bounds, &Redactor::new(None), |_, _, _| Ok(())).unwrap_err();
        assert!(err.to_string().ends_with("line 2: line longer than 1000 bytes"), "{err}");
        std::fs::write(&p, format!("{ok}\n").repeat(3)).unwrap();
        let bounds = Bounds { max_line: 1000, max_lines: 2 };
        let err = read(&p, bounds, &Redactor::new(None), |_, _, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("line 3: more than 2 lines"), "{err}");
    }
}
