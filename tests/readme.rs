//! The README's "typical session", executed verbatim, so the README cannot drift from what exp
//! does: the block is cut out of README.md at test time and run by bash, with `exp` on PATH,
//! in a copy of the repository's demo workspace, pushing to a real S3 server on 127.0.0.1.
mod common;

use std::path::Path;
use std::process::Command;

/// The shell block that follows "A typical session:" in README.md.
fn typical_session() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let after = readme.split("A typical session:").nth(1).expect("README has a typical session");
    let block = after.split("```sh\n").nth(1).expect("a ```sh block follows");
    block.split("```").next().expect("the block ends").to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn the_readmes_typical_session_runs_verbatim() {
    let Some(s3) = common::s3::S3Server::start() else { return };
    let script = typical_session();
    assert!(script.contains("exp diff HEAD~1 HEAD"), "the session compares two runs:\n{script}");
    let ws = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["config", "data"] {
        copy_dir(&root.join(dir), &ws.path().join(dir));
    }
    let bin = assert_cmd::cargo::cargo_bin("exp");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(ws.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("EXP_LOG")
        .envs(s3.env())
        .output()
        .expect("bash runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the session failed:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("decoding.temps"), "the diff shows the changed setting:\n{stdout}");
    assert!(s3.dir("exp").exists(), "the push reached the bucket");
}
