//! Run history across the whole store: every run once (local, fetched or tagged), and the
//! cross-run table (one row per run × trial: the parameters that define the trial and its results),
//! which is what `dvc exp show` is to DVC users.
//!
//! Reads only what it needs from each run's tree (the manifest, run.json, the config snapshot and
//! each trial's significance.json), never the big files; what it derives from them is kept per
//! commit in a cache (`cache`), the only thing it writes.
pub mod cache;
pub mod filter;

use crate::error::Hint;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::store::{Commit, Mode, ObjectId, RefName, Repo, Tree};

pub use filter::{Filter, FilterError};

/// A run as history shows it: its newest commit and every ref naming that commit.
#[derive(Debug, Clone)]
pub struct RunTip {
    pub id: ObjectId,
    pub commit: Commit,
    /// Local refs first (`runs/ID`, `tags/NAME`), then fetched ones (`remotes/R/runs/ID`).
    pub refs: Vec<RefName>,
}

/// Every run the store knows, once: the commits named by `runs/…`, `remotes/…` and `tags/…`
/// refs, deduplicated by commit id (a fetched run that is also local is one run), newest first.
pub fn runs(repo: &Repo) -> crate::store::Result<Vec<RunTip>> {
    let mut by_id: HashMap<ObjectId, Vec<RefName>> = HashMap::new();
    for (name, id) in repo.refs.list("")? {
        by_id.entry(id).or_default().push(name);
    }
    let mut out = Vec::with_capacity(by_id.len());
    for (id, mut refs) in by_id {
        refs.sort_by_key(|r| (r.as_str().starts_with("remotes/"), r.as_str().to_string()));
        out.push(RunTip { commit: repo.read_commit(&id)?, id, refs });
    }
    out.sort_by(|a, b| b.commit.time.cmp(&a.commit.time).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Every commit reachable from any ref (and HEAD), newest first: `exp log` with no revision.
pub fn all_commits(repo: &Repo) -> crate::store::Result<Vec<(ObjectId, Commit)>> {
    let mut tips: Vec<ObjectId> = repo.refs.list("")?.into_iter().map(|(_, id)| id).collect();
    tips.extend(repo.refs.read(&RefName::head())?);
    repo.log(&tips, None)
}

/// `--since` for `exp log`: a date (`2026-11-01`, midnight UTC), an RFC 3339 time, or an age
/// before `now` (`90m`, `12h`, `7d`, `2w`).
pub fn parse_since(
    text: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, SinceError> {
    let t = text.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.with_timezone(&chrono::Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    let bad = || SinceError { text: text.to_string() };
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let age = match unit {
        "m" | "min" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        "w" => chrono::Duration::try_weeks(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    now.checked_sub_signed(age).ok_or_else(bad)
}

#[derive(Debug, thiserror::Error)]
#[error("--since `{text}`: not a date, a time or an age")]
pub struct SinceError {
    pub text: String,
}

impl Hint for SinceError {
    fn hint(&self) -> Option<String> {
        Some("write a date (2026-11-01), an RFC 3339 time (2026-11-01T12:00:00Z) or an age (12h, 7d, 2w)".into())
    }
}

/// When `c` was made (None when its time field is not RFC 3339, e.g. a forged commit).
pub fn commit_time(c: &Commit) -> Option<chrono::DateTime<chrono::Utc>> {
    commit_time_str(&c.time)
}

pub fn commit_time_str(t: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(t).ok().map(|d| d.with_timezone(&chrono::Utc))
}

/// The parameter columns of the cross-run table, in display order.
pub const PARAM_COLUMNS: [&str; 8] =
    ["model", "prompt_set", "prompts", "temp", "top_k", "top_p", "max_tokens", "data"];

/// One run × trial.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub run: String,
    /// The run's name (`exp run --name`).
    pub name: Option<String>,
    pub commit: String,
    /// Every ref naming the run's commit (local first).
    pub refs: Vec<String>,
    pub time: String,
    pub trial: String,
    /// PARAM_COLUMNS → value as text ("" when the run does not say).
    pub params: BTreeMap<String, String>,
    pub control: Option<f64>,
    pub treatment: Option<f64>,
    /// Treatment − control, the headline effect (a fraction: 0.05 is 5 points).
    pub effect: Option<f64>,
    pub ci: Option<[f64; 2]>,
    pub p: Option<f64>,
    pub holm_p: Option<f64>,
    pub usd: Option<f64>,
}

/// The cross-run table of `runs`, one row per trial of each (a run without trials: one row).
pub fn table(repo: &Repo, runs: &[RunTip]) -> Vec<Row> {
    let mut cache = cache::ListCache::load(repo);
    let mut rows = Vec::new();
    for tip in runs {
        let cells = cache.cells(&tip.id, || derive_cells(repo, &tip.commit));
        let refs: Vec<String> = tip.refs.iter().map(|r| r.to_string()).collect();
        if tip.commit.summary.trials.is_empty() {
            rows.push(Row {
                run: tip.commit.run_id.clone(),
                name: tip.commit.name.clone(),
                commit: tip.id.short(),
                refs: refs.clone(),
                time: tip.commit.time.clone(),
                trial: String::new(),
                params: BTreeMap::new(),
                control: None,
                treatment: None,
                effect: None,
                ci: None,
                p: None,
                holm_p: None,
                usd: tip.commit.summary.usd,
            });
        }
        for t in &tip.commit.summary.trials {
            let acc = |c: &str| t.conditions.get(c).and_then(|s| s.accuracy);
            let derived = cells.get(&t.slug);
            rows.push(Row {
                run: tip.commit.run_id.clone(),
                name: tip.commit.name.clone(),
                commit: tip.id.short(),
                time: tip.commit.time.clone(),
                trial: t.slug.clone(),
                refs: refs.clone(),
                params: derived.map(|d| d.params.clone()).unwrap_or_default(),
                control: acc("control"),
                treatment: acc("treatment"),
                effect: t.effect,
                ci: derived.and_then(|d| d.ci),
                p: t.p_value,
                holm_p: t.holm_p,
                usd: t.usd,
            });
        }
    }
    let live: Vec<ObjectId> = runs.iter().map(|tip| tip.id).collect();
    cache.save(&live);
    rows
}

/// What the table derives from one run's files: each trial's parameter cells and interval.
fn derive_cells(repo: &Repo, commit: &Commit) -> cache::RunCells {
    let files = RunFiles::read(repo, commit);
    commit
        .summary
        .trials
        .iter()
        .map(|t| {
            let cells = cache::TrialCells {
                params: files.params(repo, &t.slug),
                ci: files.effect_ci(repo, &t.slug),
            };
            (t.slug.clone(), cells)
        })
        .collect()
}

/// The few small files of one run the table reads, fetched lazily from its tree.
struct RunFiles {
    root: Option<Tree>,
    manifest: Option<Value>,
    run_json: Option<Value>,
    config: Option<serde_yaml::Value>,
}

/// Files larger than this are not what the table expects (a manifest is a few KB); skipping
/// them keeps a forged commit from making `exp list` allocate without bound.
const MAX_SMALL_FILE: u64 = 16 << 20;

impl RunFiles {
    fn read(repo: &Repo, commit: &Commit) -> RunFiles {
        let root = repo.odb.read_tree(&commit.tree).ok();
        let mut files = RunFiles { root, manifest: None, run_json: None, config: None };
        files.manifest = files.json(repo, "multi_trial_manifest.json");
        files.run_json = files.json(repo, "run.json");
        files.config = files
            .bytes(repo, "config/eval_config.yaml")
            .and_then(|b| serde_yaml::from_slice(&b).ok());
        files
    }

    fn entry(&self, repo: &Repo, path: &str) -> Option<crate::store::TreeEntry> {
        let mut tree = self.root.clone()?;
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let e = tree.get(part)?.clone();
            if i + 1 == parts.len() {
                return Some(e);
            }
            if e.mode != Mode::Tree {
                return None;
            }
            tree = repo.odb.read_tree(&e.id).ok()?;
        }
        None
    }

    fn bytes(&self, repo: &Repo, path: &str) -> Option<Vec<u8>> {
        let e = self.entry(repo, path)?;
        if e.mode == Mode::Tree {
            return None;
        }
        let (_, size) = repo.odb.header(&e.id).ok()?;
        if size > MAX_SMALL_FILE {
            return None;
        }
        repo.odb.read_blob(&e.id).ok()
    }

    fn json(&self, repo: &Repo, path: &str) -> Option<Value> {
        serde_json::from_slice(&self.bytes(repo, path)?).ok()
    }

    fn params(&self, repo: &Repo, slug: &str) -> BTreeMap<String, String> {
        let mut p: BTreeMap<String, String> =
            PARAM_COLUMNS.iter().map(|c| (c.to_string(), String::new())).collect();
        let trial = self
            .manifest
            .as_ref()
            .and_then(|m| m.get("trials"))
            .and_then(Value::as_array)
            .and_then(|ts| ts.iter().find(|t| t.get("slug").and_then(Value::as_str) == Some(slug)));
        if let Some(t) = trial {
            let text = |v: Option<&Value>| v.map(scalar_text).unwrap_or_default();
            p.insert("model".into(), text(t.get("model")));
            p.insert("prompt_set".into(), text(t.get("prompt_set")));
            let d = t.get("decoding");
            for (column, key) in [
                ("temp", "temperature"),
                ("top_k", "top_k"),
                ("top_p", "top_p"),
                ("max_tokens", "max_tokens"),
            ] {
                p.insert(column.into(), text(d.and_then(|d| d.get(key))));
            }
            if let Some(set) = t.get("prompt_set").and_then(Value::as_str) {
                p.insert("prompts".into(), self.prompt_hashes(repo, set));
            }
        }
        p.insert("data".into(), self.dataset_hashes());
        p
    }

    /// Short ids of the control and treatment prompt files as snapshotted in the run
    /// (`control/treatment`), so a changed prompt shows as a changed cell.
    fn prompt_hashes(&self, repo: &Repo, set: &str) -> String {
        let Some(paths) = self.config.as_ref().and_then(|c| c.get("prompt_sets")?.get(set)) else {
            return String::new();
        };
        let short = |condition: &str| -> String {
            paths
                .get(condition)
                .and_then(serde_yaml::Value::as_str)
                .and_then(|rel| self.entry(repo, &snapshot_path(rel)))
                .map(|e| e.id.to_hex()[..6].to_string())
                .unwrap_or_else(|| "?".into())
        };
        format!("{}/{}", short("control"), short("treatment"))
    }

    fn dataset_hashes(&self) -> String {
        let Some(ds) = self.run_json.as_ref().and_then(|r| r.get("datasets")?.as_array().cloned())
        else {
            return String::new();
        };
        ds.iter()
            .filter_map(|d| d.get("hash").and_then(Value::as_str))
            .map(|h| h.chars().take(6).collect::<String>())
            .collect::<Vec<_>>()
            .join("+")
    }

    /// The headline interval of the effect: `ci` at the top of significance.json when the file
    /// states one, else the paired difference's.
    fn effect_ci(&self, repo: &Repo, slug: &str) -> Option<[f64; 2]> {
        let s = self.json(repo, &format!("{slug}/results/significance.json"))?;
        let ci = s.get("ci").or_else(|| s.get("difference")?.get("ci"))?.as_array()?.clone();
        match ci.as_slice() {
            [lo, hi] => Some([lo.as_f64()?, hi.as_f64()?]),
            _ => None,
        }
    }
}

/// Where `exp run` snapshots a prompt file given in the config as `rel` (the same relative path,
/// under `config/` unless it already starts there; absolute paths by file name).
fn snapshot_path(rel: &str) -> String {
    let p = std::path::Path::new(rel);
    if p.is_absolute() {
        let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        return format!("config/prompts/{name}");
    }
    if p.starts_with("config") { rel.to_string() } else { format!("config/{rel}") }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_dates_times_and_ages() {
        let now = commit_time_str("2026-12-01T12:00:00Z").unwrap();
        let at = |s: &str| parse_since(s, now).map(|t| t.to_rfc3339());
        assert_eq!(at("2026-11-01").unwrap(), "2026-11-01T00:00:00+00:00");
        assert_eq!(at("2026-11-30T08:00:00Z").unwrap(), "2026-11-30T08:00:00+00:00");
        assert_eq!(at("12h").unwrap(), "2026-12-01T00:00:00+00:00");
        assert_eq!(at("2w").unwrap(), "2026-11-17T12:00:00+00:00");
        for bad in ["", "yesterday", "7y", "d", "99999999999999999999d"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn prompt_snapshot_paths_follow_the_runner() {
        assert_eq!(snapshot_path("config/prompts/a.txt"), "config/prompts/a.txt");
        assert_eq!(snapshot_path("prompts/a.txt"), "config/prompts/a.txt");
        assert_eq!(snapshot_path("/abs/x/b.md"), "config/prompts/b.md");
    }
}
