//! Importing legacy run folders as tagged commits (`exp import`, the migration from the old
//! Python scripts' hand-archived runs).
//!
//! Owns: reading a folder without ever following a symlink, recognizing what it can (config,
//! metrics, costs, in today's layout or the old `run_all.py` one, see `runfiles::layout`), dating it
//! from its name (`t1_r20250821`, `t05_r20250825123456`) or else its mtime, and committing it
//! byte-exact on `refs/runs/<NAME>` with a tag `tags/<NAME>`, oldest first, each commit the parent
//! of the next. Never modifies the source folder; never prints.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;

use crate::error::Hint;
use crate::progress::Progress;
use crate::runfiles::headline;
use crate::runfiles::layout::{self, Layout};
use crate::runfiles::source::{self, Entry, FsSource, Kind, Source};
use crate::runfiles::{RunHeader, lenient_view};
use crate::store::{
    Commit, ConditionSummary, Expect, Head, Object, ObjectId, RefName, Repo, Summary, TrialSummary,
    worktree,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path} is not a folder")]
    NotADir { path: PathBuf },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`--tag {tag}` names one import, but {count} folders were given")]
    TagWithMany { tag: String, count: usize },
    #[error("`{name}` is not a usable run name: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("two folders would both be imported as `{name}`: {first} and {second}")]
    DuplicateName { name: String, first: PathBuf, second: PathBuf },
    #[error("runs/{name} already exists with different content (commit {commit})")]
    Exists { name: String, commit: String },
    #[error("tags/{name} already names another commit ({commit})")]
    TagTaken { name: String, commit: String },
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::NotADir { .. } => Some("give the run folders themselves, e.g. `exp import examples/legacy/*`".into()),
            Error::Io { .. } => Some("check the folder exists and is readable".into()),
            Error::TagWithMany { .. } => Some("import the folders one at a time with `--tag`, or drop `--tag` to name each after its folder".into()),
            Error::BadName { .. } => Some("pick another name with `--tag NAME` (letters, digits, `-`, `_`, `.`)".into()),
            Error::DuplicateName { .. } => Some("import one of them with `--tag OTHER_NAME`".into()),
            Error::Exists { name, .. } => Some(format!(
                "the folder changed since it was imported as `{name}`: import it under a new name with `--tag {name}-2`, or compare with `exp diff {name}`"
            )),
            Error::TagTaken { name, .. } => Some(format!(
                "import under another name with `--tag {name}-imported`, or see what the tag holds with `exp show {name}`"
            )),
            Error::Source(e) => e.hint(),
            Error::Store(e) => e.hint(),
        }
    }
}

/// Where an import's date came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DateSource {
    /// `…_rYYYYMMDD[HHMMSS]…` in the folder name.
    Name,
    /// The folder's modification time.
    Mtime,
}

/// The date in a legacy run name: `t1_r20250821` is 2025-08-21, `t05_r20250825123456` is
/// 2025-08-25 12:34:56 (UTC: the old scripts wrote no zone).
pub fn date_from_name(name: &str) -> Option<DateTime<Utc>> {
    for token in name.split(['_', '-', '.']) {
        let Some(digits) = token.strip_prefix('r') else { continue };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let dt = match digits.len() {
            8 => NaiveDate::parse_from_str(digits, "%Y%m%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0)),
            14 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S").ok(),
            _ => None,
        };
        if let Some(dt) = dt {
            return Some(Utc.from_utc_datetime(&dt));
        }
    }
    None
}

/// Checks that `name` can be a ref name segment.
pub fn check_name(name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.starts_with('.') || name.starts_with('-') {
        "it starts with `.` or `-`"
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        "only letters, digits, `-`, `_` and `.` are allowed"
    } else if name.contains("..") || name.ends_with(".lock") {
        "`..` and a `.lock` ending are reserved"
    } else {
        return Ok(());
    };
    Err(Error::BadName { name: name.to_string(), reason })
}

/// One folder to import.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub dir: PathBuf,
    pub name: String,
    pub date: DateTime<Utc>,
    pub date_from: DateSource,
}

