//! Output files that appear whole or not at all: written to a temporary file
//! beside the destination and renamed over it once complete, so a failure
//! (a full disk, an error mid-way, an unwritable directory) never leaves a
//! partial or empty file where the user expects a result.
//!
//! A destination that exists and is not a regular file (`/dev/stdout`, a FIFO)
//! is written in place: there is nothing to rename over.
//!
//! A stop flag ([`AtomicFile::stop_on`], set by SIGINT/SIGTERM) makes the
//! next write fail, so an interrupted write removes its temporary file
//! instead of dying with it half written.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A file being written; it appears at its path only on [`AtomicFile::commit`].
/// Dropped without a commit, it removes what it wrote.
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    /// The temporary file, `None` when writing in place.
    tmp: Option<PathBuf>,
    dest: PathBuf,
    /// Set (by a signal handler) to make the next write fail.
    stop: Option<Arc<AtomicBool>>,
}

impl AtomicFile {
    /// Starts writing `dest`: creates a hidden temporary file in its directory.
    ///
    /// # Errors
    /// The temporary file cannot be created (no such directory, no permission).
    pub fn create(dest: &Path) -> io::Result<Self> {
        // Follow a symlink, so the link stays and its target is replaced, as
        // writing through the link would.
        let dest = match std::fs::canonicalize(dest) {
            Ok(real) => real,
            Err(_) => dest.to_path_buf(),
        };
        if std::fs::metadata(&dest).is_ok_and(|m| !m.is_file()) {
            let file = OpenOptions::new().write(true).open(&dest)?;
            return Ok(AtomicFile {
                file,
                tmp: None,
                dest,
                stop: None,
            });
        }
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = dest
            .file_name()
            .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
        let pid = std::process::id();
        let mut n = 0u32;
        loop {
            let tmp = dir.join(format!(".{name}.{pid}.{n}.tmp"));
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(file) => {
                    // A file replaced keeps its mode (a report may be private).
                    if let Ok(m) = std::fs::metadata(&dest) {
                        let _ = file.set_permissions(m.permissions());
                    }
                    return Ok(AtomicFile {
                        file,
                        tmp: Some(tmp),
                        dest,
                        stop: None,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                // Say which directory: the destination itself may be writable.
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "cannot create a temporary file in {} (the file appears there once complete): {e}",
                            dir.display()
                        ),
                    ))
                }
            }
        }
    }

    /// Makes every write after `flag` is set fail (the file is then dropped
    /// without a commit, which removes it): for a SIGINT/SIGTERM flag.
    #[must_use]
    pub fn stop_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    fn stopped(&self) -> io::Result<()> {
        if self
            .stop
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
        {
            // Not ErrorKind::Interrupted: write_all would retry it forever.
            return Err(io::Error::other(
                "stopped by a signal (SIGINT or SIGTERM) before it was complete",
            ));
        }
        Ok(())
    }

    /// The destination path (symlinks resolved).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dest
    }

    /// Makes the file appear at its destination, replacing any file there.
    ///
    /// # Errors
    /// Flushing to disk or the rename failed; the temporary file is removed.
    pub fn commit(mut self) -> io::Result<()> {
        self.stopped()?;
        self.file.flush()?;
        if let Some(tmp) = self.tmp.take() {
            if let Err(e) = std::fs::rename(&tmp, &self.dest) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stopped()?;
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.stopped()?;
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hbscope-outfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn appears_only_on_commit() {
        let d = scratch("commit");
        let dest = d.join("out.json");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"hello").unwrap();
        assert!(!dest.exists());
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        assert_eq!(entries(&d), ["out.json"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn dropped_leaves_nothing_and_keeps_the_old_file() {
        let d = scratch("drop");
        let dest = d.join("out.json");
        std::fs::write(&dest, b"old").unwrap();
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        assert_eq!(entries(&d), ["out.json"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let d = scratch("missing");
        assert!(AtomicFile::create(&d.join("no/such/out.json")).is_err());
        assert!(entries(&d).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_stop_flag_fails_the_next_write_and_leaves_nothing() {
        let d = scratch("stop");
        let dest = d.join("out.json");
        let flag = Arc::new(AtomicBool::new(false));
        let mut f = AtomicFile::create(&dest)
            .unwrap()
            .stop_on(Arc::clone(&flag));
        f.write_all(b"first half").unwrap();
        flag.store(true, Ordering::Relaxed);
        let e = f.write_all(b"second half").unwrap_err();
        assert!(e.to_string().contains("signal"), "{e}");
        assert!(f.commit().is_err());
        assert!(entries(&d).is_empty(), "{:?}", entries(&d));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_device_is_written_in_place() {
        let mut f = AtomicFile::create(Path::new("/dev/null")).unwrap();
        f.write_all(b"x").unwrap();
        f.commit().unwrap();
    }
}
