//! Refs: small files naming commits, `refs/runs/<ID>`, `refs/tags/<NAME>`,
//! `refs/remotes/<remote>/runs/<ID>` (written by the remote code), `refs/saved/…` (what
//! `exp clean --force` saved), and `HEAD`.
//!
//! Every change goes through `LockFile` (O_EXCL lock, compare-and-swap against the value the
//! caller expects, fsync, rename, fsync the folder) and appends one line to the ref's reflog
//! `logs/<ref path>`: `<old hex|-> <new hex|-> <unix seconds> <message>`. Reflogs are only ever
//! appended to; a deleted ref keeps its reflog so `exp gc` can honour the grace period.
//! HEAD is either `ref: refs/<name>` (a run checked out or committed last) or a bare commit id.
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::ObjectId;
use super::atomic::{LockFile, create_dirs, fsync_dir};
use super::error::{Error, IoContext, Result, read_dir_if_exists};

/// How long a ref update waits for another process's lock before reporting it.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// A validated ref name without the `refs/` prefix (`runs/ID`, `tags/NAME`, …), or `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RefName(String);

/// Check one component of a ref name (a run id, a tag name).
pub fn check_component(c: &str) -> std::result::Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty");
    }
    if c.starts_with('.') || c.ends_with(".lock") || c.contains("..") {
        return Err("may not start with '.', end with '.lock' or contain '..'");
    }
    if c.len() > 200 {
        return Err("longer than 200 characters");
    }
    if !c.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b)) {
        return Err("only letters, digits and . _ - + are allowed");
    }
    Ok(())
}

impl RefName {
    pub fn new(name: &str) -> Result<RefName> {
        let name = name.strip_prefix("refs/").unwrap_or(name);
        if name == "HEAD" {
            return Ok(RefName(name.to_string()));
        }
        let parts: Vec<&str> = name.split('/').collect();
        if parts.len() < 2 {
            return Err(Error::BadRefName {
                name: name.into(),
                reason: "expected runs/ID, tags/NAME, remotes/R/runs/ID or saved/NAME",
            });
        }
        for p in &parts {
            check_component(p).map_err(|reason| Error::BadRefName { name: name.into(), reason })?;
        }
        Ok(RefName(name.to_string()))
    }

    pub fn run(id: &str) -> Result<RefName> {
        check_component(id).map_err(|reason| Error::BadRunId { id: id.into(), reason })?;
        Ok(RefName(format!("runs/{id}")))
    }

    pub fn tag(name: &str) -> Result<RefName> {
        RefName::new(&format!("tags/{name}"))
    }

