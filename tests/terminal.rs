//! Black-box tests of what exp does with the terminal: a reader that closes the pipe early,
//! progress under a real pseudo-terminal, and tables that fit the width they are given.
mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;

use common::{exp, exp_process, labelled_jsonl, write_files};
use tempfile::TempDir;

/// A workspace whose config runs `trials` trials (one per temperature) of `items` items on the
/// simulated model, each request taking `latency_ms`, at most two in flight.
fn sim_workspace(trials: usize, items: usize, latency_ms: u64) -> TempDir {
    let ws = tempfile::tempdir().unwrap();
    let rows = labelled_jsonl((0..items).map(|i| {
        let (text, label) = if i % 3 == 0 { ("happy", "positive") } else { ("gloomy", "negative") };
        (format!("i{i}"), format!("item {i} was {text}"), label)
    }));
    let temps: Vec<String> = (0..trials).map(|t| format!("{:.2}", t as f64 / 100.0)).collect();
    let config = format!(
        "datasets:\n  - {{name: d, path: data/d.jsonl}}\n\
         models:\n  - {{name: sim-demo, provider: sim, max_connections: 2, \
         sim: {{accuracy: {{control: 0.6, treatment: 0.9}}, seed: 1, latency_ms: {latency_ms}}}, \
         pricing: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}}}\n\
         prompt_sets:\n  operational_only: {{control: config/prompts/control.txt, \
         treatment: config/prompts/treatment.md}}\n\
         user_template: \"Text: {{text}}\"\n\
         decoding: {{temps: [{}], top_k: [50], top_p: [1.0], max_tokens: [1024]}}\n\
         scoring: {{type: label, labels: [positive, negative]}}\n",
        temps.join(", ")
    );
    write_files(
        ws.path(),
        &[
            ("data/d.jsonl", &rows),
            ("config/prompts/control.txt", "Classify the sentiment."),
            ("config/prompts/treatment.md", "You are careful. Classify the sentiment."),
            ("config/eval_config.yaml", &config),
        ],
    );
    ws
}

