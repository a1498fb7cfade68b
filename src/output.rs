//! Output files that never destroy what they replace.
//!
//! ```text
//!   OutputFile::create(target, inputs)
//!     ├─ refuse: target is a directory, or the same file as an input (same device and
//!     │          inode: through a symlink or a hard link too), or its directory is missing
//!     ├─ write:  DIR/.NAME.weir-tmp.PID.N   (created new; registered for removal on a signal)
//!     └─ commit: fsync, rename over DIR/NAME, fsync DIR   — the previous file stays until here
//!   dropped without commit (an error, a failed check, a panic): the temporary file is removed
//! ```
//!
//! A target that is a symlink is written through: the file it points to is replaced and
//! the link stays. Permissions of a replaced file carry over to the new one.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, WeirError};
use crate::lifecycle::{PathGuard, remove_on_exit};

static TEMPS_CREATED: AtomicU64 = AtomicU64::new(0);

/// Checks that `output` may be written without destroying an input: it is not a
/// directory, its directory exists, and it is not the same file as any of `inputs`
/// (compared by device and inode, so a symlink or a hard link to an input is caught).
/// `flag` names the output in messages (`--output`).
///
/// # Errors
///
/// [`WeirError::Usage`] saying which rule the output breaks.
pub fn check_output(flag: &str, output: &Path, inputs: &[&Path]) -> Result<()> {
    let refuse = |why: String| {
        Err(WeirError::Usage {
            message: format!("{flag} {}: {why}", output.display()),
        })
    };
    if let Ok(meta) = std::fs::metadata(output) {
        if meta.is_dir() {
            return refuse("is a directory; name a file".to_owned());
        }
        for input in inputs {
            if same_file(&meta, input) {
                return refuse(format!(
                    "is the input {} (the same file); refusing to overwrite an input",
                    input.display()
                ));
            }
        }
    }
    let dir = parent_dir(output);
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => refuse(format!("{} is not a directory", dir.display())),
        Err(error) => refuse(format!("its directory {}: {error}", dir.display())),
    }
}

#[cfg(unix)]
fn same_file(output: &std::fs::Metadata, input: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(input).is_ok_and(|i| i.dev() == output.dev() && i.ino() == output.ino())
}

#[cfg(not(unix))]
fn same_file(_output: &std::fs::Metadata, _input: &Path) -> bool {
    false
}

/// The directory a path's file lives in (`.` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An output written to a temporary file beside its target and renamed into place by
/// [`commit`](OutputFile::commit). See the module documentation.
#[derive(Debug)]
pub struct OutputFile {
    target: PathBuf,
    temp: PathBuf,
    file: File,
    committed: bool,
    _registered: PathGuard,
}

impl OutputFile {
    /// Checks the target ([`check_output`]) and creates its temporary file.
    ///
    /// # Errors
    ///
    /// [`WeirError::Usage`] from [`check_output`]; [`WeirError::File`] when the temporary
    /// file cannot be created.
    pub fn create(flag: &str, target: &Path, inputs: &[&Path]) -> Result<OutputFile> {
        check_output(flag, target, inputs)?;
        // Write through a symlink: replace the file it names, keep the link.
        let target = match std::fs::symlink_metadata(target) {
            Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(target)
                .map_err(|e| WeirError::file("resolve symlink", target, e))?,
            _ => target.to_path_buf(),
        };
        let name = target
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = TEMPS_CREATED.fetch_add(1, Ordering::Relaxed);
        let temp = parent_dir(&target).join(format!(".{name}.weir-tmp.{}.{n}", std::process::id()));
        let registered = remove_on_exit(&temp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| WeirError::file("create output", &temp, e))?;
        if let Ok(meta) = std::fs::metadata(&target) {
            // Best effort: a replaced file keeps its permissions.
            let _ = file.set_permissions(meta.permissions());
        }
        Ok(OutputFile {
            target,
            temp,
            file,
            committed: false,
            _registered: registered,
        })
    }

    /// The open temporary file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A second handle on the temporary file (for writers that own their `File`).
    ///
    /// # Errors
    ///
    /// [`WeirError::File`] when the handle cannot be duplicated.
    pub fn try_clone(&self) -> Result<File> {
        self.file
            .try_clone()
            .map_err(|e| WeirError::file("open output", &self.temp, e))
    }

    /// Where the output is being written until it is committed (to read it back).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The file the output replaces on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Makes the output durable and renames it into place.
    ///
    /// # Errors
    ///
    /// [`WeirError::File`] when it cannot be synced or renamed; the temporary file is then
    /// removed and the previous target left as it was.
    pub fn commit(mut self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| WeirError::file("sync output", &self.temp, e))?;
        std::fs::rename(&self.temp, &self.target)
            .map_err(|e| WeirError::file("rename output into", &self.target, e))?;
        self.committed = true;
        // The rename is durable once the directory is; best effort where a directory
        // cannot be opened for syncing.
        if let Ok(dir) = File::open(parent_dir(&self.target)) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-output-{name}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_output_replaces_its_target_only_on_commit() {
        let dir = dir("commit");
        let target = dir.join("out");
        std::fs::write(&target, b"previous").unwrap();
        let out = OutputFile::create("--output", &target, &[]).unwrap();
        out.file().write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"previous");
        drop(out);
        assert_eq!(std::fs::read(&target).unwrap(), b"previous");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temp left");
        let out = OutputFile::create("--output", &target, &[]).unwrap();
        out.file().write_all(b"new").unwrap();
        out.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temp left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn an_output_that_is_an_input_is_refused_through_links() {
        let dir = dir("same");
        let input = dir.join("input");
        std::fs::write(&input, b"data").unwrap();
        std::os::unix::fs::symlink(&input, dir.join("sym")).unwrap();
        std::fs::hard_link(&input, dir.join("hard")).unwrap();
        for output in [
            input.clone(),
            dir.join("sym"),
            dir.join("hard"),
            dir.join("./input"),
        ] {
            let error = OutputFile::create("--output", &output, &[&input]).unwrap_err();
            assert!(error.to_string().contains("the same file"), "{error}");
        }
        assert_eq!(std::fs::read(&input).unwrap(), b"data");
        let error = check_output("--output", &dir, &[]).unwrap_err();
        assert!(error.to_string().contains("is a directory"), "{error}");
        let error = check_output("--output", &dir.join("no/such/file"), &[]).unwrap_err();
        assert!(error.to_string().contains("its directory"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_target_is_written_through() {
        let dir = dir("through");
        let real = dir.join("real");
        std::fs::write(&real, b"old").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let out = OutputFile::create("--output", &link, &[]).unwrap();
        out.file().write_all(b"new").unwrap();
        out.commit().unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
