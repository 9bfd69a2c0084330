//! The bridge from async orchestration to the CPU pool.
//!
//! Decoding, image operations and encoding run on rayon's pool, never on Tokio's workers. A job
//! that panics (a bug meeting an odd image) is caught here and reported as an error, so one image
//! can never take the run down.
//!
//! At most one job per pool thread is handed to rayon at a time: the ops parallelise internally,
//! and a thread waiting inside one op's `join` would otherwise steal another image's whole op,
//! so every image in flight would hold its working buffers at once and memory would grow with
//! `concurrency` instead of with the core count.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use tokio::sync::Semaphore;

/// Admission to the pool: one permit per rayon thread. Lives for the process.
fn gate() -> &'static Semaphore {
    static GATE: OnceLock<Semaphore> = OnceLock::new();
    GATE.get_or_init(|| Semaphore::new(rayon::current_num_threads().max(1)))
}

/// A CPU job panicked; carries the panic message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("internal error while processing: {0}")]
pub struct Panicked(pub String);

/// Runs `job` on the rayon pool and waits for it without blocking the async runtime.
pub async fn run<T, F>(job: F) -> Result<T, Panicked>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let _permit = gate()
        .acquire()
        .await
        .expect("the CPU gate is never closed");
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let result = catch_unwind(AssertUnwindSafe(job)).map_err(|payload| {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Panicked(msg)
        });
        let _ = tx.send(result);
    });
    rx.await
        .unwrap_or_else(|_| Err(Panicked("CPU job was dropped".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_results_and_catches_panics() {
        assert_eq!(run(|| 6 * 7).await.unwrap(), 42);
        let err = run(|| -> u8 { panic!("boom on odd image") })
            .await
            .unwrap_err();
        assert!(err.0.contains("boom on odd image"));
    }
}
