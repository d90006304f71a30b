//! Push, fetch, pull and clone: moving objects and refs between the local store and a remote.
//!
//! Order is what keeps a remote readable at every instant: a push uploads packs, then their
//! indexes, and only then moves refs, each with a compare-and-swap against the version it read.
//! A push killed at any point leaves every remote ref as it was; the packs it did upload are
//! listed by their indexes and skipped by the next push. A fetch verifies every object before it
//! becomes visible locally, and moves remote-tracking refs only once everything they name is here;
//! tracking refs whose remote ref is gone are pruned (the local runs of those names never are).
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::Remote;
use super::counting::Counting;
use super::error::{Error, Result};
use super::local;
use super::pack::{self, PackBuilder, RemoteIndex};
use super::transport::{RemoteUrl, Transport, Version};
use crate::progress::Progress;
use crate::store::Repo;
use crate::store::odb::{NewPack, Odb, StageTo, Staged};
use crate::store::refs::{Expect, Head, RefName};
use crate::store::{Kind, ObjectId};

/// The remote layout version, in `exp-remote.json`.
pub const REMOTE_FORMAT: u32 = 1;
/// Packs close at about this size: large enough that a 600 MB run is a few dozen requests,
/// small enough that the packs in flight stay well under a few hundred MiB of memory.
pub const DEFAULT_PACK_BYTES: usize = 16 << 20;
/// Packs uploaded at once.
const UPLOADS: usize = 4;
/// Ranged reads in flight during a fetch.
const DOWNLOADS: usize = 6;
/// Refs and indexes read at once.
const SMALL_REQUESTS: usize = 16;
/// Bytes a ranged read may skip to merge two neighbours into one request.
const MAX_GAP: u64 = 1 << 20;
/// Upper bound of one ranged read.
const MAX_READ: u64 = 32 << 20;
/// A fetch round smaller than this shows no progress bar.
const PROGRESS_MIN: u64 = 1 << 20;

/// What happened to one ref.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefStatus {
    /// Both sides agree.
    UpToDate,
    /// The ref did not exist on the receiving side and now does.
    Created,
    /// The receiving side moved forward along history it already had.
    FastForward,
    /// A remote-tracking ref was moved to whatever the remote now says.
    Updated,
    /// The receiving side is ahead: there is nothing to send.
    Ahead,
    /// Someone else moved the remote ref first (or it names history we have not fetched).
    Rejected,
    /// Same name, different content on both sides; nothing was overwritten.
    Conflict,
    /// A remote-tracking ref removed because its ref is gone from the remote.
    Pruned,
}

impl RefStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefStatus::UpToDate => "up to date",
            RefStatus::Created => "new",
            RefStatus::FastForward => "fast-forward",
            RefStatus::Updated => "updated",
            RefStatus::Ahead => "already ahead",
            RefStatus::Rejected => "rejected: remote changed, fetch first",
            RefStatus::Conflict => "conflict: different content on both sides",
            RefStatus::Pruned => "pruned: gone from the remote",
        }
    }
}

/// One ref's outcome: its name (`runs/ID`, `tags/NAME`), the value before and after.
#[derive(Clone, Debug, Serialize)]
pub struct RefUpdate {
    pub name: String,
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
    pub status: RefStatus,
}

/// What a command cost on the wire.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Transfer {
    pub objects: u64,
    /// Object bytes sent or received (compressed, as stored).
    pub bytes: u64,
    pub packs: u64,
    pub requests: u64,
}

#[derive(Debug, Serialize)]
pub struct PushReport {
    pub remote: String,
    pub url: String,
    pub refs: Vec<RefUpdate>,
    pub transfer: Transfer,
}

#[derive(Debug, Serialize)]
pub struct FetchReport {
    pub remote: String,
    pub url: String,
    /// Remote-tracking refs (`remotes/<remote>/…`), named without that prefix.
    pub refs: Vec<RefUpdate>,
    pub transfer: Transfer,
}