/// The folders in commit order (oldest first; same date: by name), named and dated.
pub fn plan(dirs: &[PathBuf], tag: Option<&str>) -> Result<Vec<Planned>, Error> {
    if let (Some(tag), true) = (tag, dirs.len() > 1) {
        return Err(Error::TagWithMany { tag: tag.to_string(), count: dirs.len() });
    }
    let mut out: Vec<Planned> = Vec::new();
    for dir in dirs {
        let meta =
            std::fs::metadata(dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        if !meta.is_dir() {
            return Err(Error::NotADir { path: dir.clone() });
        }
        let abs =
            std::path::absolute(dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        let folder = abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let name = tag.map(str::to_string).unwrap_or_else(|| folder.clone());
        check_name(&name)?;
        if let Some(first) = out.iter().find(|p| p.name == name) {
            return Err(Error::DuplicateName {
                name,
                first: first.dir.clone(),
                second: dir.clone(),
            });
        }
        let (date, date_from) = match date_from_name(&folder) {
            Some(d) => (d, DateSource::Name),
            None => {
                let mtime =
                    meta.modified().map_err(|source| Error::Io { path: dir.clone(), source })?;
                (DateTime::<Utc>::from(mtime), DateSource::Mtime)
            }
        };
        out.push(Planned { dir: abs, name, date, date_from });
    }
    out.sort_by(|a, b| (a.date, &a.name).cmp(&(b.date, &b.name)));
    Ok(out)
}

/// A trial's headline numbers, as far as the folder has them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrialHeadline {
    pub slug: String,
    /// `complete` (has results), `inputs only`, `inputs and outputs` or `outputs only`.
    pub status: String,
    /// Batch requests per condition (lines of the batch input files).
    pub requests: BTreeMap<String, u64>,
    /// Batch responses per condition (lines of the batch output files / response journals).
    pub responses: BTreeMap<String, u64>,
    /// Per condition: (n, accuracy).
    pub conditions: BTreeMap<String, (Option<u64>, Option<f64>)>,
    pub effect: Option<f64>,
    pub p_value: Option<f64>,
    pub usd: Option<f64>,
    pub failures: Option<u64>,
}

/// A file of the folder and what it was recognized as.
#[derive(Debug, Clone, Serialize)]
pub struct FileRole {
    pub path: String,
    /// None: stored byte-exact without being understood.
    pub role: Option<&'static str>,
}

/// A symlink in the folder: stored as a link, never followed.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub path: String,
    pub target: String,
    /// The target leaves the folder (absolute, or `..` past its root).
    pub outside: bool,
}

/// What a folder holds, read without following any link.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub layout: Layout,
    /// Run id from `run.json` when there is one.
    pub run_id: Option<String>,
    pub config_path: Option<String>,
    /// BLAKE3 hex of the config file's bytes.
    pub config_hash: Option<String>,
    pub trials: Vec<TrialHeadline>,
    pub usd: Option<f64>,
    pub failures: Option<u64>,
    pub files: Vec<FileRole>,
    pub links: Vec<Link>,
    /// Things recognized but unreadable (empty or malformed metrics, …).
    pub notes: Vec<String>,
}

impl Inspection {
    pub fn unrecognized(&self) -> impl Iterator<Item = &str> {
        self.files.iter().filter(|f| f.role.is_none()).map(|f| f.path.as_str())
    }
}

