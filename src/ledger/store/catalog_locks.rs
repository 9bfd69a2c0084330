//! The catalog lock of each run: the models it could route to and their prices, so `check`
//! can say what would route or bill differently now.

use rusqlite::params;

use super::{LedgerError, Store};
use crate::ledger::unix_now;
use crate::money::Usd;

impl Store {
    /// Records the catalog entries (model id, price per image) a run used.
    pub fn record_lock(&self, run_id: &str, entries: &[(String, Usd)]) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO locks (run_id, recorded_at) VALUES (?1, ?2)",
            params![run_id, unix_now()],
        )
        .map_err(|e| self.err(e))?;
        let seq = tx.last_insert_rowid();
        for (model, price) in entries {
            tx.execute(
                "INSERT OR REPLACE INTO lock_entries (seq, model, price_micros) VALUES (?1, ?2, ?3)",
                params![seq, model, price.micros()],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The most recently recorded lock, sorted by model id (empty when none).
    pub fn last_lock(&self) -> Result<Vec<(String, Usd)>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT model, price_micros FROM lock_entries
                 WHERE seq = (SELECT MAX(seq) FROM locks) ORDER BY model",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, Usd(r.get(1)?))))
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))
    }
}
