//! The remote module's one error type: every variant names the remote, the ref, the key or the
//! object a person needs to act on, and `hint()` says what to do next.
use std::path::PathBuf;

use crate::error::Hint;
use crate::store::ObjectId;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad remote URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("bad remote name {name:?}: {reason}")]
    BadRemoteName { name: String, reason: &'static str },
    #[error("no remote named {name:?}{}", known_list(known))]
    NoSuchRemote { name: String, known: Vec<String> },
    #[error("no remote is configured")]
    NoRemotes,
    #[error("several remotes are configured ({}) and none is named origin", names.join(", "))]
    WhichRemote { names: Vec<String> },
    #[error("remote {name:?} already exists ({url})")]
    RemoteExists { name: String, url: String },
    #[error("{path}: bad remote config at line {line}: {message}")]
    BadConfig { path: PathBuf, line: usize, message: String },
    #[error("{url}: no S3 credentials ({missing} is not set)")]
    NoCredentials { url: String, missing: &'static str },
    #[error("{remote}: {op} {key} failed: {source}")]
    Transport {
        remote: String,
        op: &'static str,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{url} is not an exp remote (no exp-remote.json)")]
    NotARemote { url: String },
    #[error("{url} uses remote format {found}, this exp understands format {supported}")]
    UnsupportedFormat { url: String, found: String, supported: u32 },
    #[error("{remote}: pack index {key} is corrupt: {reason}")]
    CorruptIndex { remote: String, key: String, reason: String },
    #[error("{remote}: object {id} in {pack} is corrupt ({reason}); nothing from it was stored")]
    CorruptObject { remote: String, id: ObjectId, pack: String, reason: String },
    #[error("{remote}: {name} names object {id}, which no pack on the remote holds")]
    MissingOnRemote { remote: String, name: String, id: ObjectId },
    #[error("{remote}: ref {name} holds {text:?}, not an object id")]
    BadRemoteRef { remote: String, name: String, text: String },
    #[error("{remote}: {name} is locked by {lock}")]
    RemoteLocked { remote: String, name: String, lock: String },
    #[error("nothing to push: HEAD names no run")]
    NothingToPush,
    #[error("{} not in this store", refs.join(", "))]
    NoSuchLocalRef { refs: Vec<String> },
    #[error("rejected: remote changed, fetch first ({remote}: {})", refs.join(", "))]
    Rejected { remote: String, refs: Vec<String> },
    #[error("conflict: same run id, different content on both sides ({remote}: {})", refs.join(", "))]
    Conflict { remote: String, refs: Vec<String> },
    #[error("{path} already exists and is not empty")]
    DestinationNotEmpty { path: PathBuf },
    #[error("cannot name a folder after {url}")]
    NoCloneName { url: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() { String::new() } else { format!(" (known: {})", known.join(", ")) }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        Some(match self {
            Error::BadUrl { .. } => {
                "use a folder (/mnt/team/exp or file:///mnt/team/exp) or s3://bucket/prefix"
                    .to_string()
            }
            Error::BadRemoteName { .. } => {
                "use letters, digits and . _ - (no '/', no leading '.')".to_string()
            }
            Error::NoSuchRemote { .. } | Error::NoRemotes => {
                "`exp remote -v` lists remotes; add one with `exp remote add origin URL`"
                    .to_string()
            }
            Error::WhichRemote { names } => {
                format!("name the remote: e.g. `exp push {}`", names.first().map_or("NAME", |n| n))
            }
            Error::RemoteExists { name, .. } => {
                format!("pick another name, or remove the old one first: exp remote remove {name}")
            }
            Error::BadConfig { path, .. } => format!("fix {} by hand", path.display()),
            Error::NoCredentials { .. } => {
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL, \
                 AWS_REGION, AWS_ALLOW_HTTP=true for a non-AWS endpoint)"
                    .to_string()
            }
            Error::Transport { .. } => {
                "check the URL (`exp remote -v`), that the server is reachable and the AWS_* \
                 credentials; then run the command again: it resumes where it stopped"
                    .to_string()
            }
            Error::NotARemote { .. } => {
                "check the URL; a new remote becomes one on the first `exp push`".to_string()
            }
            Error::UnsupportedFormat { .. } => "upgrade exp (see docs/FORMAT.md)".to_string(),
            Error::CorruptIndex { remote, key, .. } => format!(
                "the remote {remote} is damaged: delete {key} there and push again from a store \
                 that has the runs (`exp push --all`); the objects are then uploaded anew"
            ),
            Error::CorruptObject { remote, pack, .. } => {
                let stem = pack.trim_start_matches("packs/").trim_end_matches(".pack");
                format!(
                    "the remote {remote} is damaged: delete packs/{stem}.pack and index/{stem}.idx \
                     there, then push again from a store that has the run (`exp push --all`)"
                )
            }
            Error::MissingOnRemote { remote, .. } => format!(
                "the remote {remote} is incomplete: push again from a store that has the run \
                 (`exp push --all`)"
            ),
            Error::BadRemoteRef { remote, name, .. } => format!(
                "the remote {remote} is damaged: push {name} again from a store that has it"
            ),
            Error::RemoteLocked { lock, .. } => format!(
                "another push is updating it; if none is running (a killed push leaves its lock \
                 behind), delete the lock: rm {lock}"
            ),
            Error::NothingToPush => {
                "name what to push (`exp push origin RUN_ID`) or push everything: exp push --all"
                    .to_string()
            }
            Error::NoSuchLocalRef { .. } => "`exp list` shows every run and tag".to_string(),
            Error::Rejected { remote, .. } => format!(
                "someone pushed first: run `exp pull {remote}` to bring in their runs, then push again"
            ),
            Error::Conflict { remote, refs } => {
                let r = refs.first().map_or("runs/ID", |r| r.as_str());
                format!(
                    "nothing was overwritten: yours is {r}, theirs is remotes/{remote}/{r}; compare \
                     them with `exp diff {r} remotes/{remote}/{r}`, and keep yours under a new id \
                     (e.g. `exp tag NAME {r}`) before taking theirs"
                )
            }
            Error::DestinationNotEmpty { .. } => {
                "clone into a new or empty folder: exp clone URL DIR".to_string()
            }
            Error::NoCloneName { .. } => "name the folder: exp clone URL DIR".to_string(),
            Error::Store(e) => return e.hint(),
            Error::Io { .. } => return None,
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