/// Reads what `dir` holds: every file with its role, links, and the recognized headline numbers.
pub fn inspect(dir: &Path) -> Result<Inspection, Error> {
    let src = FsSource::new(dir);
    let run = layout::scan(&src)?;
    let mut files = Vec::new();
    let mut links = Vec::new();
    walk(&src, &src.root(), "", &run.sniffed, &mut files, &mut links)?;
    let mut notes = Vec::new();
    let read = |e| src.read(e).map_err(Error::from);

    let (config_path, config_hash) = match &run.config {
        Some((p, e)) => (Some(p.clone()), Some(blake3::hash(&read(e)?).to_hex().to_string())),
        None => (None, None),
    };
    let run_id = match &run.run_json {
        Some(e) => {
            serde_json::from_slice(&read(e)?).ok().and_then(|v| lenient_view::<RunHeader>(v).run_id)
        }
        None => None,
    };
    let mut trials = Vec::new();
    for t in &run.trials {
        let status = match (t.has_results(), t.inputs.is_empty(), t.outputs.is_empty()) {
            (true, _, _) => "complete",
            (false, false, true) => "inputs only",
            (false, false, false) => "inputs and outputs",
            (false, true, _) => "outputs only",
        };
        let mut h =
            TrialHeadline { slug: t.slug.clone(), status: status.into(), ..Default::default() };
        for (cond, e) in &t.inputs {
            *h.requests.entry(cond.clone()).or_default() += layout::count_lines(&read(e)?);
        }
        for (cond, e) in &t.outputs {
            *h.responses.entry(cond.clone()).or_default() += layout::count_lines(&read(e)?);
        }
        let mut metrics = None;
        if let Some(e) = &t.metrics {
            match headline::metrics(&read(e)?) {
                Ok(m) => {
                    for (cond, c) in &m {
                        h.conditions.insert(cond.clone(), (Some(c.n), c.accuracy));
                    }
                    let acc = |c: &str| m.get(c).and_then(|c| c.accuracy);
                    h.effect = acc("treatment").zip(acc("control")).map(|(t, c)| t - c);
                    h.failures = Some(m.values().map(|c| c.failed).sum());
                    metrics = Some(m);
                }
                Err(r) => notes.push(format!("{}/{}: {r}", t.results_path, e.name)),
            }
        }
        if let Some(e) = &t.costs {
            match headline::costs(&read(e)?, metrics.as_ref()) {
                Ok(c) => h.usd = Some(c.total.usd),
                Err(r) => notes.push(format!("{}/{}: {r}", t.results_path, e.name)),
            }
        }
        if let Some(e) = &t.significance {
            match headline::significance_p(&read(e)?) {
                Ok(p) => h.p_value = p,
                Err(r) => notes.push(format!("{}/{}: {r}", t.results_path, e.name)),
            }
        }
        trials.push(h);
    }
    let usd = trials.iter().map(|t| t.usd).sum::<Option<f64>>().filter(|_| !trials.is_empty());
    let failures =
        trials.iter().map(|t| t.failures).sum::<Option<u64>>().filter(|_| !trials.is_empty());
    Ok(Inspection {
        layout: run.layout,
        run_id,
        config_path,
        config_hash,
        trials,
        usd,
        failures,
        files,
        links,
        notes,
    })
}

