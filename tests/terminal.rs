//! Black-box tests of what exp does with the terminal: a reader that closes the pipe early,
//! progress under a real pseudo-terminal, and tables that fit the width they are given.
mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
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
         decoding: {{temps: [{}], top_p: [1.0], max_tokens: [1024]}}\n\
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
        (&["completions", "bash"], true),
    ];
    let mut failures = Vec::new();
    for (args, long) in cases {
        let full = exp(ws.path()).args(*args).assert().success().get_output().stdout.len();
        assert!(!long || full > 4 * PIPE_BYTES, "exp {args:?} prints only {full} bytes");
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
