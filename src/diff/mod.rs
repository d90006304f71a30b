//! Structured diffs of runs: tree diff plus semantic diffs of known artifacts.