#[derive(Debug, Serialize)]
pub struct PullReport {
    pub fetch: FetchReport,
    /// Local `runs/` and `tags/` refs.
    pub refs: Vec<RefUpdate>,
}

/// Callbacks at the two points where a push can be interrupted or raced; the binary uses them
/// for fault injection in tests. The library never acts on them itself. Only in builds with the
/// `fault-injection` feature (`cargo test` has it, a release build does not).
#[cfg(feature = "fault-injection")]
#[derive(Clone, Default)]
pub struct Hooks {
    /// After each pack and its index are on the remote, with how many are there so far.
    pub after_pack: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    /// After the remote refs were read and all objects sent, before any remote ref moves.
    pub before_refs: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// What to push.
#[derive(Clone)]
pub struct PushOptions {
    /// Ref names or run ids; empty means the run HEAD names.
    pub refs: Vec<String>,
    /// Every run and tag.
    pub all: bool,
    pub pack_bytes: usize,
    #[cfg(feature = "fault-injection")]
    pub hooks: Hooks,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            refs: Vec::new(),
            all: false,
            pack_bytes: DEFAULT_PACK_BYTES,
            #[cfg(feature = "fault-injection")]
            hooks: Hooks::default(),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))
}

fn pack_key(name: &str) -> String {
    format!("packs/{name}.pack")
}

fn index_key(name: &str) -> String {
    format!("index/{name}.idx")
}

fn tracking(remote: &str, name: &str) -> Result<RefName> {
    Ok(RefName::new(&format!("remotes/{remote}/{name}"))?)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Transport {
        remote: String::new(),
        op: "run",
        key: "worker".into(),
        source: Box::new(e),
    })?
}

