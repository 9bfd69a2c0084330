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
//!
//! Waiting jobs are admitted by priority, highest first (FIFO among equals). The scheduler gives
//! an image's later stages higher priority, so the pipeline drains before it fills: an upscaled
//! image waiting to be encoded goes before a new image waiting to be decoded, and the number of
//! large intermediate images alive at once stays near the core count.

use std::collections::BinaryHeap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, OnceLock};

use tokio::sync::oneshot;

use crate::manifest::Step;

/// The priority of a step's CPU work (see [`run_at`]): later stages first, so images in flight
/// finish before new ones are decoded. Decoding is 0; encoding the output is after the last step.
pub(crate) fn priority(step: &Step) -> u32 {
    step.index as u32 + 1
}

/// Admission to the pool: one permit per rayon thread. Lives for the process.
fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| Gate::new(rayon::current_num_threads().max(1)))
}

/// A counting gate whose waiters are served by priority.
struct Gate {
    state: Mutex<GateState>,
}

struct GateState {
    free: usize,
    next_seq: u64,
    waiting: BinaryHeap<Waiter>,
}

struct Waiter {
    priority: u32,
    seq: u64,
    wake: oneshot::Sender<Permit>,
}

impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Max-heap: higher priority first, then the earlier arrival.
        (self.priority, std::cmp::Reverse(self.seq))
            .cmp(&(other.priority, std::cmp::Reverse(other.seq)))
    }
}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Waiter {}

/// One slot of the gate; handing it on or dropping it admits the next waiter.
struct Permit {
    gate: &'static Gate,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

impl Gate {
    fn new(slots: usize) -> Self {
        Gate {
            state: Mutex::new(GateState {
                free: slots,
                next_seq: 0,
                waiting: BinaryHeap::new(),
            }),
        }
    }

    async fn acquire(&'static self, priority: u32) -> Permit {
        let rx = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.free > 0 && st.waiting.is_empty() {
                st.free -= 1;
                return Permit { gate: self };
            }
            let (wake, rx) = oneshot::channel();
            let seq = st.next_seq;
            st.next_seq += 1;
            st.waiting.push(Waiter {
                priority,
                seq,
                wake,
            });
            rx
        };
        // A waiter that is cancelled after being handed a permit drops it, which admits the next.
        rx.await.expect("the gate outlives every waiter")
    }

    fn release(&'static self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(waiter) = st.waiting.pop() {
            match waiter.wake.send(Permit { gate: self }) {
                Ok(()) => return,
                // The waiter gave up; its returned permit must not run `release` under our lock.
                Err(permit) => std::mem::forget(permit),
            }
        }
        st.free += 1;
    }
}

/// A CPU job panicked; carries the panic message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("internal error while processing: {0}")]
pub(crate) struct Panicked(pub String);

/// Runs `job` on the rayon pool at the lowest priority; see [`run_at`].
pub(crate) async fn run<T, F>(job: F) -> Result<T, Panicked>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    run_at(0, job).await
}

/// Runs `job` on the rayon pool and waits for it without blocking the async runtime. When the
/// pool is busy, waiting jobs start highest `priority` first.
pub(crate) async fn run_at<T, F>(priority: u32, job: F) -> Result<T, Panicked>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let _permit = gate().acquire(priority).await;
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

    fn leaked_gate(slots: usize) -> &'static Gate {
        Box::leak(Box::new(Gate::new(slots)))
    }

    fn waiting(gate: &Gate) -> usize {
        gate.state.lock().unwrap().waiting.len()
    }

    #[tokio::test]
    async fn admits_waiters_by_priority_then_arrival() {
        let gate = leaked_gate(1);
        let held = gate.acquire(0).await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [
            ("decode-a", 0),
            ("encode", 3),
            ("step-1", 1),
            ("decode-b", 0),
        ] {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _p = gate.acquire(priority).await;
                order.lock().unwrap().push(name);
            }));
            while waiting(gate) < tasks.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["encode", "step-1", "decode-a", "decode-b"]
        );
        assert_eq!(gate.state.lock().unwrap().free, 1, "every slot came back");
    }

    #[tokio::test]
    async fn a_cancelled_waiter_does_not_lose_the_slot() {
        let gate = leaked_gate(1);
        let held = gate.acquire(0).await;
        let cancelled = tokio::spawn(async move { gate.acquire(5).await });
        while waiting(gate) < 1 {
            tokio::task::yield_now().await;
        }
        cancelled.abort();
        let _ = cancelled.await;
        drop(held);
        let again = tokio::time::timeout(std::time::Duration::from_secs(5), gate.acquire(0)).await;
        assert!(again.is_ok(), "the slot must be free again");
        drop(again);
        assert_eq!(gate.state.lock().unwrap().free, 1);
    }
}
