//! Unified text diffs of the files that define an experiment (prompts, the config, notes), so
//! `exp diff` shows what changed in the words being experimented on, as `git diff` does, rather
//! than two byte counts. Run outputs (journals, predictions, reports) are compared semantically
//! elsewhere and never line-diffed here.
use serde::Serialize;

use super::Error;
use super::tree::{FileChange, Status};
use crate::runfiles::layout;
use crate::runfiles::source::{Entry, Kind, Source};

/// Files larger than this are summarized by size only: a text diff of them would not be read.
pub const MAX_TEXT_BYTES: u64 = 256 * 1024;
/// At most this many files get a text diff (the rest are listed by `--stat`).
pub const MAX_FILES: usize = 50;

/// One changed text file as a unified diff (`---`/`+++` header, `@@` hunks, 3 lines of context).
#[derive(Debug, Clone, Serialize)]
pub struct TextDiff {
    pub path: String,
    pub unified: String,
}

/// Whether `path` is a file whose text people write (so worth a line diff): prompts, configs
/// and files exp does not recognize (notes, READMEs), never the run's generated outputs.
fn is_authored(path: &str) -> bool {
    matches!(layout::role_of(path), None | Some("prompt" | "config"))
}

/// Unified diffs of the changed (or added/removed) authored text files between `a` and `b`.
pub fn diffs(a: &dyn Source, b: &dyn Source, files: &[FileChange]) -> Result<Vec<TextDiff>, Error> {
    let mut out = Vec::new();
    for f in files.iter().filter(|f| is_authored(&f.path)) {
        if out.len() == MAX_FILES {
            break;
        }
        let too_big = |s: Option<u64>| s.is_some_and(|s| s > MAX_TEXT_BYTES);
        if too_big(f.old_size) || too_big(f.new_size) {
            continue;
        }
        let old = side_text(a, &f.path, f.status != Status::Added)?;
        let new = side_text(b, &f.path, f.status != Status::Removed)?;
        let (Some(old), Some(new)) = (old, new) else { continue };
        let unified = similar::TextDiff::from_lines(&old, &new)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a/{}", f.path), &format!("b/{}", f.path))
            .to_string();
        if !unified.is_empty() {
            out.push(TextDiff { path: f.path.clone(), unified });
        }
    }
    Ok(out)
}

/// The file's text on one side: empty when the side has no such file, None when it is not
/// UTF-8 text (a binary file gets no line diff).
fn side_text(src: &dyn Source, path: &str, present: bool) -> Result<Option<String>, Error> {
    if !present {
        return Ok(Some(String::new()));
    }
    let Some(entry) = lookup(src, path)? else {
        return Ok(Some(String::new()));
    };
    let bytes = src.read(&entry)?;
    if bytes.contains(&0) {
        return Ok(None);
    }
    Ok(String::from_utf8(bytes).ok())
}

/// The file at `path` (slash-separated) in `src`, if there is one.
fn lookup(src: &dyn Source, path: &str) -> Result<Option<Entry>, Error> {
    let mut dir = src.root();
    let mut parts = path.split('/').peekable();
    while let Some(name) = parts.next() {
        let Some(e) = src.list(&dir)?.into_iter().find(|e| e.name == name) else {
            return Ok(None);
        };
        if parts.peek().is_none() {
            return Ok((e.kind != Kind::Dir).then_some(e));
        }
        if e.kind != Kind::Dir {
            return Ok(None);
        }
        dir = e;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::tree;
    use crate::runfiles::source::MemSource;

    #[test]
    fn a_changed_prompt_gets_a_unified_diff_and_outputs_do_not() {
        let mut a = MemSource::new();
        a.insert("config/prompts/treatment.md", "Be brief.\nAnswer with one word.\n");
        a.insert("s/responses/control/part-0000.jsonl", "{\"a\":1}\n");
        let mut b = MemSource::new();
        b.insert("config/prompts/treatment.md", "Be brief.\nAnswer with one label.\n");
        b.insert("s/responses/control/part-0000.jsonl", "{\"a\":2}\n");
        let files = tree::diff(&a, &b).expect("tree diff");
        let d = diffs(&a, &b, &files).expect("text diffs");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "config/prompts/treatment.md");
        assert!(d[0].unified.contains("--- a/config/prompts/treatment.md"), "{}", d[0].unified);
        assert!(d[0].unified.contains("-Answer with one word.\n+Answer with one label.\n"));
    }

    #[test]
    fn binary_files_get_no_line_diff() {
        let mut a = MemSource::new();
        a.insert("notes.bin", vec![0u8, 1, 2]);
        let mut b = MemSource::new();
        b.insert("notes.bin", vec![0u8, 1, 3]);
        let files = tree::diff(&a, &b).expect("tree diff");
        assert!(diffs(&a, &b, &files).expect("text diffs").is_empty());
    }
}
