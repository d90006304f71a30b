//! Code provenance of a run: which code produced it. `capture(dir)` asks gix for the git
//! repository around `dir`: HEAD's commit id, whether tracked files differ from HEAD (dirty), and
//! whether untracked files exist. Outside a git repository, or when git cannot answer, the
//! result says so in `note` instead of failing: provenance must never stop a run from being
//! recorded.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Hex id of the git HEAD commit, None outside a repository or before the first commit.
    pub git_commit: Option<String>,
    /// Tracked files differ from HEAD (index or worktree).
    pub dirty: bool,
    /// Untracked, not ignored files are present.
    pub untracked: bool,
    /// What could not be determined and why, e.g. "not a git repository".
    pub note: Option<String>,
}

/// Provenance of the code in or above `dir`.
pub fn capture(dir: &std::path::Path) -> Provenance {
    let repo = match gix::discover(dir) {
        Ok(r) => r,
        Err(_) => {
            return Provenance { note: Some("not a git repository".into()), ..Default::default() };
        }
    };
    let mut p = Provenance::default();
    let mut notes = Vec::new();
    match repo.head_id() {
        Ok(id) => p.git_commit = Some(id.to_string()),
        Err(_) => notes.push("no commit yet".to_string()),
    }
    match repo.is_dirty() {
        Ok(d) => p.dirty = d,
        Err(e) => notes.push(format!("dirty state unknown: {e}")),
    }
    match untracked(&repo) {
        Ok(u) => p.untracked = u,
        Err(e) => notes.push(format!("untracked files unknown: {e}")),
    }
    if !notes.is_empty() {
        p.note = Some(notes.join("; "));
    }
    p
}

fn untracked(repo: &gix::Repository) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let iter = repo
        .status(gix::progress::Discard)?
        .untracked_files(gix::status::UntrackedFiles::Collapsed)
        .into_index_worktree_iter(Vec::new())?;
    for item in iter {
        if let gix::status::index_worktree::Item::DirectoryContents { entry, .. } = item?
            && entry.status == gix::dir::entry::Status::Untracked
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_repository_it_is_a_note_not_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = capture(d.path());
        assert_eq!(p.git_commit, None);
        assert_eq!(p.note.as_deref(), Some("not a git repository"));
    }

    #[test]
    fn inside_a_repository_it_reports_head_dirty_and_untracked() {
        let run = |d: &std::path::Path, args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(d)
                // The machine's git settings (commit signing) and a caller's repository (a
                // hook's GIT_DIR) are not the test's.
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env_remove("GIT_DIR")
                .env_remove("GIT_WORK_TREE")
                .env_remove("GIT_INDEX_FILE")
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t")
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let d = tempfile::tempdir().unwrap();
        if !run(d.path(), &["init", "-q"]) {
            // A test that cannot run says so: the one print the library allows.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("skipped: git is missing");
            }
            return;
        }
        std::fs::write(d.path().join("a"), "1").unwrap();
        assert!(run(d.path(), &["add", "a"]));
        assert!(run(d.path(), &["commit", "-qm", "x"]));
        let clean = capture(d.path());
        assert_eq!(clean.git_commit.as_ref().map(|c| c.len()), Some(40));
        assert!(!clean.dirty && !clean.untracked, "{clean:?}");
        std::fs::write(d.path().join("a"), "2").unwrap();
        std::fs::write(d.path().join("new"), "x").unwrap();
        let dirty = capture(d.path());
        assert!(dirty.dirty && dirty.untracked, "{dirty:?}");
    }
}
