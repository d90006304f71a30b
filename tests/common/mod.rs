//! Helpers shared by the black-box tests.
#![allow(dead_code)]

use std::path::Path;

use assert_cmd::Command;

/// The `exp` binary, run in `dir`, with a clean environment for the things exp reads.
pub fn exp(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("exp").expect("exp binary is built");
    cmd.current_dir(dir).env_remove("EXP_LOG").env("NO_COLOR", "1");
    cmd
}

/// Whether an outside tool a test needs is there. Missing is a test failure under
/// `EXP_TEST_STRICT=1` (scripts/test.sh and CI install everything), and a printed skip otherwise.
pub fn require_tool(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var("EXP_TEST_STRICT").as_deref() == Ok("1") {
        panic!("{what} is missing: run `bash scripts/test.sh`, which installs it");
    }
    eprintln!("skipped: {what} is missing (scripts/test.sh installs it)");
    false
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
