//! Crash safety in one place: every write to the store goes through here.
//!
//! - `atomic_write`: temp file in the same folder, fsync, rename, fsync the folder. A reader (or
//!   a crash) sees the old bytes or the new bytes, never a mix.
//! - `LockFile`: git's lock-file protocol. `<path>.lock` is created with `O_EXCL`, so exactly one
//!   process holds it; the new content is written into the lock, fsynced, and renamed over
//!   `<path>`, which both publishes the content and releases the lock. A lock whose holder was
//!   killed stays behind; it is reported (`Error::Locked`, with how to remove it), never broken
//!   silently, because we cannot tell a slow writer from a dead one.
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, SystemTime};

use tempfile::NamedTempFile;

use super::error::{Error, IoContext, Result};

/// fsync a folder, so a rename or create inside it survives a power cut.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).at(dir)
}

/// Start writing `file`'s dirty pages to disk without waiting (Linux `sync_file_range`), so a
/// batch of new objects is already on its way when `wait_writeback` asks for it.
#[cfg(target_os = "linux")]
pub fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call only schedules I/O. Failure is harmless: the
    // later `wait_writeback` and fsync still make the data durable.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Elsewhere there is no way to start writeback early: `wait_writeback` does all the work.
#[cfg(not(target_os = "linux"))]
pub fn start_writeback(_file: &File) {}

/// Wait until `path`'s data has been written to the device. Followed by one fsync that commits
/// the journal and flushes the device cache, this makes a whole batch durable for the price of
/// one fsync (git's "batch" fsync method) instead of one per file.
#[cfg(target_os = "linux")]
pub fn wait_writeback(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(path).at(path)?;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: `f` is an open file descriptor for the duration of the call.
    let rc = unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, flags) };
    if rc != 0 {
        // Not supported here (some file systems): fall back to a full fsync of this file.
        return f.sync_all().at(path);
    }
    Ok(())
}

/// Without `sync_file_range` (macOS, the BSDs): a full fsync of the file, which is as durable
/// and only slower, one fsync per file instead of one per batch.
#[cfg(not(target_os = "linux"))]
pub fn wait_writeback(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).at(path)
}

/// Create the parent folders of `path` (fsyncing each new one's parent).
pub fn create_dirs(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(path) {
        Ok(()) => {
            if let Some(parent) = path.parent() {
                fsync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// A new temp file in `dir` whose name starts with `prefix`, created with the permissions the
/// umask allows (`0666 & !umask`, as `open` gives) rather than tempfile's private 0600: objects,
/// packs and refs become files of the store, and a folder remote is shared with teammates.
pub fn temp_file_in(dir: &Path, prefix: &str) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .at(dir)
}

/// Replace `path` with `bytes` atomically and durably.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dirs(dir)?;
    let mut tmp = temp_file_in(dir, ".tmp-")?;
    tmp.write_all(bytes).at(tmp.path())?;
    tmp.as_file().sync_all().at(tmp.path())?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    fsync_dir(dir)
}

/// A held `<path>.lock`. Dropping it without `commit` removes the lock and changes nothing.
pub struct LockFile {
    target: PathBuf,
    lock: PathBuf,
    file: Option<File>,
}

impl LockFile {
    /// Take the lock on `target`, waiting up to `wait` for another holder to finish. `name` is
    /// what the error calls the locked thing (a ref name, "the index").
    pub fn acquire(target: &Path, name: &str, wait: Duration) -> Result<LockFile> {
        let lock = lock_path(target);
        if let Some(dir) = lock.parent() {
            create_dirs(dir)?;
        }
        let deadline = std::time::Instant::now() + wait;
        loop {
            match OpenOptions::new().write(true).create_new(true).mode(0o666).open(&lock) {
                Ok(file) => {
                    return Ok(LockFile { target: target.to_path_buf(), lock, file: Some(file) });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if std::time::Instant::now() >= deadline {
                        let age_secs = fs::metadata(&lock)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| SystemTime::now().duration_since(t).ok())
                            .map(|d| d.as_secs())
                            .unwrap_or(0);
                        return Err(Error::Locked { name: name.to_string(), lock, age_secs });
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(Error::io(&lock, e)),
            }
        }
    }

    /// Write the new content, fsync it, rename it over the target and fsync the folder.
    pub fn commit(mut self, bytes: &[u8]) -> Result<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| Error::io(&self.lock, std::io::Error::other("lock already released")))?;
        file.write_all(bytes).at(&self.lock)?;
        file.sync_all().at(&self.lock)?;
        drop(file);
        fs::rename(&self.lock, &self.target).at(&self.target)?;
        if let Some(dir) = self.target.parent() {
            fsync_dir(dir)?;
        }
        Ok(())
    }

    /// Remove the target while holding the lock (for ref deletion), then release the lock.
    pub fn delete_target(mut self) -> Result<()> {
        match fs::remove_file(&self.target) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&self.target, e)),
        }
        if let Some(dir) = self.target.parent() {
            fsync_dir(dir)?;
        }
        self.file.take();
        fs::remove_file(&self.lock).at(&self.lock)
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.lock);
        }
    }
}

/// `<path>.lock`.
pub fn lock_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Hint;

    #[test]
    fn a_second_lock_waits_then_reports_the_lock_path() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ref");
        let first = LockFile::acquire(&target, "runs/a", Duration::ZERO).unwrap();
        let err = LockFile::acquire(&target, "runs/a", Duration::from_millis(30)).err().unwrap();
        assert!(matches!(&err, Error::Locked { lock, .. } if lock.ends_with("ref.lock")));
        assert!(err.hint().unwrap().contains("ref.lock"));
        first.commit(b"x\n").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"x\n");
        assert!(!lock_path(&target).exists());
    }

    #[test]
    fn dropping_a_lock_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ref");
        atomic_write(&target, b"old").unwrap();
        drop(LockFile::acquire(&target, "r", Duration::ZERO).unwrap());
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert!(!lock_path(&target).exists());
    }
}
