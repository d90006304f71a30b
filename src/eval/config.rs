//! The experiment definition (`eval_config.yaml`): parsing, defaults and validation.
//!
//! Owns every check that can be made before anything is read from a dataset or sent to a model, so
//! a mistake costs a second, not a paid run. Every error names the file, the key, the line where
//! YAML gives one, and what would fix it. Unknown keys are rejected (`deny_unknown_fields`): a typo
//! such as `temprature` must never silently fall back to a default.
//! Secrets never live here: a model names the environment variable holding its key.
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::endpoint::{BaseUrls, DecodingParam, MaxConnections, TokenLimitParam};
use super::overrides::{self, Override, OverrideError};
use crate::error::Hint;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}{}: {message}", line_suffix(*line))]
    Parse { path: PathBuf, line: Option<usize>, message: String },
    #[error("{path}{}: `{key}` {problem}", line_suffix(*line))]
    Invalid { path: PathBuf, key: String, line: Option<usize>, problem: String, fix: String },
    #[error("{path}{}: `{key}` names {file}, which does not exist", line_suffix(*line))]
    MissingFile { path: PathBuf, key: String, line: Option<usize>, file: PathBuf },
    #[error(transparent)]
    Override(#[from] OverrideError),
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(", line {l}")).unwrap_or_default()
}

impl Hint for ConfigError {
    fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Read { .. } => Some(
                "pass an existing file with --config (the demo is config/eval_config.yaml)".into(),
            ),
            ConfigError::Parse { message, .. } => Some(parse_hint(message)),
            ConfigError::Invalid { fix, .. } => Some(fix.clone()),
            ConfigError::Override(e) => e.hint(),
            ConfigError::MissingFile { .. } => Some(
                "create the file or fix the path; paths are relative to the workspace folder \
                 (the one holding .exprepo/, else the current folder)"
                    .into(),
            ),
        }
    }
}

/// A fix for serde's messages, which say what is wrong but not what to write instead.
fn parse_hint(message: &str) -> String {
    if message.contains("unknown field") {
        "remove or rename the key: the message lists the keys allowed here (README.md, \"Config reference\")".into()
    } else if message.contains("missing field") {
        "add the missing key (README.md, \"Config reference\", lists every key)".into()
    } else if message.contains("unknown variant") {
        "use one of the values the message lists".into()
    } else if message.contains("invalid type") {
        "give the value the type the message asks for (a list needs [ … ], text may need quotes)"
            .into()
    } else {
        "fix the YAML syntax at that line (indentation, a missing colon or quote)".into()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub paths: Paths,
    pub datasets: Vec<DatasetConfig>,
    pub models: Vec<ModelConfig>,
    pub prompt_sets: BTreeMap<String, PromptSet>,
    pub user_template: String,
    #[serde(default)]
    pub decoding: Decoding,
    pub scoring: Scoring,
    #[serde(default)]
    pub significance: Significance,
    #[serde(default)]
    pub execution: Execution,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub prepared_dir: PathBuf,
    pub experiments_dir: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            data_dir: "data".into(),
            prepared_dir: "prepared".into(),
            experiments_dir: "experiments".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    pub name: String,
    pub path: PathBuf,
    #[serde(default = "default_id_field")]
    pub id_field: String,
    #[serde(default = "default_input_field")]
    pub input_field: String,
    #[serde(default = "default_label_field")]
    pub label_field: String,
    #[serde(default)]
    pub cluster_field: Option<String>,
}

fn default_id_field() -> String {
    "id".into()
}
fn default_input_field() -> String {
    "text".into()
}
fn default_label_field() -> String {
    "label".into()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible `/v1/chat/completions` endpoint.
    Openai,
    /// The built-in, offline, deterministic simulated model.
    Sim,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Sim => "sim",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub provider: ProviderKind,
    /// One URL, or a list of replicas serving the same model (`eval::endpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<BaseUrls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The model string the API expects; defaults to `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Requests in flight to this model (all replicas together), or `auto`.
    #[serde(default)]
    pub max_connections: MaxConnections,
    /// The most `max_connections: auto` may reach (default `endpoint::DEFAULT_CEILING`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_ceiling: Option<usize>,
    /// Which key carries `max_tokens`; default by the rule in `eval::endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_limit_param: Option<TokenLimitParam>,
    /// Decoding parameters never sent; default by the rule in `eval::endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omit_params: Option<Vec<DecodingParam>>,
    /// Merged into the request body as is (vLLM's `top_k`, `reasoning_effort`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_body: Option<serde_json::Map<String, serde_json::Value>>,
    /// Whether the decoding grid's `top_k` goes into the body (vLLM, llama.cpp take it; OpenAI
    /// rejects it). Default: only for the sim model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_top_k: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<SimConfig>,
    /// How requests reach the endpoint: one by one (`live`), or through the Batch API (`batch`).
    #[serde(default, skip_serializing_if = "Backend::is_live")]
    pub backend: Backend,
}

/// `models[].backend`. Omitted from the resolved config when `live`, so runs from before the
/// field keep their config hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Live,
    Batch,
}

impl Backend {
    pub fn is_live(&self) -> bool {
        *self == Backend::Live
    }
}

