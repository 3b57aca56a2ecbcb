//! Deleting files the way retention and cleanup need: a file already gone is not an error, any
//! other failure is reported to the caller, which keeps the row that points at the file.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What removing one file did.
#[derive(Debug)]
pub(crate) enum Removed {
    /// Deleted; it held this many bytes.
    Deleted(u64),
    /// It was already gone.
    Missing,
    /// It could not be deleted (permissions, read-only file system…).
    Failed(std::io::Error),
}

/// Removes a file.
pub(crate) async fn remove_file(path: &Path) -> Removed {
    let bytes = match tokio::fs::metadata(path).await {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == ErrorKind::NotFound => return Removed::Missing,
        Err(e) => return Removed::Failed(e),
    };
    match tokio::fs::remove_file(path).await {
        Ok(()) => Removed::Deleted(bytes),
        Err(e) if e.kind() == ErrorKind::NotFound => Removed::Missing,
        Err(e) => Removed::Failed(e),
    }
}

/// Removes a directory tree, returning the files and bytes it held.
pub(crate) async fn remove_dir(path: &Path) -> Result<(u64, u64), std::io::Error> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let (mut files, mut bytes) = (0u64, 0u64);
        let mut stack = vec![path.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                // Not followed: a symlink inside is removed as a link, never walked.
                let meta = entry.path().symlink_metadata()?;
                if meta.is_dir() {
                    stack.push(entry.path());
                } else {
                    files += 1;
                    // A snapshot linked from the objects store frees nothing until the store's
                    // copy is swept too (counted then).
                    if meta.nlink() <= 1 {
                        bytes += meta.len();
                    }
                }
            }
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok((files, bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok((files, bytes)),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(std::io::Error::other)?
}
