//! Files written whole or not at all, with the permissions any new file of the user gets.
//!
//! Every file retouch writes (outputs, reports, cached results) goes to a temporary file in the
//! destination folder, is synced, then renamed over the destination, so a reader or a crash
//! never sees half a file. Temporary files are private (0600) by default; ours are created
//! with mode 0666, which the kernel narrows by the process umask exactly as it does for any new
//! file (0644 under the usual 022), so web servers, sync tools and other users can read results
//! whenever the user's umask says they may.

use std::io::Write;
use std::path::Path;

use tempfile::NamedTempFile;

/// A new temporary file in `dir` (named `<prefix>…<suffix>`) with the umask's permissions; the
/// caller writes it and [`commit`]s it.
pub fn temp_in(dir: &Path, prefix: &str, suffix: &str) -> std::io::Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// Syncs `tmp` and renames it over `path`.
pub fn commit(tmp: NamedTempFile, path: &Path) -> std::io::Result<()> {
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `bytes` to `path` atomically, creating parent folders.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir)?;
    let mut tmp = temp_in(dir, ".retouch-", ".tmp")?;
    tmp.write_all(bytes)?;
    commit(tmp, path)
}

/// The folder `path` is in (`.` for a bare file name).
pub fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn new_files_get_the_umask_permissions_not_0600() {
        let umask = current_umask();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/out.png");
        write(&path, b"x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask, "umask {umask:o}");
        assert_eq!(mode & 0o044, 0o044 & !umask, "group and others may read");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.png"], "no temporary file is left");
    }

    /// The process umask, read from /proc where it can be (changing it to read it races with
    /// other tests creating files).
    fn current_umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(v) = status.lines().find_map(|l| l.strip_prefix("Umask:")) {
            return u32::from_str_radix(v.trim(), 8).unwrap();
        }
        // SAFETY: umask only swaps a process setting, restored at once.
        unsafe {
            let old = libc::umask(0o022);
            libc::umask(old);
            old as u32
        }
    }
}