impl ModelConfig {
    /// The model string sent in request bodies.
    pub fn api_model(&self) -> &str {
        self.model.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Share taken off both prices for answers obtained through the Batch API (0.5: half price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_discount: Option<f64>,
    /// Batch API prices, when the provider lists them separately (they win over the discount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_input_per_mtok: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_output_per_mtok: Option<f64>,
}

impl Pricing {
    /// Exact USD (unrounded) for the given token counts.
    /// The prices of answers obtained through the Batch API: the separate batch prices where
    /// given, else the live prices less `batch_discount`, else the live prices.
    pub fn batch(&self) -> Pricing {
        let keep = 1.0 - self.batch_discount.unwrap_or(0.0);
        Pricing {
            input_per_mtok: self.batch_input_per_mtok.unwrap_or(self.input_per_mtok * keep),
            output_per_mtok: self.batch_output_per_mtok.unwrap_or(self.output_per_mtok * keep),
            batch_discount: None,
            batch_input_per_mtok: None,
            batch_output_per_mtok: None,
        }
    }

    pub fn usd(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_mtok + output_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    pub accuracy: SimAccuracy,
    #[serde(default)]
    pub seed: u64,
    /// Simulated latency per request, for demos of the progress bar.
    #[serde(default)]
    pub latency_ms: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimAccuracy {
    pub control: f64,
    pub treatment: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PromptSet {
    pub control: PathBuf,
    pub treatment: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Decoding {
    pub temps: Vec<f64>,
    /// Empty: top_k is not part of the grid and never sent.
    pub top_k: Vec<u32>,
    pub top_p: Vec<f64>,
    pub max_tokens: Vec<u32>,
    pub repeats: u32,
}

impl Default for Decoding {
    fn default() -> Self {
        Decoding {
            temps: vec![0.0],
            top_k: vec![],
            top_p: vec![1.0],
            max_tokens: vec![1024],
            repeats: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScoringType {
    /// The answer is one of `labels`, found by `extract` or as the first label word in the output.
    Label,
    /// The whole (normalized) output equals the gold answer.
    Exact,
    /// `extract`'s first capture group (or match) equals the gold answer.
    Regex,
}

impl ScoringType {
    /// The name the config and trial.json use.
    pub fn as_str(self) -> &'static str {
        match self {
            ScoringType::Label => "label",
            ScoringType::Exact => "exact",
            ScoringType::Regex => "regex",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scoring {
    #[serde(rename = "type")]
    pub kind: ScoringType,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<String>,
    #[serde(default)]
    pub normalize: Normalize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Normalize {
    pub lowercase: bool,
    pub trim: bool,
    /// Drops punctuation at both ends ("Positive." -> "positive").
    pub strip_punctuation: bool,
    /// Collapses runs of whitespace into one space.
    pub collapse_whitespace: bool,
}

impl Default for Normalize {
    fn default() -> Self {
        Normalize {
            lowercase: true,
            trim: true,
            strip_punctuation: true,
            collapse_whitespace: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Significance {
    pub alpha: f64,
    pub bootstrap_resamples: u32,
    pub seed: u64,
}

impl Default for Significance {
    fn default() -> Self {
        Significance { alpha: 0.05, bootstrap_resamples: 10_000, seed: 0 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Execution {
    pub parts_per_dataset: usize,
    pub max_concurrent_jobs: usize,
    pub max_retries: u32,
    pub timeout_s: f64,
    /// First retry waits up to this long (full jitter), doubling per attempt.
    pub backoff_base_s: f64,
    pub backoff_max_s: f64,
    /// fsync journals after appends (grouped); off only for throwaway runs on slow disks.
    pub fsync: bool,
    /// The largest answer body read from an endpoint; a larger one is a recorded error for that
    /// request, so a hostile or broken server cannot make a run allocate without bound.
    pub max_response_bytes: u64,
    /// The response cache (`eval::cache`): reuse journaled answers to identical requests.
    pub cache: CacheMode,
    /// Stop sending before the run's spend could pass this many USD (`eval::budget`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usd: Option<f64>,
    /// Seconds between two polls of a batch's state (`backend: batch`).
    pub batch_poll_s: f64,
    /// A batch input file holds at most this many requests and bytes (OpenAI's limits).
    pub batch_max_requests: usize,
    pub batch_max_bytes: u64,
}

/// `execution.cache`: whether a run reuses earlier answers, and whether its own answers may be
/// reused by later runs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Reuse earlier answers; this run's answers are reused by later runs.
    #[default]
    ReadWrite,
    /// Reuse earlier answers; this run's answers are never offered to later runs.
    Read,
    /// Send everything; this run's answers are never offered to later runs.
    Off,
}

impl CacheMode {
    pub fn reads(self) -> bool {
        self != CacheMode::Off
    }
}

impl Default for Execution {
    fn default() -> Self {
        Execution {
            parts_per_dataset: 1,
            max_concurrent_jobs: 4,
            max_retries: 6,
            timeout_s: 120.0,
            backoff_base_s: 0.5,
            backoff_max_s: 30.0,
            fsync: true,
            max_response_bytes: 4 << 20,
            cache: CacheMode::ReadWrite,
            max_usd: None,
            batch_poll_s: 30.0,
            batch_max_requests: 50_000,
            batch_max_bytes: 200_000_000,
        }
    }
}

/// A config read from a file, with what validation needs to point back into it.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The config file as given.
    pub path: PathBuf,
    /// The folder relative paths in the config are resolved against.
    pub workspace: PathBuf,
    /// The `-S KEY=VALUE` overrides applied, as given (recorded in the run's config snapshot).
    pub overrides: Vec<String>,
    text: String,
}

impl LoadedConfig {
    /// `rel` (a path from the config) resolved against the workspace.
    pub fn resolve(&self, rel: &Path) -> PathBuf {
        if rel.is_absolute() { rel.to_path_buf() } else { self.workspace.join(rel) }
    }

    /// The line of the first occurrence of `needle` in the file, for errors about values that serde
    /// accepted but that turn out wrong later (a missing file, a bad regex).
    pub fn line_of(&self, needle: &str) -> Option<usize> {
        if needle.is_empty() {
            return None;
        }
        self.text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
    }

    /// The line of the first `needle` at or after the first line holding `anchor` (a key inside
    /// one model's entry, not the first model's); the first `needle` anywhere when that fails.
    fn line_near(&self, anchor: &str, needle: &str) -> Option<usize> {
        let from = self.line_of(anchor).unwrap_or(1);
        self.text
            .lines()
            .enumerate()
            .skip(from - 1)
            .find(|(_, l)| l.contains(needle))
            .map(|(i, _)| i + 1)
            .or_else(|| self.line_of(needle))
    }

    fn invalid(&self, key: &str, needle: &str, problem: String, fix: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            key: key.to_string(),
            line: self.line_of(needle),
            problem,
            fix,
        }
    }

    fn require_file(&self, key: &str, rel: &Path) -> Result<(), ConfigError> {
        let full = self.resolve(rel);
        if full.is_file() {
            return Ok(());
        }
        Err(ConfigError::MissingFile {
            path: self.path.clone(),
            key: key.to_string(),
            line: self.line_of(&rel.to_string_lossy()),
            file: full,
        })
    }
}

/// Reads and validates `path`; relative paths inside resolve against `workspace`.
pub fn load(path: &Path, workspace: &Path) -> Result<LoadedConfig, ConfigError> {
    load_with(path, workspace, &[])
}

/// `load` with `-S KEY=VALUE` overrides applied to the document before it is validated, so an
/// overridden value is checked exactly like one written in the file.
pub fn load_with(
    path: &Path,
    workspace: &Path,
    overrides: &[Override],
) -> Result<LoadedConfig, ConfigError> {
    let text = read(path)?;
    let loaded = parse_with(path, workspace, text, overrides)?;
    validate(&loaded)?;
    Ok(loaded)
}

/// A run's own config snapshot (`config/eval_config.yaml`, read from the store), with `-S`
/// overrides: parsed and its numbers checked, but not its files, which a clone may not have
/// (`exp rescore` reads the run's requests and answers from the store, not the workspace).
pub fn from_snapshot(
    path: &Path,
    workspace: &Path,
    text: String,
    overrides: &[Override],
) -> Result<LoadedConfig, ConfigError> {
    let loaded = parse_with(path, workspace, text, overrides)?;
    check_numbers(&loaded)?;
    Ok(loaded)
}

fn parse_with(
    path: &Path,
    workspace: &Path,
    text: String,
    overrides: &[Override],
) -> Result<LoadedConfig, ConfigError> {
    let config: Config = if overrides.is_empty() {
        parse(path, &text)?
    } else {
        let mut doc: serde_yaml::Value = parse(path, &text)?;
        overrides::apply_all(&mut doc, overrides)?;
        serde_yaml::from_value(doc).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: None,
            message: format!("{} (after the -S overrides)", strip_location(&e.to_string())),
        })?
    };
    Ok(LoadedConfig {
        config,
        path: path.to_path_buf(),
        workspace: workspace.to_path_buf(),
        overrides: overrides.iter().map(|o| o.arg.clone()).collect(),
        text,
    })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })
}

/// Brackets (`[…]`, `{…}`) may nest this deep; no config needs more than a few levels.
const MAX_BRACKET_DEPTH: usize = 64;

/// The line where brackets first nest deeper than `MAX_BRACKET_DEPTH`, if they do. The YAML
/// parser's time grows with the square of the nesting (a 40 000-deep `[[[…` of 80 KB takes
/// seconds), so deep nesting is refused before it parses. Brackets in quotes and comments count
/// too: a false alarm needs 64 unclosed ones.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, line) in text.lines().enumerate() {
        for b in line.bytes() {
            match b {
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_BRACKET_DEPTH {
                return Some(i + 1);
            }
        }
    }
    None
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    if let Some(line) = too_deep(text) {
        return Err(ConfigError::Parse {
            path: path.to_path_buf(),
            line: Some(line),
            message: format!("brackets nested more than {MAX_BRACKET_DEPTH} levels deep"),
        });
    }
    serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        line: e.location().map(|l| l.line()),
        message: strip_location(&e.to_string()),
    })
}

/// The config `exp run`, `exp status` and `exp clean` read when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "config/eval_config.yaml";

/// The file a `--config` path names: as given when that exists (relative to the current
/// folder), else the same path inside the workspace, so commands started in a subfolder still
/// find the workspace's config.
pub fn locate(given: &Path, workspace: &Path) -> PathBuf {
    if given.is_relative() && !given.exists() && workspace.join(given).exists() {
        workspace.join(given)
    } else {
        given.to_path_buf()
    }
}

/// The `paths` section of the config at `path`, checked like `load` checks it, and nothing
/// else: `exp status` and `exp clean` only need to know where run folders live, and must keep
/// working while the experiment itself is half-edited or its data is gone.
pub fn load_paths(path: &Path, workspace: &Path) -> Result<Paths, ConfigError> {
    #[derive(Deserialize)]
    struct PathsOnly {
        #[serde(default)]
        paths: Paths,
        #[serde(default)]
        datasets: serde_yaml::Value,
    }
    let text = read(path)?;
    let only: PathsOnly = parse(path, &text)?;
    let datasets: Vec<PathBuf> = only
        .datasets
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("path")?.as_str().map(PathBuf::from))
        .collect();
    check_paths(path, &text, &only.paths, &datasets, workspace)?;
    Ok(only.paths)
}

/// The run and prepared folders of `workspace` for `exp status` and `exp clean`: from the
/// config `--config` names; without one, from the default config when the workspace has it;
/// else `experiments/` and `prepared/`.
pub fn workspace_folders(
    config: Option<&Path>,
    workspace: &Path,
) -> Result<crate::store::workspace::Folders, ConfigError> {
    let paths = match config {
        Some(given) => load_paths(&locate(given, workspace), workspace)?,
        None => {
            let default = locate(Path::new(DEFAULT_CONFIG), workspace);
            if default.exists() { load_paths(&default, workspace)? } else { Paths::default() }
        }
    };
    Ok(crate::store::workspace::Folders {
        experiments: workspace.join(&paths.experiments_dir),
        prepared: workspace.join(&paths.prepared_dir),
    })
}

/// `p` without `.` and `..` components (lexically: the folders need not exist yet).
fn normalize(p: &Path) -> PathBuf {
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `exp clean` deletes run folders and, with `--clean-prepared`, the prepared folder: neither
/// may hold what the store cannot give back (the store itself, the config, the raw datasets).
fn check_paths(
    path: &Path,
    text: &str,
    paths: &Paths,
    datasets: &[PathBuf],
    workspace: &Path,
) -> Result<(), ConfigError> {
    let ws = normalize(workspace);
    let abs = |p: &Path| normalize(&workspace.join(p));
    let invalid = |key: &str, problem: String, fix: &str| ConfigError::Invalid {
        path: path.to_path_buf(),
        key: format!("paths.{key}"),
        line: text.lines().position(|l| l.contains(key)).map(|i| i + 1),
        problem,
        fix: fix.to_string(),
    };
    let experiments = abs(&paths.experiments_dir);
    let prepared = abs(&paths.prepared_dir);
    for (key, dir, given) in [
        ("experiments_dir", &experiments, &paths.experiments_dir),
        ("prepared_dir", &prepared, &paths.prepared_dir),
    ] {
        if ws.starts_with(dir) {
            return Err(invalid(
                key,
                format!("`{}` is the workspace itself or a folder above it", given.display()),
                "give it a folder of its own, e.g. experiments or prepared: `exp clean` deletes \
                 what it holds",
            ));
        }
    }
    if experiments.starts_with(&prepared) || prepared.starts_with(&experiments) {
        return Err(invalid(
            "prepared_dir",
            format!(
                "`{}` overlaps experiments_dir `{}`",
                paths.prepared_dir.display(),
                paths.experiments_dir.display()
            ),
            "keep prepared datasets and run folders apart: `exp clean --clean-prepared` deletes \
             prepared_dir",
        ));
    }
    let raw = std::iter::once(("data_dir", &paths.data_dir))
        .chain(datasets.iter().map(|d| ("the dataset", d)));
    if let Some((what, held)) = raw.into_iter().find(|(_, d)| abs(d).starts_with(&prepared)) {
        return Err(invalid(
            "prepared_dir",
            format!("`{}` holds {what} `{}`", paths.prepared_dir.display(), held.display()),
            "give prepared_dir a folder of its own: `exp clean --clean-prepared` deletes it",
        ));
    }
    Ok(())
}

/// serde_yaml appends " at line L column C"; the error already carries the line.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The most parts a dataset may be split into (each part is a file and a job).
pub const MAX_PARTS_PER_DATASET: usize = 100_000;
/// The most jobs that may be open at once.
pub const MAX_CONCURRENT_JOBS: usize = 10_000;
/// The most requests in flight to one model (`max_connections` and its `auto` ceiling).
pub const MAX_CONNECTIONS: usize = 10_000;
/// The most replicas one model's `base_url` may list.
pub const MAX_REPLICAS: usize = 64;

/// The values a number in the config may take. Every number has one: an infinite timeout, a
/// billion resamples or `max_tokens: 0` is a typo that would panic, eat the machine or send
/// useless requests, never an experiment, so it is refused before anything runs (`--dry-run`
/// included).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    lo: f64,
    hi: f64,
    /// `lo` itself is excluded (a timeout of 0 is no timeout).
    lo_open: bool,
}

impl Range {
    const fn closed(lo: f64, hi: f64) -> Range {
        Range { lo, hi, lo_open: false }
    }

    const fn above(lo: f64, hi: f64) -> Range {
        Range { lo, hi, lo_open: true }
    }

    fn contains(&self, v: f64) -> bool {
        v.is_finite() && v <= self.hi && if self.lo_open { v > self.lo } else { v >= self.lo }
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = if self.lo_open { '(' } else { '[' };
        write!(f, "{open}{}, {}]", self.lo, self.hi)
    }
}

/// One number of the config, where it is, and what it may be.
struct Number {
    key: String,
    /// A line at or after which the number is written (its model's `name:`), if any.
    anchor: Option<String>,
    /// What the number's line holds (its own key).
    needle: &'static str,
    value: f64,
    shown: String,
    range: Range,
}

fn int(key: String, anchor: Option<String>, needle: &'static str, v: u64, range: Range) -> Number {
    Number { key, anchor, needle, value: v as f64, shown: v.to_string(), range }
}

fn real(key: String, anchor: Option<String>, needle: &'static str, v: f64, range: Range) -> Number {
    Number { key, anchor, needle, value: v, shown: format!("{v:?}"), range }
}

/// Every number of the config with its allowed range: the one table README's config reference
/// follows.
fn numbers(c: &Config) -> Vec<Number> {
    let mut out = Vec::new();
    for (i, m) in c.models.iter().enumerate() {
        let key = |k: &str| format!("models[{i}].{k}");
        let at = Some(format!("name: {}", m.name));
        if let MaxConnections::Fixed(n) = m.max_connections {
            let range = Range::closed(1.0, MAX_CONNECTIONS as f64);
            out.push(int(key("max_connections"), at.clone(), "max_connections", n as u64, range));
        }
        if let Some(n) = m.max_connections_ceiling {
            let range = Range::closed(1.0, MAX_CONNECTIONS as f64);
            let needle = "max_connections_ceiling";
            out.push(int(key(needle), at.clone(), needle, n as u64, range));
        }
        if let Some(p) = &m.pricing {
            let prices = [
                ("input_per_mtok", Some(p.input_per_mtok)),
                ("output_per_mtok", Some(p.output_per_mtok)),
                ("batch_input_per_mtok", p.batch_input_per_mtok),
                ("batch_output_per_mtok", p.batch_output_per_mtok),
            ];
            for (k, v) in prices.into_iter().filter_map(|(k, v)| Some((k, v?))) {
                let range = Range::closed(0.0, 10_000.0);
                out.push(real(key(&format!("pricing.{k}")), at.clone(), k, v, range));
            }
            if let Some(d) = p.batch_discount {
                let k = "batch_discount";
                out.push(real(
                    key("pricing.batch_discount"),
                    at.clone(),
                    k,
                    d,
                    Range::closed(0.0, 1.0),
                ));
            }
        }
        if let Some(sim) = &m.sim {
            for (k, v) in [("control", sim.accuracy.control), ("treatment", sim.accuracy.treatment)]
            {
                let range = Range::closed(0.0, 1.0);
                out.push(real(key(&format!("sim.accuracy.{k}")), at.clone(), "accuracy", v, range));
            }
            let range = Range::closed(0.0, 60_000.0);
            out.push(int(key("sim.latency_ms"), at.clone(), "latency_ms", sim.latency_ms, range));
        }
    }
    let d = &c.decoding;
    let grid = |k: &str, i: usize| format!("decoding.{k}[{i}]");
    for (i, t) in d.temps.iter().enumerate() {
        out.push(real(grid("temps", i), None, "temps", *t, Range::closed(0.0, 2.0)));
    }
    for (i, k) in d.top_k.iter().enumerate() {
        let range = Range::closed(1.0, 100_000.0);
        out.push(int(grid("top_k", i), None, "top_k", u64::from(*k), range));
    }
    for (i, p) in d.top_p.iter().enumerate() {
        out.push(real(grid("top_p", i), None, "top_p", *p, Range::above(0.0, 1.0)));
    }
    for (i, m) in d.max_tokens.iter().enumerate() {
        let range = Range::closed(1.0, 1_000_000.0);
        out.push(int(grid("max_tokens", i), None, "max_tokens", u64::from(*m), range));
    }
    out.push(int(
        "decoding.repeats".into(),
        None,
        "repeats",
        u64::from(d.repeats),
        Range::closed(1.0, 1_000.0),
    ));
    let s = &c.significance;
    out.push(real("significance.alpha".into(), None, "alpha", s.alpha, Range::above(0.0, 0.5)));
    out.push(int(
        "significance.bootstrap_resamples".into(),
        None,
        "bootstrap_resamples",
        u64::from(s.bootstrap_resamples),
        Range::closed(0.0, 1_000_000.0),
    ));
    let e = &c.execution;
    let exec = |k: &'static str| format!("execution.{k}");
    out.extend([
        int(
            exec("parts_per_dataset"),
            None,
            "parts_per_dataset",
            e.parts_per_dataset as u64,
            Range::closed(1.0, MAX_PARTS_PER_DATASET as f64),
        ),
        int(
            exec("max_concurrent_jobs"),
            None,
            "max_concurrent_jobs",
            e.max_concurrent_jobs as u64,
            Range::closed(1.0, MAX_CONCURRENT_JOBS as f64),
        ),
        int(
            exec("max_retries"),
            None,
            "max_retries",
            u64::from(e.max_retries),
            Range::closed(0.0, 100.0),
        ),
        real(exec("timeout_s"), None, "timeout_s", e.timeout_s, Range::above(0.0, 86_400.0)),
        real(
            exec("backoff_base_s"),
            None,
            "backoff_base_s",
            e.backoff_base_s,
            Range::closed(0.0, 3_600.0),
        ),
        real(
            exec("backoff_max_s"),
            None,
            "backoff_max_s",
            e.backoff_max_s,
            Range::closed(0.0, 86_400.0),
        ),
        int(
            exec("max_response_bytes"),
            None,
            "max_response_bytes",
            e.max_response_bytes,
            Range::closed(1024.0, f64::from(1u32 << 30)),
        ),
        real(
            exec("batch_poll_s"),
            None,
            "batch_poll_s",
            e.batch_poll_s,
            Range::closed(1.0, 3_600.0),
        ),
        int(
            exec("batch_max_requests"),
            None,
            "batch_max_requests",
            e.batch_max_requests as u64,
            Range::closed(1.0, 50_000.0),
        ),
        int(
            exec("batch_max_bytes"),
            None,
            "batch_max_bytes",
            e.batch_max_bytes,
            Range::closed(1024.0, 200_000_000.0),
        ),
    ]);
    if let Some(cap) = e.max_usd {
        out.push(real(exec("max_usd"), None, "max_usd", cap, Range::closed(0.0, 1e9)));
    }
    out
}

fn check_numbers(l: &LoadedConfig) -> Result<(), ConfigError> {
    let Some(bad) = numbers(&l.config).into_iter().find(|n| !n.range.contains(n.value)) else {
        return Ok(());
    };
    let line = match &bad.anchor {
        Some(anchor) => l.line_near(anchor, bad.needle),
        None => l.line_of(bad.needle),
    };
    Err(ConfigError::Invalid {
        path: l.path.clone(),
        key: bad.key,
        line,
        problem: format!("is {}, outside {}", bad.shown, bad.range),
        fix: format!(
            "give a finite number in {} (README.md, \"Config reference\", lists every key's range)",
            bad.range
        ),
    })
}

/// An openai model's `base_url`: one http(s) URL, or a list of distinct ones (its replicas).
fn check_base_urls(
    l: &LoadedConfig,
    key: &str,
    at: &str,
    m: &ModelConfig,
) -> Result<(), ConfigError> {
    let key = format!("{key}.base_url");
    let urls = m.base_url.as_ref().map(|u| u.0.as_slice()).unwrap_or_default();
    if urls.is_empty() {
        return Err(l.invalid(
            &key,
            at,
            format!("is missing for model `{}` (provider openai)", m.name),
            "add base_url, e.g. http://localhost:8000/v1 for vLLM (or a list of replicas)".into(),
        ));
    }
    if urls.len() > MAX_REPLICAS {
        return Err(l.invalid(
            &key,
            at,
            format!("lists {} replicas, more than {MAX_REPLICAS}", urls.len()),
            format!("list at most {MAX_REPLICAS} URLs (put a load balancer in front of more)"),
        ));
    }
    if urls.len() > 1 && m.backend == Backend::Batch {
        return Err(l.invalid(
            &key,
            at,
            format!("lists {} replicas, but model `{}` has backend: batch", urls.len(), m.name),
            "a batch goes to one Batch API: give one base_url, or use backend: live".into(),
        ));
    }
    for (i, url) in urls.iter().enumerate() {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(l.invalid(
                &key,
                url,
                format!("`{url}` is not an http(s) URL"),
                "write it as http://host:port/v1".into(),
            ));
        }
        if urls[..i].contains(url) {
            return Err(l.invalid(
                &key,
                url,
                format!("lists `{url}` twice"),
                "list every replica once: a duplicate would get twice its share".into(),
            ));
        }
    }
    Ok(())
}

/// Whether `name` may be a path component and part of a slug or a custom_id: letters, digits,
/// `.`, `_`, `-`, starting with a letter or digit, at most 64 characters. Dataset names become
/// `prepared/<name>-<hash>.jsonl`, model and prompt set names a trial's folder, so a name such
/// as `../../x` must never get that far.
pub fn is_safe_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn check_name(l: &LoadedConfig, key: &str, needle: &str, name: &str) -> Result<(), ConfigError> {
    if is_safe_name(name) {
        return Ok(());
    }
    Err(l.invalid(
        key,
        needle,
        format!("`{name}` is not a plain name"),
        "use letters, digits, '.', '_' and '-' (starting with a letter or digit, at most 64 \
         characters): the name becomes part of file and folder names"
            .into(),
    ))
}

fn validate(l: &LoadedConfig) -> Result<(), ConfigError> {
    let c = &l.config;
    if c.datasets.is_empty() {
        return Err(l.invalid(
            "datasets",
            "datasets:",
            "is empty".into(),
            "list at least one dataset: {name, path, id_field, input_field, label_field}".into(),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, d) in c.datasets.iter().enumerate() {
        let key = format!("datasets[{i}]");
        check_name(l, &format!("{key}.name"), &d.name, &d.name)?;
        if !names.insert(d.name.clone()) {
            return Err(l.invalid(
                &format!("{key}.name"),
                &d.name,
                format!("`{}` is used twice", d.name),
                "give every dataset a distinct name".into(),
            ));
        }
        l.require_file(&format!("{key}.path"), &d.path)?;
    }
    let datasets: Vec<PathBuf> = c.datasets.iter().map(|d| d.path.clone()).collect();
    check_paths(&l.path, &l.text, &c.paths, &datasets, &l.workspace)?;
    if c.models.is_empty() {
        return Err(l.invalid(
            "models",
            "models:",
            "is empty".into(),
            "list at least one model (provider: sim runs offline)".into(),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, m) in c.models.iter().enumerate() {
        let key = format!("models[{i}]");
        let at = format!("name: {}", m.name);
        check_name(l, &format!("{key}.name"), &at, &m.name)?;
        if !names.insert(m.name.clone()) {
            return Err(l.invalid(
                &format!("{key}.name"),
                &at,
                format!("`{}` is used twice", m.name),
                "give every model a distinct name".into(),
            ));
        }
        if m.max_connections_ceiling.is_some() && m.max_connections != MaxConnections::Auto {
            return Err(ConfigError::Invalid {
                path: l.path.clone(),
                key: format!("{key}.max_connections_ceiling"),
                line: l.line_near(&at, "max_connections_ceiling"),
                problem: "is set, but max_connections is not `auto`".into(),
                fix: "write max_connections: auto to let exp find the concurrency, or drop the \
                      ceiling"
                    .into(),
            });
        }
        match m.provider {
            ProviderKind::Openai => {
                check_base_urls(l, &key, &at, m)?;
                if m.sim.is_some() {
                    return Err(l.invalid(
                        &format!("{key}.sim"),
                        &at,
                        "is set on a real (openai) model".into(),
                        "remove `sim:`: the simulated model is provider: sim, never a fallback"
                            .into(),
                    ));
                }
            }
            ProviderKind::Sim => {
                if m.sim.is_none() {
                    return Err(l.invalid(
                        &format!("{key}.sim"),
                        &at,
                        format!("is missing for model `{}` (provider sim)", m.name),
                        "add sim: {accuracy: {control: 0.7, treatment: 0.78}, seed: 7}".into(),
                    ));
                }
                if m.backend == Backend::Batch {
                    return Err(l.invalid(
                        &format!("{key}.backend"),
                        "backend:",
                        format!("is batch, but model `{}` is simulated", m.name),
                        "the Batch API needs a real endpoint (provider: openai); remove `backend:`"
                            .into(),
                    ));
                }
                if c.scoring.kind == ScoringType::Exact {
                    return Err(l.invalid(
                        "scoring.type",
                        "type:",
                        format!("is exact, but model `{}` is simulated", m.name),
                        "the sim model marks every answer \"[simulated] …\", which exact scoring counts wrong: use type: label or regex".into(),
                    ));
                }
                if m.base_url.is_some() {
                    return Err(l.invalid(
                        &format!("{key}.base_url"),
                        &at,
                        "is set on a sim model, which never uses the network".into(),
                        "use provider: openai for a real endpoint, or remove base_url".into(),
                    ));
                }
            }
        }
    }
    if c.prompt_sets.is_empty() {
        return Err(l.invalid(
            "prompt_sets",
            "prompt_sets:",
            "is empty".into(),
            "add a prompt set: name: {control: FILE, treatment: FILE}".into(),
        ));
    }
    for (name, set) in &c.prompt_sets {
        check_name(l, &format!("prompt_sets.{name}"), &format!("{name}:"), name)?;
        l.require_file(&format!("prompt_sets.{name}.control"), &set.control)?;
        l.require_file(&format!("prompt_sets.{name}.treatment"), &set.treatment)?;
    }
    crate::eval::build::check_template(&c.user_template).map_err(|problem| {
        l.invalid(
            "user_template",
            "user_template",
            problem,
            "use {field} for a dataset field ({input} is the input field); write {{ and }} for literal braces".into(),
        )
    })?;
    let d = &c.decoding;
    for (key, empty) in [
        ("decoding.temps", d.temps.is_empty()),
        ("decoding.top_p", d.top_p.is_empty()),
        ("decoding.max_tokens", d.max_tokens.is_empty()),
    ] {
        if empty {
            return Err(l.invalid(
                key,
                key.trim_start_matches("decoding."),
                "is an empty list, so the grid has no trials".into(),
                "give at least one value, e.g. [0.0]".into(),
            ));
        }
    }
    check_numbers(l)?;
    let s = &c.scoring;
    if let Some(re) = &s.extract
        && let Err(e) = regex::Regex::new(re)
    {
        return Err(l.invalid(
            "scoring.extract",
            "extract",
            format!("is not a valid regular expression: {e}"),
            "fix the pattern (in YAML double quotes, write \\\\b for \\b)".into(),
        ));
    }
    match s.kind {
        ScoringType::Label if s.labels.is_empty() => Err(l.invalid(
            "scoring.labels",
            "scoring",
            "is empty for scoring type label".into(),
            "list the allowed answers, e.g. labels: [positive, negative, neutral]".into(),
        )),
        ScoringType::Regex if s.extract.is_none() => Err(l.invalid(
            "scoring.extract",
            "scoring",
            "is missing for scoring type regex".into(),
            "add extract: a pattern whose first group captures the answer".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeply_nested_brackets_are_refused_before_parsing_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let deep = format!("paths: {{}}\ndatasets: {}{}\n", "[".repeat(40_000), "]".repeat(40_000));
        std::fs::write(&path, deep).unwrap();
        let started = std::time::Instant::now();
        let err = load(&path, dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("nested more than 64"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(too_deep(&format!("{}{}", "[".repeat(64), "]".repeat(64))), None);
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "data/d.jsonl", "{\"id\":1,\"text\":\"a\",\"label\":\"positive\"}\n");
        write(dir.path(), "p/c.txt", "control");
        write(dir.path(), "p/t.txt", "treatment");
        dir
    }

    const GOOD: &str = "datasets:\n  - {name: d, path: data/d.jsonl}\nmodels:\n  - name: s\n    provider: sim\n    sim: {accuracy: {control: 0.5, treatment: 0.6}}\nprompt_sets:\n  ps: {control: p/c.txt, treatment: p/t.txt}\nuser_template: \"{text}\"\nscoring: {type: label, labels: [positive, negative]}\n";

    #[test]
    fn a_minimal_config_gets_defaults() {
        let ws = workspace();
        let p = write(ws.path(), "c.yaml", GOOD);
        let l = load(&p, ws.path()).unwrap();
        assert_eq!(l.config.execution.max_retries, 6);
        assert_eq!(l.config.decoding.temps, vec![0.0]);
        assert_eq!(l.config.datasets[0].id_field, "id");
    }

    #[test]
    fn an_unknown_key_names_its_line() {
        let ws = workspace();
        let text = GOOD.replace("user_template:", "temprature: 1\nuser_template:");
        let p = write(ws.path(), "c.yaml", &text);
        let err = load(&p, ws.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown field `temprature`"), "{msg}");
        assert!(msg.contains("line 9"), "{msg}");
        assert!(err.hint().unwrap().contains("remove or rename"));
    }

    #[test]
    fn a_missing_prompt_file_names_key_and_line() {
        let ws = workspace();
        let p = write(ws.path(), "c.yaml", &GOOD.replace("p/t.txt", "p/missing.txt"));
        let err = load(&p, ws.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("prompt_sets.ps.treatment"), "{msg}");
        assert!(msg.contains("line 8"), "{msg}");
    }

    #[test]
    fn a_bad_regex_is_refused() {
        let ws = workspace();
        let text = GOOD.replace("labels: [positive, negative]", "labels: [a], extract: \"(\"");
        let p = write(ws.path(), "c.yaml", &text);
        let msg = load(&p, ws.path()).unwrap_err().to_string();
        assert!(msg.contains("scoring.extract"), "{msg}");
    }

    #[test]
    fn folders_clean_deletes_may_not_hold_the_workspace_or_raw_data() {
        let ws = workspace();
        for (paths, key) in [
            ("{experiments_dir: .}", "paths.experiments_dir"),
            ("{prepared_dir: ..}", "paths.prepared_dir"),
            ("{experiments_dir: out, prepared_dir: out/prep}", "paths.prepared_dir"),
            ("{prepared_dir: data/..}", "paths.prepared_dir"),
            ("{prepared_dir: data}", "paths.prepared_dir"),
        ] {
            let p = write(ws.path(), "c.yaml", &format!("paths: {paths}\n{GOOD}"));
            let err = load(&p, ws.path()).unwrap_err();
            assert!(err.to_string().contains(&format!("`{key}`")), "{paths}: {err}");
            let err = load_paths(&p, ws.path()).unwrap_err();
            assert!(err.to_string().contains("line 1"), "{paths}: {err}");
        }
        let p = write(
            ws.path(),
            "c.yaml",
            &format!("paths: {{data_dir: raw, prepared_dir: data}}\n{GOOD}"),
        );
        assert!(load(&p, ws.path()).unwrap_err().to_string().contains("holds the dataset"));
        let p = write(ws.path(), "c.yaml", "paths: {experiments_dir: runs}\nmodels: nonsense\n");
        let paths = load_paths(&p, ws.path()).unwrap();
        assert_eq!(paths.experiments_dir, Path::new("runs"));
        assert_eq!(paths.prepared_dir, Path::new("prepared"));
    }

    #[test]
    fn pricing_is_exact_per_million_tokens() {
        let p = Pricing {
            input_per_mtok: 0.15,
            output_per_mtok: 0.60,
            batch_discount: None,
            batch_input_per_mtok: None,
            batch_output_per_mtok: None,
        };
        assert!((p.usd(1_000_000, 1_000_000) - 0.75).abs() < 1e-12);
        assert_eq!(p.usd(0, 0), 0.0);
        assert_eq!(p.batch().usd(1_000_000, 0), 0.15, "no discount: batch costs the same");
        let half = Pricing { batch_discount: Some(0.5), ..p };
        assert!((half.batch().usd(1_000_000, 1_000_000) - 0.375).abs() < 1e-12);
        let listed = Pricing { batch_output_per_mtok: Some(0.2), ..half };
        assert!((listed.batch().usd(1_000_000, 1_000_000) - 0.275).abs() < 1e-12);
    }
}
