//! Transports: the few operations a remote needs, over a folder on a shared disk or over
//! S3-compatible storage. Everything above this file (packs, push, fetch) is written once against
//! [`Transport`] and never knows which kind of remote it talks to.
//!
//! Keys are `/`-separated paths relative to the remote's root (`packs/<id>.pack`, `refs/runs/X`).
//! Data keys are content-addressed, so `put` may overwrite; only refs change meaning over time,
//! and they are written with compare-and-swap: the lock-file protocol for a folder (the lock is
//! created with `O_EXCL`, the old value checked under it, the new one renamed into place), and
//! conditional requests for S3 (`If-None-Match: *` to create, `If-Match: <etag>` to update).
use std::fmt;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig, UpdateVersion,
};

use super::error::{Error, Result};
use crate::store::atomic::{LockFile, atomic_write};

/// Where a remote lives, parsed from the URL a person typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteUrl {
    /// A folder, usually on a shared disk: `/mnt/team/exp` or `file:///mnt/team/exp`.
    Folder(PathBuf),
    /// `s3://bucket/prefix`; endpoint, region and credentials come from the AWS_* variables.
    S3 { bucket: String, prefix: String },
}

impl RemoteUrl {
    /// Parses `url`; a relative folder is made absolute against `base`, so the remote keeps
    /// meaning the same folder whichever directory exp later runs from.
    pub fn parse(url: &str, base: &Path) -> Result<RemoteUrl> {
        let bad = |reason: &str| Error::BadUrl { url: url.to_string(), reason: reason.to_string() };
        if let Some(rest) = url.strip_prefix("s3://") {
            let rest = rest.trim_end_matches('/');
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket name after s3://"));
            }
            let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c);
            if !bucket.chars().all(valid) {
                return Err(bad("a bucket name is lowercase letters, digits, '-' and '.'"));
            }
            if prefix.split('/').any(|s| s == "." || s == "..") {
                return Err(bad("'.' and '..' are not allowed in the prefix"));
            }
            let prefix = prefix.trim_matches('/').to_string();
            return Ok(RemoteUrl::S3 { bucket: bucket.to_string(), prefix });
        }
        let path = if let Some(rest) = url.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(bad("a file:// URL needs an absolute path (file:///path)"));
            }
            PathBuf::from(rest)
        } else if url.contains("://") {
            return Err(bad("only folders, file:// and s3:// remotes are supported"));
        } else if url.is_empty() {
            return Err(bad("empty URL"));
        } else {
            PathBuf::from(url)
        };
        let path = if path.is_absolute() { path } else { base.join(path) };
        Ok(RemoteUrl::Folder(normalize(&path)))
    }

    /// Opens a transport to this remote. Nothing is sent yet.
    pub fn open(&self) -> Result<Arc<dyn Transport>> {
        Ok(match self {
            RemoteUrl::Folder(root) => Arc::new(FolderTransport { root: root.clone() }),
            RemoteUrl::S3 { bucket, prefix } => Arc::new(S3Transport::new(bucket, prefix)?),
        })
    }

    /// The last path component, for `exp clone URL` without a folder name.
    pub fn base_name(&self) -> Option<String> {
        let last = match self {
            RemoteUrl::Folder(p) => p.file_name()?.to_str()?.to_string(),
            RemoteUrl::S3 { bucket, prefix } => {
                prefix.rsplit('/').find(|s| !s.is_empty()).unwrap_or(bucket).to_string()
            }
        };
        let last = last.trim_end_matches(".exprepo").to_string();
        (!last.is_empty() && last != "." && last != "..").then_some(last)
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteUrl::Folder(p) => write!(f, "{}", p.display()),
            RemoteUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RemoteUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// `a/./b/../c` -> `a/c`, lexically (the folder may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// What a ref's current version is, for compare-and-swap: the S3 ETag, or the folder ref's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(pub String);

/// The operations every kind of remote offers. All futures are `Send`, so callers can spawn them.
pub trait Transport: Send + Sync {
    /// The remote's URL, for messages.
    fn url(&self) -> String;
    /// Stores `data` at `key`, replacing what is there (used only for content-addressed keys).
    fn put(&self, key: &str, data: Bytes) -> BoxFuture<'static, Result<()>>;
    /// Stores `data` at `key` unless something is there already; says whether it wrote.
    fn put_new(&self, key: &str, data: Bytes) -> BoxFuture<'static, Result<bool>>;
    /// The bytes at `key`, or `None` when there is nothing.
    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Bytes>>>;
    /// `range` of the bytes at `key`.
    fn get_range(&self, key: &str, range: Range<u64>) -> BoxFuture<'static, Result<Bytes>>;
    /// Every key under `prefix` (a folder-like prefix ending in `/`), in no particular order.
    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>>>;
    /// A ref's bytes and version, or `None` when it does not exist.
    fn read_ref(&self, key: &str) -> BoxFuture<'static, Result<Option<(Bytes, Version)>>>;
    /// Replaces the ref at `key` with `data` if its version is still `expected` (`None`: only if
    /// it does not exist). `Ok(false)` means someone else changed it first, and nothing was written.
    fn write_ref(
        &self,
        key: &str,
        data: Bytes,
        expected: Option<Version>,
    ) -> BoxFuture<'static, Result<bool>>;
}

/// A remote in a folder. Blocking file I/O runs on tokio's blocking pool.
pub struct FolderTransport {
    root: PathBuf,
}

impl FolderTransport {
    fn transport_err(&self, op: &'static str, key: &str, e: impl Into<BoxError>) -> Error {
        Error::Transport {
            remote: self.root.display().to_string(),
            op,
            key: key.to_string(),
            source: e.into(),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(Error::Transport {
            remote: String::new(),
            op: "run",
            key: String::new(),
            source: Box::new(e),
        }),
    }
}

impl Transport for FolderTransport {
    fn url(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, key: &str, data: Bytes) -> BoxFuture<'static, Result<()>> {
        let path = self.root.join(key);
        Box::pin(blocking(move || Ok(atomic_write(&path, &data)?)))
    }

    fn put_new(&self, key: &str, data: Bytes) -> BoxFuture<'static, Result<bool>> {
        let path = self.root.join(key);
        let name = key.to_string();
        Box::pin(blocking(move || {
            // The lock makes "absent, then written" one step against other exp processes.
            let lock = LockFile::acquire(&path, &name, Duration::from_secs(10))?;
            if path.exists() {
                return Ok(false);
            }
            lock.commit(&data)?;
            Ok(true)
        }))
    }

    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Bytes>>> {
        let path = self.root.join(key);
        Box::pin(blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> BoxFuture<'static, Result<Bytes>> {
        let path = self.root.join(key);
        let short = self.transport_err("read", key, "file is shorter than its index says");
        Box::pin(blocking(move || {
            let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            // The range comes from the remote's index: check it against the file before
            // allocating for it (a forged index may claim a terabyte).
            let size = f.metadata().map_err(|e| Error::io(&path, e))?.len();
            if range.end > size || range.start > range.end {
                return Err(short);
            }
            f.seek(SeekFrom::Start(range.start)).map_err(|e| Error::io(&path, e))?;
            let len = usize::try_from(range.end.saturating_sub(range.start)).unwrap_or(usize::MAX);
            let mut buf = vec![0u8; len];
            match f.read_exact(&mut buf) {
                Ok(()) => Ok(Bytes::from(buf)),
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(short),
                Err(e) => Err(Error::io(&path, e)),
            }
        }))
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        Box::pin(blocking(move || {
            let mut out = Vec::new();
            walk(&root, &root.join(&prefix), &mut out)?;
            Ok(out)
        }))
    }

    fn read_ref(&self, key: &str) -> BoxFuture<'static, Result<Option<(Bytes, Version)>>> {
        let path = self.root.join(key);
        Box::pin(blocking(move || read_folder_ref(&path)))
    }

    fn write_ref(
        &self,
        key: &str,
        data: Bytes,
        expected: Option<Version>,
    ) -> BoxFuture<'static, Result<bool>> {
        let path = self.root.join(key);
        let name = key.trim_start_matches("refs/").to_string();
        let remote = self.url();
        Box::pin(blocking(move || {
            let lock = match LockFile::acquire(&path, &name, Duration::from_secs(10)) {
                Ok(lock) => lock,
                Err(crate::store::Error::Locked { lock, .. }) => {
                    return Err(Error::RemoteLocked {
                        remote,
                        name,
                        lock: lock.display().to_string(),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            // Under the lock nobody else can change the ref, so this check-then-write is atomic.
            let current = read_folder_ref(&path)?.map(|(_, v)| v);
            if current != expected {
                return Ok(false);
            }
            lock.commit(&data)?;
            Ok(true)
        }))
    }
}

fn read_folder_ref(path: &Path) -> Result<Option<(Bytes, Version)>> {
    match std::fs::read(path) {
        Ok(b) => {
            let version = Version(String::from_utf8_lossy(&b).into_owned());
            Ok(Some((Bytes::from(b), version)))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Collects the keys of every finished file under `dir`; temp files and locks of writers that
/// are still at work (or were killed) are not part of the remote.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".tmp-") || name.ends_with(".lock") {
            continue;
        }
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let parts: Vec<_> = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

/// A remote in an S3 bucket (AWS or any S3-compatible server), through `object_store`.
pub struct S3Transport {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
}

impl S3Transport {
    fn new(bucket: &str, prefix: &str) -> Result<S3Transport> {
        let url = format!("s3://{bucket}/{prefix}");
        // Without static keys object_store falls back to the EC2 metadata service, which on any
        // other machine means a long hang; ask for the keys instead, unless a role is configured.
        let role = [
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
        if !role {
            for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                if std::env::var_os(var).is_none() {
                    return Err(Error::NoCredentials { url, missing: var });
                }
            }
        }
        // A few quick retries: a flaky network is retried, a wrong endpoint fails in seconds.
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        };
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(retry)
            .build()
            .map_err(|e| Error::BadUrl { url: url.clone(), reason: e.to_string() })?;
        Ok(S3Transport {
            store: Arc::new(store),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn err(
        &self,
        op: &'static str,
        key: &str,
    ) -> impl Fn(object_store::Error) -> Error + Send + 'static {
        let remote = self.url();
        let key = key.to_string();
        move |e| Error::Transport {
            remote: remote.clone(),
            op,
            key: key.clone(),
            source: Box::new(e),
        }
    }
}

impl Transport for S3Transport {
    fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn put(&self, key: &str, data: Bytes) -> BoxFuture<'static, Result<()>> {
        let (store, path, err) = (self.store.clone(), self.path(key), self.err("upload", key));
        Box::pin(async move {
            store.put(&path, data.into()).await.map_err(err)?;
            Ok(())
        })
    }

    fn put_new(&self, key: &str, data: Bytes) -> BoxFuture<'static, Result<bool>> {
        let (store, path, err) = (self.store.clone(), self.path(key), self.err("create", key));
        Box::pin(async move {
            let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
            match store.put_opts(&path, data.into(), opts).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                Err(e) => Err(err(e)),
            }
        })
    }

    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Bytes>>> {
        let (store, path, err) = (self.store.clone(), self.path(key), self.err("download", key));
        Box::pin(async move {
            match store.get(&path).await {
                Ok(r) => Ok(Some(r.bytes().await.map_err(&err)?)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(err(e)),
            }
        })
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> BoxFuture<'static, Result<Bytes>> {
        let (store, path, err) = (self.store.clone(), self.path(key), self.err("download", key));
        Box::pin(async move { store.get_range(&path, range).await.map_err(err) })
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>>> {
        let (store, err) = (self.store.clone(), self.err("list", prefix));
        let root = self.prefix.clone();
        let path = self.path(prefix.trim_end_matches('/'));
        Box::pin(async move {
            let metas: Vec<_> = store.list(Some(&path)).try_collect().await.map_err(err)?;
            let strip = if root.is_empty() { String::new() } else { format!("{root}/") };
            Ok(metas
                .into_iter()
                .filter_map(|m| m.location.as_ref().strip_prefix(&strip).map(str::to_string))
                .collect())
        })
    }

    fn read_ref(&self, key: &str) -> BoxFuture<'static, Result<Option<(Bytes, Version)>>> {
        let (store, path, err) = (self.store.clone(), self.path(key), self.err("read ref", key));
        Box::pin(async move {
            match store.get(&path).await {
                Ok(r) => {
                    let etag = r.meta.e_tag.clone().unwrap_or_default();
                    let bytes = r.bytes().await.map_err(&err)?;
                    Ok(Some((bytes, Version(etag))))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(err(e)),
            }
        })
    }

    fn write_ref(
        &self,
        key: &str,
        data: Bytes,
        expected: Option<Version>,
    ) -> BoxFuture<'static, Result<bool>> {
        let (store, path, err) = (self.store.clone(), self.path(key), self.err("update ref", key));
        Box::pin(async move {
            let mode = match expected {
                None => PutMode::Create,
                Some(Version(etag)) => {
                    PutMode::Update(UpdateVersion { e_tag: Some(etag), version: None })
                }
            };
            let opts = PutOptions { mode, ..Default::default() };
            match store.put_opts(&path, data.into(), opts).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => Ok(false),
                Err(e) => Err(err(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_folders_and_buckets() {
        let base = Path::new("/work/ws");
        assert_eq!(
            RemoteUrl::parse("s3://team-bucket/exp/runs/", base).unwrap(),
            RemoteUrl::S3 { bucket: "team-bucket".into(), prefix: "exp/runs".into() }
        );
        assert_eq!(
            RemoteUrl::parse("s3://b", base).unwrap(),
            RemoteUrl::S3 { bucket: "b".into(), prefix: String::new() }
        );
        assert_eq!(
            RemoteUrl::parse("file:///mnt/team/exp", base).unwrap(),
            RemoteUrl::Folder("/mnt/team/exp".into())
        );
        assert_eq!(
            RemoteUrl::parse("../shared/./exp", base).unwrap(),
            RemoteUrl::Folder("/work/shared/exp".into())
        );
        for bad in ["", "s3://", "s3://Bad_Bucket/x", "https://example.com/x", "file://rel/x"] {
            assert!(RemoteUrl::parse(bad, base).is_err(), "{bad} should be rejected");
        }
        let u = RemoteUrl::parse("s3://b/team/exp", base).unwrap();
        assert_eq!(u.to_string(), "s3://b/team/exp");
        assert_eq!(u.base_name().as_deref(), Some("exp"));
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn folder_refs_are_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let t = FolderTransport { root: dir.path().to_path_buf() };
        runtime().block_on(async {
            assert!(t.write_ref("refs/runs/a", Bytes::from("1\n"), None).await.unwrap());
            // A second create loses: the ref exists now.
            assert!(!t.write_ref("refs/runs/a", Bytes::from("2\n"), None).await.unwrap());
            let (bytes, v1) = t.read_ref("refs/runs/a").await.unwrap().unwrap();
            assert_eq!(&bytes[..], b"1\n");
            assert!(
                t.write_ref("refs/runs/a", Bytes::from("3\n"), Some(v1.clone())).await.unwrap()
            );
            // The old version no longer matches.
            assert!(!t.write_ref("refs/runs/a", Bytes::from("4\n"), Some(v1)).await.unwrap());
            let (bytes, _) = t.read_ref("refs/runs/a").await.unwrap().unwrap();
            assert_eq!(&bytes[..], b"3\n");
            assert_eq!(t.list("refs/").await.unwrap(), vec!["refs/runs/a".to_string()]);
        });
    }

    #[test]
    fn folder_data_reads_ranges_and_lists_only_finished_files() {
        let dir = tempfile::tempdir().unwrap();
        let t = FolderTransport { root: dir.path().to_path_buf() };
        runtime().block_on(async {
            t.put("packs/p.pack", Bytes::from("0123456789")).await.unwrap();
            std::fs::write(dir.path().join("packs/.tmp-half"), b"x").unwrap();
            assert_eq!(&t.get_range("packs/p.pack", 2..5).await.unwrap()[..], b"234");
            assert!(t.get_range("packs/p.pack", 8..20).await.is_err());
            assert_eq!(t.get("packs/none").await.unwrap(), None);
            assert_eq!(t.list("packs/").await.unwrap(), vec!["packs/p.pack".to_string()]);
            assert!(t.put_new("exp-remote.json", Bytes::from("{}")).await.unwrap());
            assert!(!t.put_new("exp-remote.json", Bytes::from("{}")).await.unwrap());
        });
    }
}
