//! `gc`: delete objects nothing can reach any more.
//!
//! Roots: every ref, HEAD, every reflog entry younger than the grace period (so what `exp rm`
//! dropped, or a ref moved away from, stays recoverable until then), and every blob the index
//! names. The reflog of a deleted ref is removed once the deletion is older than the grace
//! period. An unreachable object is deleted only when it is older than the grace period too.
//! A concurrent `exp commit` writes objects before any ref names them; it holds the gc lock
//! (`odb::GC_LOCK`) shared until it exits and gc holds it exclusively, so whatever the grace
//! period, gc never sees a writer's objects unnamed. Stale temp files (interrupted writes) older than
//! the grace period go as well. Packs holding unreachable objects are rewritten without them.
use std::collections::HashSet;
use std::fs;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::error::{Error, Result};
use super::pack::{Entry, PackFile};
use super::refs::RefName;
use super::{ObjectId, Repo};

#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub grace_secs: u64,
    pub objects: u64,
    pub reachable: u64,
    /// Unreachable and old enough: deleted (or, on a dry run, would be).
    pub removed: Vec<ObjectId>,
    pub removed_bytes: u64,
    /// Unreachable but younger than the grace period: kept.
    pub kept_young: u64,
    pub temp_files_removed: u64,
    /// Packs merged into one because there were more than `MAX_PACKS`.
    pub packs_merged: u64,
    /// Loose objects moved into a pack because there were more than `MAX_LOOSE`.
    pub loose_packed: u64,
    /// Packs whose objects were recompressed at the denser gc level (`odb::DENSE_LEVEL`).
    pub packs_recompressed: u64,
    /// Reflogs of refs deleted longer ago than the grace period.
    pub reflogs_dropped: Vec<String>,
}

/// More packs than this are merged into one by gc.
pub const MAX_PACKS: usize = 8;
/// More loose objects than this are moved into a pack by gc.
pub const MAX_LOOSE: usize = 256;

/// How long gc waits for processes that are storing objects (commit, fetch, import) to finish.
pub const WRITERS_WAIT: Duration = Duration::from_secs(30);

pub fn gc(repo: &Repo, grace: Duration, dry_run: bool) -> Result<GcReport> {
    // Writers hold the gc lock shared from before they look at the store until their refs name
    // what they wrote: with it held exclusively, nothing unreachable here is about to be named.
    if !dry_run {
        repo.odb.lock_for_gc(WRITERS_WAIT)?;
    }
    let now = SystemTime::now();
    let cutoff = now.checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
    let cutoff_secs =
        cutoff.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut roots: Vec<ObjectId> = repo.refs.list("")?.into_iter().map(|(_, id)| id).collect();
    roots.extend(repo.refs.read(&RefName::head())?);
    let mut dropped = Vec::new();
    for (name, log, exists) in repo.refs.all_reflogs()? {
        let deleted_at = log.last().filter(|e| e.new.is_none()).map(|e| e.time);
        let expired = !exists && deleted_at.is_some_and(|t| t < cutoff_secs);
        if expired {
            dropped.push(name);
            continue;
        }
        for e in log.into_iter().filter(|e| e.time >= cutoff_secs) {
            roots.extend(e.old);
            roots.extend(e.new);
        }
    }
    roots.extend(repo.load_index().ids().copied());
    // Index entries may name blobs of files never committed; only existing ones are roots.
    roots.retain(|id| repo.odb.has(id));
    let reachable: HashSet<ObjectId> = repo.reachable_objects(&roots)?;
    let all = repo.odb.iter_ids()?;
    let mut report = GcReport {
        dry_run,
        grace_secs: grace.as_secs(),
        objects: all.len() as u64,
        reachable: reachable.len() as u64,
        removed: Vec::new(),
        removed_bytes: 0,
        kept_young: 0,
        temp_files_removed: 0,
        packs_merged: 0,
        loose_packed: 0,
        packs_recompressed: 0,
        reflogs_dropped: dropped.iter().map(|n| n.to_string()).collect(),
    };
    let mut loose_kept = Vec::new();
    for id in repo.odb.loose_ids()? {
        if reachable.contains(&id) {
            loose_kept.push(id);
            continue;
        }
        if repo.odb.modified(&id)? > cutoff {
            report.kept_young += 1;
            loose_kept.push(id);
            continue;
        }
        report.removed_bytes += repo.odb.stored_size(&id)?;
        if !dry_run {
            repo.odb.remove(&id)?;
        }
        report.removed.push(id);
    }
    // Packs: one holding unreachable objects older than the grace period (its objects were
    // written together, so the pack's age is theirs) is rewritten without them. Many packs
    // (every commit of a big run and every fetch writes one) are merged into one, keeping all
    // their objects, and so are many loose objects (small commits): lookups stay one index away
    // and the store a few files.
    let packs = repo.odb.packs()?;
    let merge_all = packs.len() > MAX_PACKS;
    let mut rewrite: Vec<(PackFile, Vec<Entry>)> = Vec::new();
    for pack in packs {
        let (live, garbage): (Vec<Entry>, Vec<Entry>) =
            pack.entries.iter().partition(|e| reachable.contains(&e.id));
        let old = pack.modified <= cutoff;
        if !garbage.is_empty() && !old {
            report.kept_young += garbage.len() as u64;
        }
        if !garbage.is_empty() && old {
            report.removed_bytes += garbage.iter().map(|e| e.len).sum::<u64>();
            report.removed.extend(garbage.iter().map(|e| e.id));
            rewrite.push((pack, live));
        } else if merge_all || !repo.odb.is_dense(&pack.pack) {
            if !repo.odb.is_dense(&pack.pack) {
                report.packs_recompressed += 1;
            }
            let all = pack.entries.clone();
            rewrite.push((pack, all));
        }
    }
    if merge_all {
        report.packs_merged = rewrite.len() as u64;
    }
    if loose_kept.len() > MAX_LOOSE {
        report.loose_packed = loose_kept.len() as u64;
    } else {
        loose_kept.clear();
    }
    if !dry_run && (!rewrite.is_empty() || !loose_kept.is_empty()) {
        repo.odb.repack(&rewrite, &loose_kept, true)?;
    }
    report.removed.sort();
    report.removed.dedup();
    for (path, modified) in repo.odb.temp_files()? {
        if modified <= cutoff {
            report.temp_files_removed += 1;
            if !dry_run {
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
    }
    if !dry_run {
        for n in &dropped {
            repo.refs.drop_reflog(n)?;
        }
    }
    Ok(report)
}

/// Parse a grace period: `0`, `30s`, `15m`, `12h`, `14d`, `2w`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 =
        num.parse().map_err(|_| format!("{text:?} is not a duration like 30s, 12h, 14d"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use s, m, h, d or w)")),
    };
    Ok(Duration::from_secs(n * secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("14d").unwrap(), Duration::from_secs(14 * 86_400));
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("d").is_err());
    }
}
