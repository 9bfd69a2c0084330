//! Which runs sharing a state folder are alive, and which run writes which report.
//!
//! A run holds an exclusive advisory lock (`flock`) on `<state>/live/<run_id>.lock` for as long
//! as its process lives; the kernel drops it when the process ends, even by `kill -9`, so another
//! run can tell a live run from a dead one without trusting timestamps or pids. That is how a
//! step claimed by a run that died is taken over at once, and how `retouch runs` tells a run in
//! progress from one that was killed. A report path is leased the same way, so two runs never
//! write one report at the same time. Lease files are created under a temporary name, locked,
//! then renamed into place, so nobody ever sees an unlocked lease of a live run. Only this file
//! touches the lock files.

use std::fs::{File, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const LIVE_DIR: &str = "live";

/// This process's lease on its run: proof to other runs that it is alive. Dropping it (or the
/// process ending) ends the lease.
#[derive(Debug)]
pub struct RunLease {
    path: PathBuf,
    _file: File,
}

impl RunLease {
    /// Takes the lease of `run_id` in the state folder `state`, and removes the leases of runs
    /// that are no longer alive.
    pub fn acquire(state: &Path, run_id: &str) -> std::io::Result<RunLease> {
        let dir = state.join(LIVE_DIR);
        std::fs::create_dir_all(&dir)?;
        sweep(&dir);
        let path = dir.join(format!("{run_id}.lock"));
        let file = locked_file(&dir, &path, run_id)?;
        Ok(RunLease { path, _file: file })
    }
}

impl Drop for RunLease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the run `run_id` of the state folder `state` is alive (holds its lease).
pub fn is_alive(state: &Path, run_id: &str) -> bool {
    let path = state.join(LIVE_DIR).join(format!("{run_id}.lock"));
    match File::open(&path) {
        Ok(file) => matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// A run's exclusive right to write one report path. Lease files stay (a few bytes each): one
/// removed while another run tries to take it could end up held twice.
#[derive(Debug)]
pub struct ReportLease {
    _file: File,
}

/// Another live run writes this report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run {run_id} is writing the report {report} right now")]
pub struct ReportBusy {
    pub run_id: String,
    pub report: String,
}

impl ReportLease {
    /// Leases `report` (as the run names it; made absolute) for `run_id`.
    pub fn acquire(
        state: &Path,
        report: &Path,
        run_id: &str,
    ) -> std::io::Result<Result<ReportLease, ReportBusy>> {
        let dir = state.join(LIVE_DIR);
        std::fs::create_dir_all(&dir)?;
        let absolute = std::path::absolute(report).unwrap_or_else(|_| report.to_owned());
        let name = blake3::hash(absolute.to_string_lossy().as_bytes()).to_hex();
        let path = dir.join(format!("report-{}.lock", &name[..16]));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)?;
                file.write_all(run_id.as_bytes())?;
                Ok(Ok(ReportLease { _file: file }))
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                Ok(Err(ReportBusy {
                    run_id: holder,
                    report: report.display().to_string(),
                }))
            }
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// A new file at `path`, locked exclusively before it appears under that name.
fn locked_file(dir: &Path, path: &Path, content: &str) -> std::io::Result<File> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".lease-")
        .tempfile_in(dir)?;
    tmp.as_file().try_lock().map_err(|e| match e {
        TryLockError::Error(e) => e,
        TryLockError::WouldBlock => std::io::Error::other("a new lease file is locked"),
    })?;
    tmp.write_all(content.as_bytes())?;
    let (file, tmp_path) = tmp.keep().map_err(|e| e.error)?;
    std::fs::rename(&tmp_path, path)?;
    Ok(file)
}

/// Removes run leases nobody holds (runs that died). Leases being created are still under
/// their temporary names and are left alone.
fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with("report-") || !name.ends_with(".lock") {
            continue;
        }
        if let Ok(file) = File::open(entry.path())
            && file.try_lock().is_ok()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_marks_its_run_alive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_alive(dir.path(), "r1"));
        let lease = RunLease::acquire(dir.path(), "r1").unwrap();
        assert!(is_alive(dir.path(), "r1"));
        assert!(!is_alive(dir.path(), "r2"));
        drop(lease);
        assert!(!is_alive(dir.path(), "r1"));
        assert!(!dir.path().join("live/r1.lock").exists());
    }

    #[test]
    fn an_unheld_lease_file_is_dead_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join(LIVE_DIR);
        std::fs::create_dir_all(&live).unwrap();
        // What a killed run leaves: the file, without its lock.
        std::fs::write(live.join("dead.lock"), "dead").unwrap();
        assert!(!is_alive(dir.path(), "dead"));
        let _lease = RunLease::acquire(dir.path(), "new").unwrap();
        assert!(!live.join("dead.lock").exists(), "swept");
        assert!(is_alive(dir.path(), "new"));
    }

    #[test]
    fn a_report_is_leased_to_one_run_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("out/report.csv");
        let first = ReportLease::acquire(dir.path(), &report, "run-a")
            .unwrap()
            .unwrap();
        let busy = ReportLease::acquire(dir.path(), &report, "run-b")
            .unwrap()
            .unwrap_err();
        assert_eq!(busy.run_id, "run-a");
        let other = dir.path().join("out/other.csv");
        assert!(
            ReportLease::acquire(dir.path(), &other, "run-b")
                .unwrap()
                .is_ok()
        );
        drop(first);
        assert!(
            ReportLease::acquire(dir.path(), &report, "run-b")
                .unwrap()
                .is_ok()
        );
    }
}
