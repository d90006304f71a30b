//! Crash safety: `exp commit` killed with SIGKILL at many random moments leaves `fsck` clean and
//! the run's ref at either its old commit or the new one.
mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{exp, exp_process, remove_stale_locks};
use rand::{Rng, SeedableRng};

fn json(cmd: &mut assert_cmd::Command) -> serde_json::Value {
    serde_json::from_slice(&cmd.assert().success().get_output().stdout).unwrap()
}

fn ref_value(ws: &Path) -> Option<String> {
    fs::read_to_string(ws.join(".exprepo/refs/runs/r1")).ok().map(|s| s.trim().to_string())
}

#[test]
fn commit_killed_at_random_moments_leaves_fsck_clean_and_the_ref_old_or_new() {
    let ws = tempfile::tempdir().unwrap();
    exp(ws.path()).arg("init").assert().success();
    let run = ws.path().join("experiments/run_r1");
    fs::create_dir_all(&run).unwrap();
    // ~30 MB over 120 files, so a commit takes long enough to be interrupted in every phase.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    for i in 0..120 {
        let rows: String = (0..2500)
            .map(|r| format!("{i},{r},{},label_{}\n", rng.r#gen::<u32>(), r % 3))
            .collect();
        fs::write(run.join(format!("part-{i:04}.csv")), rows).unwrap();
    }
    let started = Instant::now();
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    // Kill moments are drawn from [0, window); a kill that lands after the commit finished
    // shrinks the window, so the test keeps hitting the commit whatever the machine's speed.
    let mut window = started.elapsed().max(Duration::from_millis(20)).as_micros() as u64;
    let mut interrupted = 0;
    for round in 0..30 {
        // Change some files so the commit has new objects and a new ref value to write.
        for k in 0..3 {
            let i = (round * 7 + k * 13) % 120;
            fs::write(
                run.join(format!("part-{i:04}.csv")),
                format!("round {round} {k}\n").repeat(20_000),
            )
            .unwrap();
        }
        // Most rounds drop the index so the whole folder is re-hashed, as on a first commit.
        if round % 4 != 3 {
            let _ = fs::remove_dir_all(ws.path().join(".exprepo/indexes"));
        }
        let old = ref_value(ws.path());
        let expected_tree = json(exp(ws.path()).args([
            "commit",
            "experiments/run_r1",
            "--dry-run",
            "--json",
        ]))["tree"]
            .as_str()
            .unwrap()
            .to_string();
        let mut child = exp_process(ws.path())
            .args(["commit", "experiments/run_r1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.gen_range(0..window.max(1));
        std::thread::sleep(Duration::from_micros(delay));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.success() {
            window = window * 2 / 3;
        } else {
            interrupted += 1;
        }
        remove_stale_locks(&ws.path().join(".exprepo"));
        exp(ws.path()).arg("fsck").assert().success();
        let now = ref_value(ws.path());
        if now != old {
            let new = now.expect("a ref never disappears");
            let c = json(exp(ws.path()).args(["cat-object", "-p", &new]));
            assert_eq!(
                c["tree"],
                expected_tree.as_str(),
                "round {round}: ref names a commit of another tree"
            );
            assert_eq!(
                c["parents"][0].as_str(),
                old.as_deref(),
                "round {round}: new commit's parent is not the old one"
            );
        }
        // Finishing the commit afterwards always works and lands on the expected tree.
        exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
        let done = ref_value(ws.path()).unwrap();
        let c = json(exp(ws.path()).args(["cat-object", "-p", &done]));
        assert_eq!(c["tree"], expected_tree.as_str());
    }
    eprintln!("{interrupted} of 30 commits were killed before finishing");
    assert!(interrupted > 0, "no commit was interrupted");
    let out = ws.path().join("check");
    exp(ws.path()).args(["checkout", "r1", "--to"]).arg(&out).assert().success();
    for e in fs::read_dir(&run).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(fs::read(&p).unwrap(), fs::read(out.join(p.file_name().unwrap())).unwrap());
    }
}