fn stdout_of(cmd: &mut assert_cmd::Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

/// Gives the simulated model another `seed: N`, so the next run answers differently.
fn reseed(ws: &Path, seed: &str) {
    let path = ws.join("config/eval_config.yaml");
    let config = std::fs::read_to_string(&path).unwrap();
    let config = regex::Regex::new(r"seed: \d+").unwrap().replace(&config, seed).into_owned();
    std::fs::write(path, config).unwrap();
}

// ---------------------------------------------------------------------------------------------
// A closed pipe

/// Linux's smallest pipe: one page. The reader then holds little, so a command printing much
/// more than that must write after the reader has gone.
const PIPE_BYTES: usize = 4096;

/// Runs `exp args` with stdout going into a one-page pipe whose reader takes `lines` lines and
/// then closes it; returns the exit code and stderr.
fn into_closing_reader(ws: &Path, args: &[&str], lines: usize) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    // SAFETY: fcntl on a pipe descriptor this function owns; it only resizes the pipe.
    let set = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES as i32) };
    assert_eq!(set, PIPE_BYTES as i32, "the pipe could not be made one page");
    let child = {
        let mut cmd = exp_process(ws);
        cmd.args(args).stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped());
        cmd.spawn().unwrap()
        // `cmd`, and with it this process's copy of the write end, is dropped here: exp holds
        // the only one left.
    };
    let mut reader = BufReader::with_capacity(1, reader);
    for _ in 0..lines {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "exp {args:?} printed nothing");
    }
    drop(reader);
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_reader_closing_the_pipe_ends_every_command_quietly_with_exit_0() {
    // Two archived runs of many trials, a 4 MB file in the second, a run folder edited since.
    let ws = sim_workspace(120, 4, 0);
    for (id, seed) in [("first", "seed: 1"), ("second", "seed: 2")] {
        reseed(ws.path(), seed);
        exp(ws.path()).args(["run", "--run-id", id, "--archive"]).assert().success();
    }
    let big: Vec<u8> = (0..1_000_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
    std::fs::write(ws.path().join("experiments/run_second/big.bin"), big).unwrap();
    exp(ws.path()).args(["commit", "experiments/run_second"]).assert().success();
    std::fs::write(ws.path().join("experiments/run_first/notes.txt"), "edited").unwrap();

    // (command, whether it prints so much that a reader closing after one line must catch exp
    // still writing; the others are checked with the pipe closed before their first byte).
    let cases: &[(&[&str], bool)] = &[
        (&["log"], false),
        (&["log", "--all", "-v"], true),
        (&["log", "--json"], true),
        (&["list"], false),
        (&["list", "-v"], true),
        (&["list", "--json"], true),
        (&["show", "second"], true),
        (&["show", "second", "--json"], true),
        (&["show", "second", "big.bin"], true),
        (&["diff", "first", "second"], true),
        (&["diff", "first", "second", "--json"], true),
        (&["fsck"], false),
        (&["fsck", "--json"], false),
        (&["status"], false),
        (&["status", "--json"], false),
        // The dynamic completion script is short: it asks `exp` itself for candidates.
        (&["completions", "bash"], false),
    ];
    let mut failures = Vec::new();
    for (args, long) in cases {
        let full = exp(ws.path()).args(*args).assert().success().get_output().stdout.len();
        assert!(!long || full > 2 * PIPE_BYTES, "exp {args:?} prints only {full} bytes");
        let readers: &[usize] = if *long { &[0, 1] } else { &[0] };
        for &lines in readers {
            let (code, stderr) = into_closing_reader(ws.path(), args, lines);
            if code != Some(0) || !stderr.is_empty() {
                failures.push(format!(
                    "exp {} with the reader gone after {lines} line(s): exit {code:?}, stderr {stderr:?}",
                    args.join(" ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_failure_is_still_reported_when_stdout_is_open() {
    let ws = sim_workspace(1, 2, 0);
    exp(ws.path()).arg("init").assert().success();
    let out = exp(ws.path()).args(["show", "nosuchrun"]).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.starts_with("error: ") && stderr.contains("nosuchrun"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// A real terminal

/// Runs `exp args` on a new pseudo-terminal `cols` columns wide, holding its stdin, stdout and
/// stderr as a shell would; returns the exit code and every byte it drew.
fn on_a_terminal(ws: &Path, args: &[&str], cols: u16) -> (Option<i32>, String) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize { ws_row: 40, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty stores the two descriptors it opens in `master` and `slave`; the other
    // pointers are null (defaults) or point at `size`, which outlives the call.
    let rc = unsafe {
        libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size)
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and belong to nothing else.
    let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = {
        let mut cmd = exp_process(ws);
        cmd.args(args)
            .env("TERM", "xterm-256color")
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        cmd.spawn().unwrap()
        // The terminal's last slave descriptors go with `cmd`: once exp exits, reading the
        // master ends.
    };
    let reader = std::thread::spawn(move || {
        let mut master = master;
        let mut drawn = Vec::new();
        let mut buf = [0u8; 4096];
        // Linux answers EIO once no process holds the terminal any more.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            drawn.extend_from_slice(&buf[..n]);
        }
        drawn
    });
    let status = child.wait().unwrap();
    let drawn = reader.join().unwrap();
    (status.code(), String::from_utf8_lossy(&drawn).into_owned())
}

/// What a terminal shows, as lines: escape sequences dropped, every carriage return a new line
/// (each redraw of a bar is one line).
fn screen_lines(drawn: &str) -> Vec<String> {
    let escapes = regex::Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").unwrap();
    escapes.replace_all(drawn, "").split(['\r', '\n']).map(str::to_string).collect()
}

#[test]
fn a_run_on_a_terminal_shows_progress_throughout_the_send() {
    // 2 trials × 2 conditions × 20 items at 60 ms, two at a time: about 2.5 s of sending.
    let ws = sim_workspace(2, 20, 60);
    let (code, drawn) = on_a_terminal(ws.path(), &["run", "--run-id", "tty"], 100);
    assert_eq!(code, Some(0), "{drawn}");
    let lines = screen_lines(&drawn);
    let done = lines
        .iter()
        .position(|l| l.starts_with("run tty: complete"))
        .unwrap_or_else(|| panic!("no summary line in:\n{drawn}"));
    let table = lines
        .iter()
        .position(|l| l.starts_with("trial") && l.contains("control"))
        .unwrap_or_else(|| panic!("no results table in:\n{drawn}"));
    assert!(table < done);
    let counter = regex::Regex::new(r"^requests .*?(\d+)/80 ").unwrap();
    let mut states = BTreeSet::new();
    for line in &lines[..table] {
        if let Some(c) = counter.captures(line) {
            let n: u32 = c[1].parse().unwrap();
            if (1..80).contains(&n) {
                let full = line.contains("ETA") && line.contains("errors") && line.contains('$');
                assert!(full, "a bar without ETA, errors or cost: {line}");
                states.insert(n);
            }
        }
    }
    assert!(
        states.len() >= 2,
        "the bar showed {states:?} of 80 requests before the results; the terminal got:\n{drawn}"
    );
    assert!(lines[table..].iter().all(|l| !counter.is_match(l)), "a bar after the results");
}

// ---------------------------------------------------------------------------------------------
// Width

/// Every line of `out` fits in `cols`, and every hex word that begins a commit id is the
/// whole short id or more: no id is broken across lines or cut short.
fn assert_fits(what: &str, out: &str, cols: usize, ids: &[String]) {
    for line in out.lines() {
        let n = line.chars().count();
        assert!(n <= cols, "`{what}` at {cols} columns printed {n}:\n{line}\n\nin:\n{out}");
    }
    for word in out.split(|c: char| !c.is_ascii_alphanumeric()) {
        let is_hex = word.len() >= 4 && word.chars().all(|c| c.is_ascii_hexdigit());
        if is_hex && ids.iter().any(|id| id.starts_with(word)) {
            assert!(word.len() >= 12, "`{what}` split or cut commit id {word}:\n{out}");
        }
    }
}

#[test]
fn at_80_and_120_columns_no_line_is_longer_and_no_id_is_split() {
    let ws = sim_workspace(3, 6, 0);
    let legacy = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/legacy");
    let message = "a long message about what changed between these two runs and why it was worth \
                   paying for a second one";
    for cols in [80usize, 120] {
        let mut outputs = Vec::new();
        let columns = cols.to_string();
        let run = |args: &[&str]| stdout_of(exp(ws.path()).env("COLUMNS", &columns).args(args));
        if cols == 80 {
            for id in ["first", "second"] {
                let out = run(&["run", "--run-id", id, "--archive", "-m", message]);
                outputs.push((format!("run {id}"), out));
            }
            exp(ws.path())
                .args(["tag", "a-rather-long-tag-name-for-the-baseline", "first"])
                .assert()
                .success();
            std::fs::write(ws.path().join("experiments/run_first/notes.txt"), "edited").unwrap();
        }
        // The first time imports, the second finds both unchanged: both print the table.
        let out = run(&[
            "import",
            legacy.join("t0_r20250818").to_str().unwrap(),
            legacy.join("t1_r20250821").to_str().unwrap(),
        ]);
        outputs.push(("import".into(), out));
        let log: serde_json::Value =
            serde_json::from_str(&stdout_of(exp(ws.path()).args(["log", "--all", "--json"])))
                .unwrap();
        let log = &log["commits"];
        let slug = stdout_of(exp(ws.path()).args(["show", "second", "--json"]));
        let slug: serde_json::Value = serde_json::from_str(&slug).unwrap();
        let slug = slug["summary"]["trials"][0]["slug"].as_str().unwrap().to_string();
        assert!(slug.len() > 40, "a long slug, as real ones are: {slug}");
        for args in [
            &["log"][..],
            &["log", "--all"],
            &["log", "--all", "-v"],
            &["list"],
            &["list", "-v"],
            &["show", "second"],
            &["show", "second", slug.as_str()],
            &["diff", "first", "second"],
            &["diff", "first", "second", "--items", "--stat"],
            &["diff", "t0_r20250818", "t1_r20250821", "--stat"],
            &["status"],
        ] {
            outputs.push((args.join(" "), run(args)));
        }
        let ids: Vec<String> =
            log.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
        for (what, out) in &outputs {
            assert_fits(what, out, cols, &ids);
        }
        let log = &outputs.iter().find(|(what, _)| what == "log --all").unwrap().1;
        for id in &ids {
            assert!(log.contains(&id[..12]), "log --all lacks {}:\n{log}", &id[..12]);
        }
    }
}

#[test]
fn piped_output_keeps_every_line_whole() {
    let ws = sim_workspace(1, 4, 0);
    let message = "x".repeat(150) + " end of a very long message";
    exp(ws.path()).args(["run", "--run-id", "r1", "--archive", "-m", &message]).assert().success();
    let log = stdout_of(exp(ws.path()).arg("log"));
    assert!(log.lines().any(|l| l.contains(&message)), "{log}");
    let rules = log.lines().filter(|l| l.starts_with('─')).count();
    assert_eq!(rules, 1, "one rule, under the header:\n{log}");
}
