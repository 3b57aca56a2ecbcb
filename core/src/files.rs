//! Files confined to their roots: the one place that turns a path from a request, a database row
//! or a directory listing into a file on disk.
//!
//! Recording and snapshot paths are stored relative to their root (`RECORDINGS_DIR`,
//! `SNAPSHOT_DIR`) in one canonical form: normal components joined by `/`, no `.`, no `..`, no
//! leading `/`, so `x`, `./x` and `<root>/x` are the same path. Before a file is opened or deleted
//! it is resolved: the root and the path are canonicalised (symlinks followed) and the result must
//! still lie under the canonical root. Nothing outside a root is ever read or deleted, whatever a
//! row says.
//!
//! The check and the use are two system calls, so a process that can already write inside the
//! root could swap a component for a symlink in between; confining such a writer is the file
//! system's job (the containers mount the recordings read-only wherever they only read them).

use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// Nothing left after normalising.
    #[error("the path is empty")]
    Empty,
    /// An absolute path that is not under the root.
    #[error("the path must be relative to its root directory")]
    Absolute,
    /// A `..` component.
    #[error("the path may not contain `..`")]
    Parent,
    /// A control character or a backslash.
    #[error("the path contains a control character or a backslash")]
    BadChar,
    /// Resolves (through symlinks) outside the root.
    #[error("the path resolves outside its root directory")]
    Outside,
    /// No such file or directory.
    #[error("no such file")]
    NotFound,
    /// Any other I/O error while resolving.
    #[error("cannot resolve the path: {0}")]
    Io(#[source] io::Error),
}

impl PathError {
    /// Whether the path itself is malformed or escapes its root — as opposed to a file that is
    /// merely missing or unreadable.
    pub fn is_confinement(&self) -> bool {
        matches!(
            self,
            Self::Empty | Self::Absolute | Self::Parent | Self::BadChar | Self::Outside
        )
    }
}