    pub fn head() -> RefName {
        RefName("HEAD".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component: the run id of `runs/ID`, the tag of `tags/NAME`.
    pub fn short(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    pub fn is_head(&self) -> bool {
        self.0 == "HEAD"
    }

    fn rel_path(&self) -> PathBuf {
        if self.is_head() { PathBuf::from("HEAD") } else { Path::new("refs").join(&self.0) }
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a ref update expects to find (compare-and-swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there.
    Any,
    /// The ref must not exist yet.
    Absent,
    /// The ref must hold exactly this id.
    Value(ObjectId),
}

/// Where HEAD points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Head {
    /// No HEAD yet (fresh store).
    Unborn,
    Symbolic(RefName),
    Detached(ObjectId),
}

/// One reflog line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReflogEntry {
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
    /// Unix seconds.
    pub time: i64,
    pub message: String,
}

/// Handle on the refs of one store (`.exprepo/`).
#[derive(Debug, Clone)]
pub struct Refs {
    root: PathBuf,
}

fn parse_id_line(text: &str, path: &Path) -> Result<ObjectId> {
    text.trim().parse().map_err(|_| Error::io(path, std::io::Error::other("not a commit id")))
}

impl Refs {
    pub fn new(root: PathBuf) -> Refs {
        Refs { root }
    }

    fn path(&self, name: &RefName) -> PathBuf {
        self.root.join(name.rel_path())
    }

    fn log_path(&self, name: &RefName) -> PathBuf {
        self.root.join("logs").join(name.rel_path())
    }

    fn read_file(path: &Path) -> Result<Option<String>> {
        match fs::read_to_string(path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == ErrorKind::IsADirectory => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// The commit a ref names (HEAD followed through its symbolic target), if it exists.
    pub fn read(&self, name: &RefName) -> Result<Option<ObjectId>> {
        if name.is_head() {
            return match self.head()? {
                Head::Unborn => Ok(None),
                Head::Detached(id) => Ok(Some(id)),
                Head::Symbolic(target) => self.read(&target),
            };
        }
        let path = self.path(name);
        match Self::read_file(&path)? {
            Some(text) => Ok(Some(parse_id_line(&text, &path)?)),
            None => Ok(None),
        }
    }

    pub fn head(&self) -> Result<Head> {
        let path = self.root.join("HEAD");
        let Some(text) = Self::read_file(&path)? else { return Ok(Head::Unborn) };
        let text = text.trim();
        if text.is_empty() {
            return Ok(Head::Unborn);
        }
        if let Some(target) = text.strip_prefix("ref: ") {
            let target = RefName::new(target)?;
            // `ref: HEAD` would send `read` round in circles until the stack overflows.
            if target.is_head() {
                return Err(Error::BadRefName { name: text.into(), reason: "HEAD names itself" });
            }
            return Ok(Head::Symbolic(target));
        }
        Ok(Head::Detached(parse_id_line(text, &path)?))
    }

    /// Point HEAD at a ref or a commit (no compare-and-swap: the last command wins).
    pub fn set_head(&self, head: &Head, message: &str) -> Result<()> {
        let old = self.read(&RefName::head())?;
        let text = match head {
            Head::Unborn => String::new(),
            Head::Symbolic(r) => format!("ref: refs/{r}\n"),
            Head::Detached(id) => format!("{id}\n"),
        };
        let lock = LockFile::acquire(&self.root.join("HEAD"), "HEAD", LOCK_WAIT)?;
        let new = match head {
            Head::Unborn => None,
            Head::Symbolic(r) => self.read(r)?,
            Head::Detached(id) => Some(*id),
        };
        self.append_reflog(&RefName::head(), old, new, message)?;
        lock.commit(text.as_bytes())
    }

    /// All refs whose name starts with `prefix` (`""` for all, `"runs/"`, `"tags/"`), sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<(RefName, ObjectId)>> {
        let mut out = Vec::new();
        let base = self.root.join("refs");
        walk_files(&base, &base, &mut |rel, path| {
            if !rel.starts_with(prefix) || rel.ends_with(".lock") {
                return Ok(());
            }
            let Ok(name) = RefName::new(rel) else { return Ok(()) };
            if let Some(text) = Self::read_file(path)? {
                out.push((name, parse_id_line(&text, path)?));
            }
            Ok(())
        })?;
        out.sort();
        Ok(out)
    }

    /// Set `name` to `new` if it currently matches `expect`, under the ref's lock, and log it.
    pub fn update(
        &self,
        name: &RefName,
        new: ObjectId,
        expect: Expect,
        message: &str,
    ) -> Result<()> {
        let path = self.path(name);
        let lock = LockFile::acquire(&path, name.as_str(), LOCK_WAIT)?;
        let current = self.read(name)?;
        check_expect(name, expect, current)?;
        self.append_reflog(name, current, Some(new), message)?;
        lock.commit(format!("{new}\n").as_bytes())
    }

    /// Delete `name` if it matches `expect`; its reflog stays (with a deletion line).
    pub fn delete(&self, name: &RefName, expect: Expect, message: &str) -> Result<ObjectId> {
        let path = self.path(name);
        let lock = LockFile::acquire(&path, name.as_str(), LOCK_WAIT)?;
        let current = self.read(name)?;
        let Some(old) = current else {
            return Err(Error::RefNotFound { name: name.to_string() });
        };
        check_expect(name, expect, current)?;
        self.append_reflog(name, current, None, message)?;
        lock.delete_target()?;
        Ok(old)
    }

    fn append_reflog(
        &self,
        name: &RefName,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        message: &str,
    ) -> Result<()> {
        let path = self.log_path(name);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        create_dirs(&dir)?;
        let existed = path.exists();
        let fmt_id = |id: Option<ObjectId>| id.map(|i| i.to_hex()).unwrap_or_else(|| "-".into());
        let line = format!(
            "{} {} {} {}\n",
            fmt_id(old),
            fmt_id(new),
            chrono::Utc::now().timestamp(),
            message.replace('\n', " ")
        );
        let mut f = OpenOptions::new().create(true).append(true).open(&path).at(&path)?;
        f.write_all(line.as_bytes()).at(&path)?;
        f.sync_all().at(&path)?;
        if !existed {
            fsync_dir(&dir)?;
        }
        Ok(())
    }

    /// The reflog of `name`, oldest first. Torn or foreign lines are skipped.
    pub fn reflog(&self, name: &RefName) -> Result<Vec<ReflogEntry>> {
        let path = self.log_path(name);
        let Some(text) = Self::read_file(&path)? else { return Ok(Vec::new()) };
        Ok(text.lines().filter_map(parse_reflog_line).collect())
    }

    /// Every reflog in the store, with whether its ref still exists (for gc).
    pub fn all_reflogs(&self) -> Result<Vec<(RefName, Vec<ReflogEntry>, bool)>> {
        let base = self.root.join("logs");
        let mut names = Vec::new();
        walk_files(&base, &base, &mut |rel, _| {
            let rel = rel.strip_prefix("refs/").unwrap_or(rel);
            if let Ok(n) = RefName::new(rel) {
                names.push(n);
            }
            Ok(())
        })?;
        let mut out = Vec::new();
        for n in names {
            let log = self.reflog(&n)?;
            let exists = n.is_head() || self.path(&n).is_file();
            out.push((n, log, exists));
        }
        Ok(out)
    }

    /// Remove the reflog of a deleted ref (gc, after the grace period).
    pub fn drop_reflog(&self, name: &RefName) -> Result<()> {
        let p = self.log_path(name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(p, e)),
        }
    }

    /// What is wrong with the refs themselves (fsck): a ref that its reflog says exists but
    /// is gone (deleted by hand, not by `exp rm`) or is not a file; a folder where a run or
    /// tag ref belongs; HEAD naming a ref that does not exist.
    pub fn problems(&self) -> Result<Vec<(Option<ObjectId>, String)>> {
        let mut out = Vec::new();
        let mut named = std::collections::HashSet::new();
        for (name, log, _) in self.all_reflogs()? {
            let Some(last) = log.last().filter(|e| e.new.is_some() && !name.is_head()) else {
                continue;
            };
            let id = last.new;
            let path = self.path(&name);
            let what = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => continue,
                Ok(_) => "is not a file",
                // An update killed between its reflog line and its rename leaves the ref as it
                // was: a creation (no old value) then leaves no file, which is no damage. A ref
                // that had a value before its last update has a file unless someone deleted it.
                Err(e) if e.kind() == ErrorKind::NotFound && last.old.is_none() => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => "is missing",
                Err(e) => return Err(Error::io(path, e)),
            };
            out.push((
                id,
                format!(
                    "ref {name} {what} ({}); its reflog says it names {} and no `exp rm` \
                     deleted it",
                    path.display(),
                    id.map(|i| i.to_hex()).unwrap_or_default()
                ),
            ));
            named.insert(name);
        }
        for kind in ["runs", "tags"] {
            let dir = self.root.join("refs").join(kind);
            let Some(rd) = read_dir_if_exists(&dir)? else { continue };
            for entry in rd {
                let entry = entry.at(&dir)?;
                let name = format!("{kind}/{}", entry.file_name().to_string_lossy());
                let known = RefName::new(&name).is_ok_and(|n| named.contains(&n));
                if entry.file_type().at(&entry.path())?.is_dir() && !known {
                    let path = entry.path();
                    out.push((
                        None,
                        format!("ref {name} is a folder ({}), not a ref", path.display()),
                    ));
                }
            }
        }
        if let Head::Symbolic(target) = self.head()?
            && self.read(&target)?.is_none()
        {
            out.push((None, format!("HEAD names {target}, which does not exist")));
        }
        Ok(out)
    }

    /// Lock files present right now (fsck reports them as possibly stale).
    pub fn lock_files(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        if self.root.join("HEAD.lock").exists() {
            out.push(self.root.join("HEAD.lock"));
        }
        let base = self.root.join("refs");
        walk_files(&base, &base, &mut |rel, path| {
            if rel.ends_with(".lock") {
                out.push(path.to_path_buf());
            }
            Ok(())
        })?;
        Ok(out)
    }
}

fn check_expect(name: &RefName, expect: Expect, current: Option<ObjectId>) -> Result<()> {
    let show = |id: Option<ObjectId>| id.map(|i| i.short()).unwrap_or_else(|| "nothing".into());
    let ok = match expect {
        Expect::Any => true,
        Expect::Absent => current.is_none(),
        Expect::Value(v) => current == Some(v),
    };
    if ok {
        return Ok(());
    }
    let expected = match expect {
        Expect::Value(v) => v.short(),
        _ => "nothing".into(),
    };
    Err(Error::RefChanged { name: name.to_string(), expected, found: show(current) })
}

fn parse_reflog_line(line: &str) -> Option<ReflogEntry> {
    let mut it = line.splitn(4, ' ');
    let id = |s: &str| if s == "-" { Some(None) } else { s.parse().ok().map(Some) };
    let old = id(it.next()?)?;
    let new = id(it.next()?)?;
    let time = it.next()?.parse().ok()?;
    Some(ReflogEntry { old, new, time, message: it.next().unwrap_or("").to_string() })
}

/// Visit every file under `dir`, passing its `/`-separated path relative to `base`.
fn walk_files(base: &Path, dir: &Path, f: &mut dyn FnMut(&str, &Path) -> Result<()>) -> Result<()> {
    let Some(rd) = read_dir_if_exists(dir)? else { return Ok(()) };
    for entry in rd {
        let entry = entry.at(dir)?;
        let path = entry.path();
        let ft = entry.file_type().at(&path)?;
        if ft.is_dir() {
            walk_files(base, &path, f)?;
        } else if ft.is_file() {
            let rel = path.strip_prefix(base).unwrap_or(&path);
            let rel = rel.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
            f(&rel, &path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> ObjectId {
        ObjectId([b; 32])
    }

    #[test]
    fn updates_compare_and_swap_and_log_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let refs = Refs::new(dir.path().to_path_buf());
        let r = RefName::run("r1").unwrap();
        refs.update(&r, id(1), Expect::Absent, "commit").unwrap();
        assert!(matches!(
            refs.update(&r, id(2), Expect::Absent, "x"),
            Err(Error::RefChanged { .. })
        ));
        assert!(matches!(
            refs.update(&r, id(2), Expect::Value(id(9)), "x"),
            Err(Error::RefChanged { .. })
        ));
        refs.update(&r, id(2), Expect::Value(id(1)), "commit").unwrap();
        assert_eq!(refs.read(&r).unwrap(), Some(id(2)));
        assert_eq!(refs.list("runs/").unwrap(), vec![(r.clone(), id(2))]);
        refs.delete(&r, Expect::Any, "rm").unwrap();
        assert_eq!(refs.read(&r).unwrap(), None);
        let log = refs.reflog(&r).unwrap();
        assert_eq!(log.len(), 3);
        assert_eq!((log[2].old, log[2].new), (Some(id(2)), None));
    }

    #[test]
    fn head_follows_its_symbolic_target() {
        let dir = tempfile::tempdir().unwrap();
        let refs = Refs::new(dir.path().to_path_buf());
        assert_eq!(refs.head().unwrap(), Head::Unborn);
        let r = RefName::run("r1").unwrap();
        refs.update(&r, id(1), Expect::Any, "c").unwrap();
        refs.set_head(&Head::Symbolic(r.clone()), "checkout").unwrap();
        assert_eq!(refs.read(&RefName::head()).unwrap(), Some(id(1)));
        assert_eq!(refs.reflog(&RefName::head()).unwrap().len(), 1);
    }

    #[test]
    fn a_head_naming_itself_is_an_error_not_a_stack_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let refs = Refs::new(dir.path().to_path_buf());
        for text in ["ref: HEAD\n", "ref: refs/HEAD\n"] {
            fs::write(dir.path().join("HEAD"), text).unwrap();
            assert!(matches!(refs.read(&RefName::head()), Err(Error::BadRefName { .. })));
        }
    }

    #[test]
    fn ref_names_refuse_paths_that_escape() {
        for bad in ["runs/..", "runs/a/../../x", "runs/.hidden", "runs/a b", "x", "runs/a.lock"] {
            assert!(RefName::new(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(RefName::new("refs/tags/v1").unwrap().as_str(), "tags/v1");
    }
}
