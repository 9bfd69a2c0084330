//! Claims on step keys: while one task of one run does a paid step, every other task and run
//! that needs it waits for the result instead of paying again. A dead run's claims are taken
//! over at once (its lease, see `ledger::lease`, is gone).

use std::path::Path;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{LedgerError, Store};
use crate::ledger::StepKey;

/// Who does a step now; see [`Store::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller does it.
    Mine,
    /// A live run (maybe the caller's own, for a duplicate image) is doing it.
    Theirs { run_id: String },
}

impl Store {
    /// Claims the right to do the step `key` (a claim key, see the scheduler's cache) for the
    /// task `token` of `run_id`, so that runs going at once, and duplicate images within a run,
    /// never pay twice for one step: the claimer does it, everyone else waits for its result.
    /// A claim of a run that is no longer alive (see [`crate::ledger::lease`]) is taken over.
    pub fn claim(
        &self,
        key: &StepKey,
        run_id: &str,
        token: u64,
        now_unix: i64,
    ) -> Result<Claim, LedgerError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let holder: Option<(String, i64)> = tx
            .query_row(
                "SELECT run_id, token FROM claims WHERE key = ?1",
                [&key.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match holder {
            Some((run, t)) if run == run_id && t == token as i64 => return Ok(Claim::Mine),
            Some((run, _)) if run == run_id || self.is_alive(&run) => {
                return Ok(Claim::Theirs { run_id: run });
            }
            _ => {}
        }
        tx.execute(
            "INSERT OR REPLACE INTO claims (key, run_id, token, at_unix) VALUES (?1, ?2, ?3, ?4)",
            params![&key.0[..], run_id, token as i64, now_unix],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Claim::Mine)
    }

    /// Ends the claim `token` made on `key` (done, or given up).
    pub fn release_claim(&self, key: &StepKey, token: u64) -> Result<(), LedgerError> {
        self.conn()
            .execute(
                "DELETE FROM claims WHERE key = ?1 AND token = ?2",
                params![&key.0[..], token as i64],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Ends every claim of `run_id` (when it ends).
    pub fn release_claims(&self, run_id: &str) -> Result<(), LedgerError> {
        self.conn()
            .execute("DELETE FROM claims WHERE run_id = ?1", [run_id])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Whether the run `run_id` is alive (holds its lease in this state folder).
    pub fn is_alive(&self, run_id: &str) -> bool {
        crate::ledger::lease::is_alive(self.dir(), run_id)
    }

    /// The state folder.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}
