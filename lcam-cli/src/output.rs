//! Crash-safe output: write to a temporary file beside the target, then rename.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Fails when `path` exists and `force` is not set, so that no result is overwritten silently.
pub fn ensure_writable(path: &Path, force: bool) -> Result<()> {
    if !force && path.exists() {
        bail!(
            "output file {} already exists (pass --force to overwrite it)",
            path.display()
        );
    }
    Ok(())
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory is written,
/// flushed to disk and renamed over `path`. A crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, contents: &[u8], force: bool) -> Result<()> {
    ensure_writable(path, force)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    // Temporary files are created 0600; results are ordinary readable files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot set permissions of {}", tmp.path().display()))?;
    }
    if force {
        tmp.persist(path)
            .with_context(|| format!("cannot rename into {}", path.display()))?;
    } else {
        tmp.persist_noclobber(path)
            .with_context(|| format!("cannot rename into {}", path.display()))?;
    }
    Ok(())
}