/// Checks `exp-remote.json`; with `create`, makes an empty location into a remote.
async fn check_remote(t: &Counting, create: bool) -> Result<()> {
    let url = t.url();
    let marker = serde_json::json!({"format": REMOTE_FORMAT, "kind": "exp-remote"}).to_string();
    let bytes = match t.get("exp-remote.json").await? {
        Some(b) => b,
        None if create => {
            if t.put_new("exp-remote.json", Bytes::from(marker + "\n")).await? {
                return Ok(());
            }
            t.get("exp-remote.json").await?.ok_or(Error::NotARemote { url: url.clone() })?
        }
        None => return Err(Error::NotARemote { url }),
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    match v.get("format").and_then(|f| f.as_u64()) {
        Some(f) if f == u64::from(REMOTE_FORMAT) => Ok(()),
        other => Err(Error::UnsupportedFormat {
            url,
            found: other.map_or_else(|| "unknown".to_string(), |f| f.to_string()),
            supported: REMOTE_FORMAT,
        }),
    }
}

/// The remote's refs under `runs/` and `tags/`, with their versions.
async fn remote_refs(t: &Counting, remote: &str) -> Result<Vec<(String, ObjectId, Version)>> {
    let keys = t.list("refs/").await?;
    let names: Vec<String> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("refs/"))
        .filter(|n| (n.starts_with("runs/") || n.starts_with("tags/")) && RefName::new(n).is_ok())
        .map(str::to_string)
        .collect();
    let found: Vec<Option<(String, ObjectId, Version)>> = futures::stream::iter(names)
        .map(|name| read_remote_ref(t, remote, name))
        .buffer_unordered(SMALL_REQUESTS)
        .try_collect()
        .await?;
    let mut out: Vec<_> = found.into_iter().flatten().collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

async fn read_remote_ref(
    t: &Counting,
    remote: &str,
    name: String,
) -> Result<Option<(String, ObjectId, Version)>> {
    let Some((bytes, version)) = t.read_ref(&format!("refs/{name}")).await? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let id = text.parse::<ObjectId>().map_err(|_| Error::BadRemoteRef {
        remote: remote.to_string(),
        name: name.clone(),
        text,
    })?;
    Ok(Some((name, id, version)))
}

/// Every object the remote's indexes list, reading only indexes not already cached.
async fn load_index(t: &Counting, cache: &Path, remote: &str) -> Result<RemoteIndex> {
    let keys = t.list("index/").await?;
    let mut index = RemoteIndex::default();
    let mut missing = Vec::new();
    for key in keys {
        let Some(name) = key.strip_prefix("index/").and_then(|k| k.strip_suffix(".idx")) else {
            continue;
        };
        if name.len() != 64 || !ObjectId::is_hex_prefix(name) {
            continue;
        }
        // A cached index is re-checked (its checksum) on every use, so a damaged cache file is
        // simply downloaded again.
        if let Ok(bytes) = std::fs::read(cache.join(format!("{name}.idx")))
            && let Ok(entries) = pack::decode_index(&bytes)
        {
            index.add(name, &entries);
            continue;
        }
        missing.push(name.to_string());
    }
    let fetched: Vec<_> = futures::stream::iter(missing)
        .map(|name| async move {
            let key = index_key(&name);
            let bytes = t.get(&key).await?;
            Ok::<_, Error>((name, key, bytes))
        })
        .buffer_unordered(SMALL_REQUESTS)
        .try_collect()
        .await?;
    for (name, key, bytes) in fetched {
        let Some(bytes) = bytes else { continue };
        let entries = pack::decode_index(&bytes).map_err(|reason| Error::CorruptIndex {
            remote: remote.to_string(),
            key: key.clone(),
            reason,
        })?;
        local::cache_index(cache, &name, &bytes)?;
        index.add(&name, &entries);
    }
    Ok(index)
}

/// Which local refs a push names.
fn refs_to_push(repo: &Repo, opts: &PushOptions) -> Result<Vec<(RefName, ObjectId)>> {
    if opts.all {
        let mut out = repo.refs.list("runs/")?;
        out.extend(repo.refs.list("tags/")?);
        return Ok(out);
    }
    if opts.refs.is_empty() {
        return match repo.refs.head()? {
            Head::Symbolic(name) => match repo.refs.read(&name)? {
                Some(id) => Ok(vec![(name, id)]),
                None => Err(Error::NothingToPush),
            },
            _ => Err(Error::NothingToPush),
        };
    }
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for text in &opts.refs {
        let candidates: Vec<String> = if text.contains('/') {
            vec![text.trim_start_matches("refs/").to_string()]
        } else {
            vec![format!("runs/{text}"), format!("tags/{text}")]
        };
        let mut found = false;
        for c in candidates {
            let Ok(name) = RefName::new(&c) else { continue };
            if let Some(id) = repo.refs.read(&name)? {
                if !(name.as_str().starts_with("runs/") || name.as_str().starts_with("tags/")) {
                    continue;
                }
                out.push((name, id));
                found = true;
                break;
            }
        }
        if !found {
            unknown.push(text.clone());
        }
    }
    if !unknown.is_empty() {
        return Err(Error::NoSuchLocalRef { refs: unknown });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// How the remote's value of a ref relates to ours.
fn classify(
    odb: &Odb,
    name: &RefName,
    local: ObjectId,
    remote: Option<ObjectId>,
) -> Result<RefStatus> {
    let Some(remote) = remote else { return Ok(RefStatus::Created) };
    if remote == local {
        return Ok(RefStatus::UpToDate);
    }
    if !odb.has(&remote) {
        return Ok(RefStatus::Rejected);
    }
    if name.as_str().starts_with("tags/") {
        return Ok(RefStatus::Conflict);
    }
    if local::is_ancestor(odb, &remote, &local)? {
        return Ok(RefStatus::FastForward);
    }
    if local::is_ancestor(odb, &local, &remote)? {
        return Ok(RefStatus::Ahead);
    }
    Ok(RefStatus::Conflict)
}

/// `exp push`.
pub fn push(
    repo: &Repo,
    remote: &Remote,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushReport> {
    let wanted = refs_to_push(repo, opts)?;
    let t = Counting::new(remote.url.open()?);
    runtime()?.block_on(push_async(repo, remote, &t, wanted, opts, progress))
}

async fn push_async(
    repo: &Repo,
    remote: &Remote,
    t: &Counting,
    wanted: Vec<(RefName, ObjectId)>,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushReport> {
    let name = remote.name.as_str();
    check_remote(t, true).await?;
    let cache = local::cache_dir(repo.store_dir(), name);
    let (theirs, index) = futures::try_join!(
        futures::stream::iter(wanted.iter().map(|(n, _)| n.as_str().to_string()))
            .map(|n| read_remote_ref(t, name, n))
            .buffer_unordered(SMALL_REQUESTS)
            .try_collect::<Vec<_>>(),
        load_index(t, &cache, name),
    )?;
    let theirs: HashMap<String, (ObjectId, Version)> =
        theirs.into_iter().flatten().map(|(n, id, v)| (n, (id, v))).collect();

    let mut updates = Vec::new();
    for (ref_name, local_id) in &wanted {
        let remote_id = theirs.get(ref_name.as_str()).map(|(id, _)| *id);
        let status = classify(&repo.odb, ref_name, *local_id, remote_id)?;
        updates.push(RefUpdate {
            name: ref_name.to_string(),
            old: remote_id,
            new: Some(*local_id),
            status,
        });
    }

    // Everything reachable from what we send, minus what the remote has: its refs' history is
    // complete on it (refs move last), and its indexes list every object that arrived.
    let sending: Vec<ObjectId> = updates
        .iter()
        .filter(|u| matches!(u.status, RefStatus::Created | RefStatus::FastForward))
        .filter_map(|u| u.new)
        .collect();
    let mut stop: HashSet<ObjectId> =
        theirs.values().map(|(id, _)| *id).filter(|id| repo.odb.has(id)).collect();
    // What the remote's refs named at our last fetch or push (our tracking refs) is there with
    // its whole history too (remotes are never collected): without these stops, pushing one new
    // run walked every run before it, since a run's first commit has the previous run as parent.
    let prefix = format!("remotes/{name}/");
    stop.extend(
        repo.refs.list(&prefix)?.into_iter().map(|(_, id)| id).filter(|id| repo.odb.has(id)),
    );
    let odb = repo.odb.clone();
    let objects: Vec<ObjectId> = {
        let all = blocking(move || local::reachable(&odb, &sending, &stop)).await?;
        all.into_iter().filter(|id| !index.contains(id)).collect()
    };

    let mut transfer = Transfer::default();
    if !objects.is_empty() {
        let (packs, sent_objects, sent_bytes) =
            upload(repo, t, name, objects, opts, progress).await?;
        transfer.packs = packs;
        transfer.objects = sent_objects;
        transfer.bytes = sent_bytes;
    }

    #[cfg(feature = "fault-injection")]
    if let Some(hook) = &opts.hooks.before_refs {
        hook();
    }
    let moves: Vec<usize> = (0..updates.len())
        .filter(|&i| matches!(updates[i].status, RefStatus::Created | RefStatus::FastForward))
        .collect();
    let results: Vec<(usize, bool)> = futures::stream::iter(moves)
        .map(|i| {
            let u = &updates[i];
            let expected = theirs.get(&u.name).map(|(_, v)| v.clone());
            let value = u.new.map(|id| format!("{id}\n")).unwrap_or_default();
            let write = t.write_ref(&format!("refs/{}", u.name), Bytes::from(value), expected);
            async move { write.await.map(|ok| (i, ok)) }
        })
        .buffer_unordered(SMALL_REQUESTS)
        .try_collect()
        .await?;
    for (i, ok) in results {
        if !ok {
            updates[i].status = RefStatus::Rejected;
        }
    }
    for u in &updates {
        let landed =
            matches!(u.status, RefStatus::Created | RefStatus::FastForward | RefStatus::UpToDate);
        if landed && let Some(id) = u.new {
            let track = tracking(name, &u.name)?;
            if repo.refs.read(&track)? != Some(id) {
                repo.refs.update(&track, id, Expect::Any, &format!("push {name}"))?;
            }
        }
    }
    transfer.requests = t.stats().requests();
    Ok(PushReport { remote: name.to_string(), url: t.url(), refs: updates, transfer })
}

/// Packs `objects` and uploads packs then indexes, several at once. Returns (packs, objects,
/// bytes) sent.
async fn upload(
    repo: &Repo,
    t: &Counting,
    remote: &str,
    objects: Vec<ObjectId>,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<(u64, u64, u64)> {
    let odb = repo.odb.clone();
    let total: u64 = {
        let odb = odb.clone();
        let ids = objects.clone();
        blocking(move || ids.iter().map(|id| Ok(odb.stored_size(id)?)).sum::<Result<u64>>()).await?
    };
    let count = objects.len() as u64;
    progress.start("pushing", total, true);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<pack::Pack>(1);
    let target = opts.pack_bytes.max(1);
    // Reading and packing is blocking file work; it runs one pack ahead of the uploads.
    let producer = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut builder = PackBuilder::new();
        for id in objects {
            let raw = odb.read_raw(&id)?;
            builder.push(id, &raw);
            if builder.len() >= target {
                let full = std::mem::take(&mut builder);
                if tx.blocking_send(full.finish()).is_err() {
                    return Ok(());
                }
            }
        }
        if !builder.is_empty() {
            let _ = tx.blocking_send(builder.finish());
        }
        Ok(())
    });
    let packs = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let done_packs = AtomicU64::new(0);
    let done_objects = AtomicU64::new(0);
    let cache = local::cache_dir(repo.store_dir(), remote);
    let uploaded: Result<Vec<u64>> = packs
        .map(|p| {
            let (done_packs, done_objects, cache) = (&done_packs, &done_objects, &cache);
            async move {
                t.put(&pack_key(&p.name), p.bytes.clone()).await?;
                t.put(&index_key(&p.name), p.index.clone()).await?;
                let (dir, name, index) = (cache.clone(), p.name.clone(), p.index.clone());
                blocking(move || local::cache_index(&dir, &name, &index)).await?;
                let packs_sent = done_packs.fetch_add(1, Ordering::SeqCst) + 1;
                let objs = done_objects.fetch_add(p.entries.len() as u64, Ordering::SeqCst)
                    + p.entries.len() as u64;
                let bytes: u64 = p.entries.iter().map(|e| e.len).sum();
                progress.advance(bytes);
                progress.status(&format!("{objs}/{count} objects"));
                #[cfg(not(feature = "fault-injection"))]
                let _ = packs_sent;
                #[cfg(feature = "fault-injection")]
                if let Some(hook) = &opts.hooks.after_pack {
                    hook(packs_sent);
                }
                Ok(bytes)
            }
        })
        .buffer_unordered(UPLOADS)
        .try_collect()
        .await;
    progress.finish();
    let produced = producer.await.map_err(|e| Error::Transport {
        remote: remote.to_string(),
        op: "pack",
        key: "objects".into(),
        source: Box::new(e),
    })?;
    let sizes = uploaded?;
    produced?;
    Ok((done_packs.load(Ordering::SeqCst), done_objects.load(Ordering::SeqCst), sizes.iter().sum()))
}

/// `exp fetch`: brings every remote run and tag here, under `remotes/<remote>/`.
pub fn fetch(repo: &Repo, remote: &Remote, progress: &dyn Progress) -> Result<FetchReport> {
    let t = Counting::new(remote.url.open()?);
    runtime()?.block_on(fetch_async(repo, remote, &t, progress))
}

async fn fetch_async(
    repo: &Repo,
    remote: &Remote,
    t: &Counting,
    progress: &dyn Progress,
) -> Result<FetchReport> {
    let name = remote.name.as_str();
    check_remote(t, false).await?;
    let cache = local::cache_dir(repo.store_dir(), name);
    let (theirs, index) = futures::try_join!(remote_refs(t, name), load_index(t, &cache, name))?;

    // A ref needs objects unless something local that is known complete already names its value:
    // its tracking ref (moved only after a complete fetch) or any local ref.
    let mut complete: HashSet<ObjectId> =
        repo.refs.list("")?.into_iter().map(|(_, id)| id).collect();
    complete.extend(repo.refs.read(&RefName::head())?);
    let roots: Vec<(ObjectId, Arc<str>)> = theirs
        .iter()
        .filter(|(_, id, _)| !complete.contains(id))
        .map(|(n, id, _)| (*id, Arc::from(n.as_str())))
        .collect();
    let mut transfer = download(&repo.odb, t, name, &index, roots, &complete, progress).await?;

    let mut refs = Vec::new();
    for (ref_name, id, _) in &theirs {
        let track = tracking(name, ref_name)?;
        let old = repo.refs.read(&track)?;
        let status = match old {
            None => RefStatus::Created,
            Some(o) if o == *id => RefStatus::UpToDate,
            Some(_) => RefStatus::Updated,
        };
        if status != RefStatus::UpToDate {
            repo.refs.update(&track, *id, Expect::Any, &format!("fetch {name}"))?;
        }
        refs.push(RefUpdate { name: ref_name.clone(), old, new: Some(*id), status });
    }
    prune(repo, name, &theirs, &mut refs)?;
    transfer.requests = t.stats().requests();
    Ok(FetchReport { remote: name.to_string(), url: t.url(), refs, transfer })
}

/// Removes the tracking refs of `remote` whose ref the remote no longer has (deleted there, by
/// hand or by another user), as `git fetch --prune` does, but always: otherwise they would
/// stay forever. `theirs` is the remote's complete listing, read in this fetch. Only tracking
/// refs go: a local run of the same name stays, and the commit stays reachable from the
/// tracking ref's reflog until gc.
fn prune(
    repo: &Repo,
    remote: &str,
    theirs: &[(String, ObjectId, Version)],
    refs: &mut Vec<RefUpdate>,
) -> Result<()> {
    let present: HashSet<&str> = theirs.iter().map(|(n, _, _)| n.as_str()).collect();
    let prefix = format!("remotes/{remote}/");
    for (track, id) in repo.refs.list(&prefix)? {
        let Some(name) = track.as_str().strip_prefix(&prefix) else { continue };
        let fetched = name.starts_with("runs/") || name.starts_with("tags/");
        if !fetched || present.contains(name) {
            continue;
        }
        match repo.refs.delete(&track, Expect::Value(id), &format!("fetch {remote}: pruned")) {
            Ok(_) => refs.push(RefUpdate {
                name: name.to_string(),
                old: Some(id),
                new: None,
                status: RefStatus::Pruned,
            }),
            // A concurrent fetch or push moved or removed it first: its view is newer.
            Err(
                crate::store::Error::RefChanged { .. } | crate::store::Error::RefNotFound { .. },
            ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Downloads what is missing below `roots`, round by round (commits, then trees, then blobs):
/// each round is a few ranged reads, merged by pack. Objects already here are walked locally,
/// so an interrupted earlier fetch is completed rather than trusted, except below a commit a
/// local ref names (`complete`: refs move only after their objects are durable): without that
/// stop, fetching one new run walked every run before it (its parent is the previous run).
async fn download(
    odb: &Odb,
    t: &Counting,
    remote: &str,
    index: &RemoteIndex,
    roots: Vec<(ObjectId, Arc<str>)>,
    complete: &HashSet<ObjectId>,
    progress: &dyn Progress,
) -> Result<Transfer> {
    let mut transfer = Transfer::default();
    // Before the first look at what the store has: gc must not delete what this reuses.
    odb.hold_for_writing()?;
    // Everything a fetch brings goes into one new pack.
    let pack = Arc::new(odb.new_pack());
    let mut staged: Vec<Staged> = Vec::new();
    let mut seen: HashSet<ObjectId> = HashSet::new();
    // Each wanted object carries the ref that led to it, for the error should the remote lack it.
    let mut frontier: Vec<(ObjectId, Arc<str>)> =
        roots.into_iter().filter(|(id, _)| seen.insert(*id)).collect();
    while !frontier.is_empty() {
        let (present, absent): (Vec<_>, Vec<_>) = frontier
            .into_iter()
            .filter(|(id, _)| !complete.contains(id))
            .partition(|(id, _)| odb.has(id));
        let mut found: Vec<(ObjectId, Arc<str>)> = {
            let odb = odb.clone();
            blocking(move || {
                let mut out = Vec::new();
                for (id, via) in present {
                    // Blobs have no links: their header says so without reading them.
                    if odb.header(&id)?.0 == Kind::Blob {
                        continue;
                    }
                    out.extend(
                        local::links_of(&odb.read(&id)?).into_iter().map(|l| (l, via.clone())),
                    );
                }
                Ok(out)
            })
            .await?
        };
        let mut wanted = Vec::new();
        let mut via_of: HashMap<ObjectId, Arc<str>> = HashMap::new();
        for (id, via) in absent {
            let loc = index.get(&id).ok_or_else(|| Error::MissingOnRemote {
                remote: remote.to_string(),
                name: via.to_string(),
                id,
            })?;
            wanted.push((id, loc.clone()));
            via_of.insert(id, via);
        }
        if !wanted.is_empty() {
            let reads = pack::plan_reads(&wanted, MAX_GAP, MAX_READ);
            let total: u64 = reads.iter().map(|r| r.range.end - r.range.start).sum();
            // Rounds of a few commits and trees finish at once; only the big ones get a bar.
            let shown = total >= PROGRESS_MIN;
            if shown {
                progress.start("fetching", total, true);
            }
            let results: Vec<Received> = futures::stream::iter(reads)
                .map(|read| {
                    let odb = odb.clone();
                    let pack = pack.clone();
                    let remote = remote.to_string();
                    async move {
                        let key = pack_key(&read.pack);
                        let bytes = t.get_range(&key, read.range.clone()).await?;
                        if shown {
                            progress.advance(bytes.len() as u64);
                        }
                        blocking(move || receive(&odb, &pack, &remote, &key, &read, &bytes)).await
                    }
                })
                .buffer_unordered(DOWNLOADS)
                .try_collect()
                .await?;
            if shown {
                progress.finish();
            }
            for r in results {
                transfer.objects += r.staged.len() as u64;
                transfer.bytes += r.bytes;
                staged.extend(r.staged);
                for (link, parent) in r.links {
                    let via = via_of.get(&parent).cloned().unwrap_or_else(|| Arc::from("?"));
                    found.push((link, via));
                }
            }
        }
        frontier = found.into_iter().filter(|(id, _)| seen.insert(*id)).collect();
    }
    // Everything arrived and verified: it all becomes durable and visible as one batch, which
    // costs a few fsyncs in all rather than a few per object.
    let odb = odb.clone();
    blocking(move || Ok(odb.publish(staged, Some(&pack))?)).await?;
    Ok(transfer)
}

/// What one ranged read brought: object count, bytes, and (link, object it came from).
struct Received {
    bytes: u64,
    links: Vec<(ObjectId, ObjectId)>,
    staged: Vec<Staged>,
}

/// Verifies the objects of one ranged read and stages them (not yet visible); the caller
/// publishes everything a fetch brought at once.
fn receive(
    odb: &Odb,
    pack: &NewPack,
    remote: &str,
    key: &str,
    read: &pack::Read,
    bytes: &[u8],
) -> Result<Received> {
    let mut batch: Vec<Staged> = Vec::new();
    let mut links = Vec::new();
    let mut total = 0;
    for (id, offset, len) in &read.objects {
        let corrupt = |reason: String| Error::CorruptObject {
            remote: remote.to_string(),
            id: *id,
            pack: key.to_string(),
            reason,
        };
        let (start, end) = (*offset as usize, (*offset + *len) as usize);
        let raw = bytes
            .get(start..end)
            .ok_or_else(|| corrupt("the pack is shorter than its index says".into()))?;
        let checked = local::check_raw(id, raw).map_err(corrupt)?;
        links.extend(checked.links.into_iter().map(|l| (l, *id)));
        batch.push(odb.stage_checked(*id, raw, StageTo::Pack(pack))?);
        total += *len;
    }
    Ok(Received { bytes: total, links, staged: batch })
}

/// `exp pull`: fetch, then bring local runs and tags up to date where that loses nothing.
pub fn pull(repo: &Repo, remote: &Remote, progress: &dyn Progress) -> Result<PullReport> {
    let fetch = fetch(repo, remote, progress)?;
    let refs = integrate(repo, &fetch)?;
    Ok(PullReport { fetch, refs })
}

/// Creates or fast-forwards local refs to the fetched values; diverged ones are conflicts and
/// stay as they are (the remote's version is at `remotes/<remote>/…`).
pub fn integrate(repo: &Repo, fetch: &FetchReport) -> Result<Vec<RefUpdate>> {
    let mut out = Vec::new();
    for r in &fetch.refs {
        let Some(theirs) = r.new else { continue };
        let name = RefName::new(&r.name)?;
        let ours = repo.refs.read(&name)?;
        let status = match ours {
            None => RefStatus::Created,
            Some(o) if o == theirs => RefStatus::UpToDate,
            // Tags never move: a different value is a conflict, whatever the history says.
            Some(_) if name.as_str().starts_with("tags/") => RefStatus::Conflict,
            Some(o) if local::is_ancestor(&repo.odb, &o, &theirs)? => RefStatus::FastForward,
            Some(o) if local::is_ancestor(&repo.odb, &theirs, &o)? => RefStatus::Ahead,
            Some(_) => RefStatus::Conflict,
        };
        let message = format!("pull {}", fetch.remote);
        match status {
            RefStatus::Created => repo.refs.update(&name, theirs, Expect::Absent, &message)?,
            RefStatus::FastForward => {
                let expect = ours.map_or(Expect::Absent, Expect::Value);
                repo.refs.update(&name, theirs, expect, &message)?
            }
            _ => {}
        }
        out.push(RefUpdate { name: r.name.clone(), old: ours, new: Some(theirs), status });
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
pub struct CloneReport {
    /// The new workspace.
    pub workspace: std::path::PathBuf,
    pub fetch: FetchReport,
    pub refs: Vec<RefUpdate>,
}

/// `exp clone`: a new workspace at `dir` with `origin` set to `url`, every remote run and tag
/// fetched and given a local ref. Nothing is checked out. If anything fails, the half-made
/// workspace is removed again (only when this call created the folder).
pub fn clone(url: &str, dir: &Path, base: &Path, progress: &dyn Progress) -> Result<CloneReport> {
    let parsed = RemoteUrl::parse(url, base)?;
    let created = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::DestinationNotEmpty { path: dir.to_path_buf() });
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(Error::io(dir, e)),
    };
    let result = (|| {
        // Reach the remote before creating anything, so a wrong URL leaves no folder behind.
        let t = Counting::new(parsed.open()?);
        runtime()?.block_on(check_remote(&t, false))?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (repo, _) = Repo::init(dir)?;
        let remote = super::config::add_remote(&repo, "origin", &parsed.to_string(), base)?;
        let fetch = fetch(&repo, &remote, progress)?;
        let refs = integrate(&repo, &fetch)?;
        Ok(CloneReport { workspace: repo.workspace().to_path_buf(), fetch, refs })
    })();
    if result.is_err() {
        // Only what this call made goes: the folder it created, or the store in an empty one.
        let _ =
            std::fs::remove_dir_all(if created { dir.to_path_buf() } else { dir.join(".exprepo") });
    }
    result
}
