//! Named remotes, kept in `.exprepo/config` (JSON) under `"remotes"`:
//! `{"remotes": {"origin": {"url": "s3://bucket/prefix"}}}`. Other top-level keys are kept as
//! they are, so the file can grow other sections. Writes are atomic and under a lock, so two
//! `exp remote add` at once never lose one another's remote.
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use super::error::{Error, Result};
use super::transport::RemoteUrl;
use crate::store::Repo;
use crate::store::atomic::LockFile;
use crate::store::refs::{Expect, RefName};

/// A configured remote.
#[derive(Clone, Debug, Serialize)]
pub struct Remote {
    pub name: String,
    #[serde(serialize_with = "as_text")]
    pub url: RemoteUrl,
}

fn as_text<S: serde::Serializer>(url: &RemoteUrl, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&url.to_string())
}

fn config_path(store_dir: &Path) -> PathBuf {
    store_dir.join("config")
}

fn load(path: &Path) -> Result<Map<String, Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::BadConfig {
            path: path.to_path_buf(),
            line: 1,
            message: "expected a JSON object".into(),
        }),
        Err(e) => Err(Error::BadConfig {
            path: path.to_path_buf(),
            line: e.line(),
            message: e.to_string(),
        }),
    }
}

fn remotes_of(path: &Path, config: &Map<String, Value>) -> Result<Vec<Remote>> {
    let Some(remotes) = config.get("remotes") else { return Ok(Vec::new()) };
    let Some(remotes) = remotes.as_object() else {
        return Err(Error::BadConfig {
            path: path.to_path_buf(),
            line: 1,
            message: "\"remotes\" must be an object".into(),
        });
    };
    let mut out = Vec::new();
    for (name, v) in remotes {
        let url = v.get("url").and_then(Value::as_str).ok_or_else(|| Error::BadConfig {
            path: path.to_path_buf(),
            line: 1,
            message: format!("remote {name:?} has no \"url\""),
        })?;
        // Folders were stored absolute by `exp remote add`; "/" is only a fallback base.
        out.push(Remote { name: name.clone(), url: RemoteUrl::parse(url, Path::new("/"))? });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every configured remote, by name.
pub fn list_remotes(repo: &Repo) -> Result<Vec<Remote>> {
    let path = config_path(repo.store_dir());
    remotes_of(&path, &load(&path)?)
}

/// Adds remote `name` at `url` (a relative folder is taken against `base`, the current folder).
pub fn add_remote(repo: &Repo, name: &str, url: &str, base: &Path) -> Result<Remote> {
    super::check_name(name)?;
    let parsed = RemoteUrl::parse(url, base)?;
    let path = config_path(repo.store_dir());
    let lock = LockFile::acquire(&path, "the config", crate::store::refs::LOCK_WAIT)?;
    let mut config = load(&path)?;
    if let Some(old) = remotes_of(&path, &config)?.into_iter().find(|r| r.name == name) {
        return Err(Error::RemoteExists { name: name.to_string(), url: old.url.to_string() });
    }
    let remotes = config.entry("remotes").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = remotes {
        m.insert(name.to_string(), serde_json::json!({"url": parsed.to_string()}));
    }
    let text = serde_json::to_string_pretty(&Value::Object(config)).unwrap_or_default() + "\n";
    lock.commit(text.as_bytes())?;
    Ok(Remote { name: name.to_string(), url: parsed })
}

/// Removes remote `name`, its remote-tracking refs and its cached indexes. Local runs stay.
pub fn remove_remote(repo: &Repo, name: &str) -> Result<Remote> {
    let path = config_path(repo.store_dir());
    let lock = LockFile::acquire(&path, "the config", crate::store::refs::LOCK_WAIT)?;
    let mut config = load(&path)?;
    let known = remotes_of(&path, &config)?;
    let Some(removed) = known.iter().find(|r| r.name == name).cloned() else {
        return Err(Error::NoSuchRemote {
            name: name.to_string(),
            known: known.into_iter().map(|r| r.name).collect(),
        });
    };
    if let Some(Value::Object(m)) = config.get_mut("remotes") {
        m.remove(name);
    }
    let text = serde_json::to_string_pretty(&Value::Object(config)).unwrap_or_default() + "\n";
    lock.commit(text.as_bytes())?;
    for (r, id) in repo.refs.list(&format!("remotes/{name}/"))? {
        repo.refs.delete(&r, Expect::Value(id), &format!("remote remove {name}"))?;
    }
    let cache = super::local::cache_dir(repo.store_dir(), name);
    match std::fs::remove_dir_all(&cache) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(cache, e)),
    }
    Ok(removed)
}

/// The remote a command means: `name` when given, else `origin`, else the only one.
pub fn resolve_remote(repo: &Repo, name: Option<&str>) -> Result<Remote> {
    let remotes = list_remotes(repo)?;
    if let Some(name) = name {
        return remotes.iter().find(|r| r.name == name).cloned().ok_or_else(|| {
            Error::NoSuchRemote {
                name: name.to_string(),
                known: remotes.iter().map(|r| r.name.clone()).collect(),
            }
        });
    }
    if let Some(origin) = remotes.iter().find(|r| r.name == "origin") {
        return Ok(origin.clone());
    }
    match remotes.len() {
        0 => Err(Error::NoRemotes),
        1 => Ok(remotes[0].clone()),
        _ => Err(Error::WhichRemote { names: remotes.into_iter().map(|r| r.name).collect() }),
    }
}

/// The remote-tracking ref of `name` (`runs/ID`) for `remote`.
pub fn tracking_ref(remote: &str, name: &str) -> Result<RefName> {
    Ok(RefName::new(&format!("remotes/{remote}/{name}"))?)
}