/// Normalises a relative path: normal components joined by `/`.
///
/// # Errors
/// [`PathError::Absolute`], [`PathError::Parent`], [`PathError::BadChar`] or
/// [`PathError::Empty`].
pub fn normalize(input: &str) -> Result<String, PathError> {
    if input.chars().any(|c| c.is_control() || c == '\\') {
        return Err(PathError::BadChar);
    }
    let mut parts = Vec::new();
    for component in Path::new(input).components() {
        match component {
            Component::Normal(part) => {
                parts.push(part.to_str().ok_or(PathError::BadChar)?.to_owned());
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(PathError::Parent),
            Component::RootDir | Component::Prefix(_) => return Err(PathError::Absolute),
        }
    }
    if parts.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(parts.join("/"))
}

/// Whether the normalised relative path `path` lies in the normalised folder `folder`.
pub fn is_within(path: &str, folder: &str) -> bool {
    path.strip_prefix(folder)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// A root directory (`RECORDINGS_DIR`, `SNAPSHOT_DIR`).
#[derive(Debug, Clone)]
pub struct Root {
    /// As configured, made absolute.
    configured: PathBuf,
    /// Canonical (symlinks resolved).
    canonical: PathBuf,
}

impl Root {
    /// Opens an existing root directory.
    ///
    /// # Errors
    /// The directory does not exist or cannot be resolved.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let canonical = std::fs::canonicalize(dir)?;
        let configured = std::path::absolute(dir)?;
        Ok(Self {
            configured,
            canonical,
        })
    }

    /// Opens a root directory, `None` when it does not exist (yet): nothing can be under it.
    ///
    /// # Errors
    /// The directory cannot be resolved for another reason (permissions…).
    pub fn open_if_exists(dir: &Path) -> io::Result<Option<Self>> {
        match Self::open(dir) {
            Ok(root) => Ok(Some(root)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The canonical directory.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// The stored form of `input`: a relative path normalised, or an absolute path under the
    /// root made relative to it.
    ///
    /// # Errors
    /// [`PathError`] for an absolute path outside the root and for malformed paths.
    pub fn relative(&self, input: &str) -> Result<String, PathError> {
        let path = Path::new(input);
        if !path.is_absolute() {
            return normalize(input);
        }
        for base in [&self.configured, &self.canonical] {
            if let Ok(rest) = path.strip_prefix(base) {
                return normalize(rest.to_str().ok_or(PathError::BadChar)?);
            }
        }
        Err(PathError::Absolute)
    }

    /// The file or directory a stored path names, canonical and checked to lie under the root.
    ///
    /// # Errors
    /// [`PathError::NotFound`] when it does not exist, [`PathError::Outside`] when it resolves
    /// outside the root, and the errors of [`Root::relative`].
    pub fn resolve(&self, stored: &str) -> Result<PathBuf, PathError> {
        let relative = self.relative(stored)?;
        let joined = self.canonical.join(&relative);
        let resolved = match std::fs::canonicalize(&joined) {
            Ok(path) => path,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(PathError::NotFound),
            Err(e) => return Err(PathError::Io(e)),
        };
        if resolved.starts_with(&self.canonical) && resolved != self.canonical {
            Ok(resolved)
        } else {
            Err(PathError::Outside)
        }
    }

    /// Like [`Root::resolve`], and the result must also lie in `folder` (a stored relative
    /// folder under the root), symlinks included.
    ///
    /// # Errors
    /// As [`Root::resolve`]; [`PathError::Outside`] when it leaves `folder`.
    pub fn resolve_within(&self, stored: &str, folder: &str) -> Result<PathBuf, PathError> {
        let resolved = self.resolve(stored)?;
        let folder = self.resolve(folder)?;
        if resolved.starts_with(&folder) && resolved != folder {
            Ok(resolved)
        } else {
            Err(PathError::Outside)
        }
    }

    /// The path a stored relative path would have under the root, without touching the disk
    /// (for files about to be written, such as snapshots).
    ///
    /// # Errors
    /// The errors of [`Root::relative`].
    pub fn join(&self, stored: &str) -> Result<PathBuf, PathError> {
        Ok(self.canonical.join(self.relative(stored)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_keeps_only_normal_components() {
        for (input, want) in [
            ("x", "x"),
            ("./x", "x"),
            ("cam1//a.mp4", "cam1/a.mp4"),
            ("cam1/./a.mp4", "cam1/a.mp4"),
            ("cam1/a.mp4/", "cam1/a.mp4"),
        ] {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
        for input in [
            "",
            ".",
            "./",
            "/etc/shadow",
            "../x",
            "cam1/../../x",
            "a\\b",
            "a\u{0}b",
        ] {
            assert!(normalize(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn within_needs_a_whole_component() {
        assert!(is_within("cam1/a.mp4", "cam1"));
        assert!(!is_within("cam10/a.mp4", "cam1"));
        assert!(!is_within("cam1", "cam1"));
    }

    #[test]
    fn resolve_confines_to_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root_dir = dir.path().join("root");
        std::fs::create_dir_all(root_dir.join("cam1")).unwrap();
        std::fs::write(root_dir.join("cam1/a.mp4"), b"x").unwrap();
        std::fs::write(dir.path().join("outside.mp4"), b"x").unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("outside.mp4"),
            root_dir.join("cam1/link.mp4"),
        )
        .unwrap();
        let root = Root::open(&root_dir).unwrap();
        assert!(root.resolve("cam1/a.mp4").is_ok());
        assert!(root.resolve("./cam1/a.mp4").is_ok());
        let absolute = root_dir.join("cam1/a.mp4");
        assert_eq!(
            root.relative(absolute.to_str().unwrap()).unwrap(),
            "cam1/a.mp4"
        );
        assert!(matches!(
            root.resolve("cam1/link.mp4"),
            Err(PathError::Outside)
        ));
        assert!(matches!(
            root.resolve("cam1/none.mp4"),
            Err(PathError::NotFound)
        ));
        let outside = dir.path().join("outside.mp4");
        assert!(matches!(
            root.resolve(outside.to_str().unwrap()),
            Err(PathError::Absolute)
        ));
        assert!(matches!(
            root.resolve("../outside.mp4"),
            Err(PathError::Parent)
        ));
        assert!(matches!(
            root.resolve_within("cam1/a.mp4", "cam2"),
            Err(PathError::NotFound)
        ));
    }
}
