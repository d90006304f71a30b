//! `fsck`: re-hash every object (or, with `quick`, only parse commits and trees and check that
//! blobs exist) and check connectivity from every ref and HEAD. Reports problems, never repairs.
use std::collections::HashSet;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use super::error::{Error, Result};
use super::object::{Kind, Mode};
use super::refs::RefName;
use super::{ObjectId, Repo};

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The damaged or missing object, when there is one.
    pub object: Option<ObjectId>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FsckReport {
    pub quick: bool,
    pub objects: u64,
    pub refs: u64,
    pub problems: Vec<Problem>,
    /// Lock files present: a running exp, or one that was killed (then delete them).
    pub locks: Vec<PathBuf>,
    /// Leftovers of interrupted writes: objects/tmp files and packs without an index
    /// (harmless; gc removes them).
    pub temp_files: u64,
}

impl FsckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn problem(id: Option<ObjectId>, e: &Error) -> Problem {
    Problem { object: id, message: e.to_string() }
}

pub fn fsck(repo: &Repo, quick: bool) -> Result<FsckReport> {
    let mut problems = Vec::new();
    for (path, reason) in repo.odb.damaged_pack_indexes()? {
        problems.push(problem(None, &Error::DamagedPackIndex { path, reason }));
    }
    for (path, reason) in repo.odb.damaged_packs()? {
        problems.push(Problem {
            object: None,
            message: format!("pack {} is damaged: {reason}", path.display()),
        });
    }
    for (id, message) in repo.refs.problems()? {
        problems.push(Problem { object: id, message });
    }
    let ids = repo.odb.iter_ids()?;
    if !quick {
        let bad: Vec<Problem> = ids
            .par_iter()
            .filter_map(|id| {
                let r = match repo.odb.verify(id) {
                    Ok((Kind::Blob, _)) => Ok(()),
                    Ok(_) => repo.odb.read(id).map(|_| ()),
                    // Listed a moment ago, gone now: gc deleted it as unreachable. Whether
                    // anything still needs it is for the connectivity walk below to say.
                    Err(Error::MissingObject { .. }) => Ok(()),
                    Err(e) => Err(e),
                };
                r.err().map(|e| problem(Some(*id), &e))
            })
            .collect();
        // Everything was just verified: the damaged list becomes exactly what failed (an object
        // restored by hand is usable again). It is a hint; a read-only store keeps its old one.
        let _ = repo.odb.set_damaged(bad.iter().filter_map(|p| p.object).collect());
        problems.extend(bad);
    }
    let already_bad: HashSet<ObjectId> = problems.iter().filter_map(|p| p.object).collect();
    // Connectivity: walk from every ref; each object is visited once, and must be of the kind
    // that names it expects (a ref: a commit; a tree entry: what its mode says).
    let mut tips: Vec<(String, ObjectId)> =
        repo.refs.list("")?.into_iter().map(|(n, id)| (n.to_string(), id)).collect();
    match repo.refs.read(&RefName::head()) {
        Ok(Some(id)) => tips.push(("HEAD".into(), id)),
        Ok(None) => {}
        Err(e) => problems.push(problem(None, &e)),
    }
    let mut seen = HashSet::new();
    let mut stack: Vec<(ObjectId, Kind, String)> = Vec::new();
    for (name, id) in &tips {
        stack.push((*id, Kind::Commit, format!("ref {name}")));
    }
    while let Some((id, kind, from)) = stack.pop() {
        // Keyed by kind too: an object named as a commit by a ref and as a file by a tree is
        // checked both ways.
        if !seen.insert((id, kind)) || already_bad.contains(&id) {
            continue;
        }
        let found = match repo.odb.header(&id) {
            Ok((found, _)) => found,
            Err(Error::MissingObject { .. }) => {
                problems.push(Problem {
                    object: Some(id),
                    message: format!("object {id} is missing (named by {from})"),
                });
                continue;
            }
            Err(e) => {
                problems.push(named(id, &e, &from));
                continue;
            }
        };
        if found != kind {
            problems.push(Problem {
                object: Some(id),
                message: format!("object {id} is a {found}, but {from} needs a {kind}"),
            });
            continue;
        }
        match kind {
            Kind::Blob => {}
            Kind::Tree => match repo.odb.read_tree(&id) {
                Ok(t) => {
                    for e in t.entries {
                        let k = if e.mode == Mode::Tree { Kind::Tree } else { Kind::Blob };
                        stack.push((e.id, k, format!("entry {:?} of tree {}", e.name, id.short())));
                    }
                }
                Err(e) => problems.push(named(id, &e, &from)),
            },
            Kind::Commit => match repo.read_commit(&id) {
                Ok(c) => {
                    stack.push((c.tree, Kind::Tree, format!("commit {}", id.short())));
                    for p in c.parents {
                        stack.push((p, Kind::Commit, format!("commit {}", id.short())));
                    }
                }
                Err(e) => problems.push(named(id, &e, &from)),
            },
        }
    }
    problems.sort_by(|a, b| a.object.cmp(&b.object).then(a.message.cmp(&b.message)));
    problems.dedup_by(|a, b| a.object.is_some() && a.object == b.object);
    Ok(FsckReport {
        quick,
        objects: if quick { seen.len() as u64 } else { ids.len() as u64 },
        refs: tips.len() as u64,
        problems,
        locks: repo.refs.lock_files()?,
        temp_files: repo.odb.temp_files()?.len() as u64,
    })
}

/// A problem with object `id`, saying what named it.
fn named(id: ObjectId, e: &Error, from: &str) -> Problem {
    Problem { object: Some(id), message: format!("{e} (named by {from})") }
}