/// Every file with its role (by path, else as `sniffed` by content) and every link.
fn walk(
    src: &FsSource,
    dir: &Entry,
    prefix: &str,
    sniffed: &[(String, &'static str)],
    files: &mut Vec<FileRole>,
    links: &mut Vec<Link>,
) -> Result<(), Error> {
    for e in src.list(dir)? {
        let path = if prefix.is_empty() { e.name.clone() } else { format!("{prefix}/{}", e.name) };
        match e.kind {
            Kind::Dir => walk(src, &e, &path, sniffed, files, links)?,
            Kind::File => {
                let role = layout::role_of(&path)
                    .or_else(|| sniffed.iter().find(|(p, _)| *p == path).map(|(_, r)| *r));
                files.push(FileRole { role, path })
            }
            Kind::Symlink => {
                let target = String::from_utf8_lossy(&src.read(&e)?).into_owned();
                let outside = leaves(&path, &target);
                links.push(Link { path, target, outside });
            }
        }
    }
    Ok(())
}

/// Whether a link at `path` (relative to the folder) pointing at `target` leaves the folder.
fn leaves(path: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    let mut depth = path.matches('/').count() as i64; // folders above the link, inside the root
    for part in target.split('/') {
        match part {
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            "." | "" => {}
            _ => depth += 1,
        }
    }
    false
}

/// What importing one folder did.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    pub name: String,
    pub source: PathBuf,
    pub date: DateTime<Utc>,
    pub date_from: DateSource,
    pub commit: ObjectId,
    pub parent: Option<ObjectId>,
    /// Already imported with the same content: nothing changed.
    pub unchanged: bool,
    pub files: u64,
    pub bytes: u64,
    pub new_objects: u64,
    pub inspection: Inspection,
}

/// Imports `dirs` (oldest first, each the parent of the next) as `runs/<NAME>` + `tags/<NAME>`.
/// A folder already imported with the same content changes nothing; with other content it is an
/// error (a tag never moves silently). HEAD names the last run imported.
pub fn import(
    repo: &Repo,
    dirs: &[PathBuf],
    tag: Option<&str>,
    progress: &dyn Progress,
) -> Result<Vec<Imported>, Error> {
    let planned = plan(dirs, tag)?;
    // Inspect everything before writing anything: a folder that cannot be read stops the
    // import before any ref moves.
    let inspections: Vec<Inspection> =
        planned.iter().map(|p| inspect(&p.dir)).collect::<Result<_, _>>()?;
    // A name already taken by other content is refused before anything is written, so a
    // refused import of several folders leaves the store exactly as it was.
    for p in &planned {
        if let Some(id) = repo.refs.read(&RefName::run(&p.name)?)? {
            let (key, _) = repo.workspace_key(&p.dir)?;
            let mut index = repo.load_index_for(&key);
            let tree = worktree::store_dir(
                &repo.odb,
                &mut index,
                &p.dir,
                &key,
                true,
                &crate::progress::NoProgress,
            )?
            .tree;
            if repo.read_commit(&id)?.tree != tree {
                return Err(Error::Exists { name: p.name.clone(), commit: id.short() });
            }
        }
        if let Some(t) = repo.refs.read(&RefName::tag(&p.name)?)?
            && repo.refs.read(&RefName::run(&p.name)?)? != Some(t)
        {
            return Err(Error::TagTaken { name: p.name.clone(), commit: t.short() });
        }
    }
    let mut out = Vec::new();
    let mut parent: Option<ObjectId> = None;
    for (p, inspection) in planned.into_iter().zip(inspections) {
        let run_ref = RefName::run(&p.name)?;
        let tag_ref = RefName::tag(&p.name)?;
        let (key, _) = repo.workspace_key(&p.dir)?;
        let mut index = repo.load_index_for(&key);
        let stored = worktree::store_dir(&repo.odb, &mut index, &p.dir, &key, false, progress)?;
        // The index is a cache: failing to save it only costs re-hashing next time.
        let _ = index.save();
        let existing = repo.refs.read(&run_ref)?;
        let (commit, unchanged) = match existing {
            Some(id) => {
                if repo.read_commit(&id)?.tree != stored.tree {
                    return Err(Error::Exists { name: p.name.clone(), commit: id.short() });
                }
                (id, true)
            }
            None => {
                let commit = Commit {
                    tree: stored.tree,
                    parents: parent.into_iter().collect(),
                    time: p.date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    message: format!("import {}", p.name),
                    run_id: p.name.clone(),
                    name: None,
                    status: Some("imported".into()),
                    config_hash: inspection.config_hash.clone(),
                    provenance: None,
                    exp_version: env!("CARGO_PKG_VERSION").to_string(),
                    path: None,
                    summary: summary_of(&inspection),
                };
                let id = repo.odb.write(&Object::Commit(Box::new(commit)))?;
                repo.refs.update(
                    &run_ref,
                    id,
                    Expect::Absent,
                    &format!("import: {}", p.dir.display()),
                )?;
                (id, false)
            }
        };
        match repo.refs.read(&tag_ref)? {
            Some(t) if t == commit => {}
            Some(t) => return Err(Error::TagTaken { name: p.name.clone(), commit: t.short() }),
            None => repo.refs.update(&tag_ref, commit, Expect::Absent, "import")?,
        }
        let this_parent =
            if unchanged { repo.read_commit(&commit)?.parents.first().copied() } else { parent };
        out.push(Imported {
            name: p.name.clone(),
            source: p.dir,
            date: p.date,
            date_from: p.date_from,
            commit,
            parent: this_parent,
            unchanged,
            files: stored.files,
            bytes: stored.bytes,
            new_objects: stored.new_objects,
            inspection,
        });
        parent = Some(commit);
    }
    if let Some(last) = out.iter().rev().find(|i| !i.unchanged) {
        repo.refs.set_head(
            &Head::Symbolic(RefName::run(&last.name)?),
            &format!("import: {}", last.name),
        )?;
    }
    Ok(out)
}

/// The commit summary `log`/`list` show, from what the folder's files say.
fn summary_of(i: &Inspection) -> Summary {
    Summary {
        trials: i
            .trials
            .iter()
            .map(|t| TrialSummary {
                slug: t.slug.clone(),
                status: Some(t.status.clone()),
                conditions: t
                    .conditions
                    .iter()
                    .map(|(c, (n, acc))| (c.clone(), ConditionSummary { n: *n, accuracy: *acc }))
                    .collect(),
                effect: t.effect,
                p_value: t.p_value,
                holm_p: None,
                usd: t.usd,
                failures: t.failures,
            })
            .collect(),
        usd: i.usd,
        failures: i.failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_come_from_legacy_names() {
        assert_eq!(
            date_from_name("t1_r20250821").unwrap().to_rfc3339(),
            "2025-08-21T00:00:00+00:00"
        );
        assert_eq!(
            date_from_name("t05_r20250825123456").unwrap().to_rfc3339(),
            "2025-08-25T12:34:56+00:00"
        );
        assert_eq!(date_from_name("r20250230"), None, "no 30 February");
        assert_eq!(date_from_name("my-run"), None);
        assert_eq!(date_from_name("run_r2025"), None);
    }

    #[test]
    fn links_that_climb_out_of_the_folder_are_flagged() {
        assert!(leaves("a", "/etc/passwd"));
        assert!(leaves("a", "../x"));
        assert!(!leaves("sub/a", "../x"));
        assert!(leaves("sub/a", "../../x"));
        assert!(!leaves("a", "sub/../b"));
    }

    #[test]
    fn names_must_be_safe_ref_segments() {
        assert!(check_name("t1_r20250821").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "x..y", "x.lock", "-x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_shipped_legacy_examples_are_recognized() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/legacy");
        let t0 = inspect(&root.join("t0_r20250818")).unwrap();
        assert_eq!(t0.layout, Layout::Legacy);
        assert_eq!(t0.config_path.as_deref(), Some("config_snapshot.yaml"));
        assert!(t0.trials.iter().all(|t| t.status == "inputs only" && t.conditions.is_empty()));
        assert_eq!(t0.trials.len(), 2);
        let t1 = inspect(&root.join("t1_r20250821")).unwrap();
        let llama = t1.trials.iter().find(|t| t.slug.starts_with("llama")).unwrap();
        assert_eq!(llama.conditions["treatment"], (Some(12), Some(1.0)));
        assert_eq!(llama.failures, Some(1));
        let odd: Vec<&str> = t1.unrecognized().collect();
        assert_eq!(odd, [".DS_Store", "notes for Bob (final) v2 — copy.txt"]);
    }

    #[test]
    fn unreadable_results_are_noted_by_their_path_in_either_layout() {
        let d = tempfile::tempdir().unwrap();
        let results = d.path().join("slug-a/results");
        std::fs::create_dir_all(&results).unwrap();
        std::fs::write(d.path().join("slug-a/trial.json"), "{}").unwrap();
        std::fs::write(results.join("metrics.json"), "").unwrap();
        std::fs::write(results.join("costs.json"), "{\"usd\": oops}").unwrap();
        std::fs::write(results.join("significance.json"), "{").unwrap();
        let notes = inspect(d.path()).unwrap().notes;
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert_eq!(notes[0], "slug-a/results/metrics.json: the file is empty");
        assert!(notes[1].starts_with("slug-a/results/costs.json: not valid JSON"), "{notes:?}");
        assert!(notes[2].starts_with("slug-a/results/significance.json: "), "{notes:?}");

        let old = d.path().join("old/trials/m__p__temp0.0");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("metrics.json"), "{\"trial\": \"m\"}").unwrap();
        let notes = inspect(&d.path().join("old")).unwrap().notes;
        assert_eq!(notes, ["trials/m__p__temp0.0/metrics.json: no per-condition metrics in it"]);
    }
}
