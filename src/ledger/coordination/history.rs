//! The run history every machine shares: one item per run (`pk` `runs`, `sk`
//! `<started, 12 digits>#<run id>`), written when the run starts and again when it ends, so
//! `retouch runs --table` on any machine lists every shard of every run group, newest first,
//! with a killed shard shown as unfinished (its heartbeat stopped).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{CoordError, Coordination, Table, detail, n, number, s};
use crate::ledger::unix_now;
use crate::money::Usd;

/// How long the table keeps a run's record.
const KEEP_RUN_SECS: i64 = 180 * 86_400;

/// A run as the table records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRun {
    pub run_id: String,
    pub group: String,
    /// `3/16` for a shard.
    pub shard: Option<String>,
    pub manifest: String,
    pub started_at: i64,
    /// `None` while running, or when it was killed.
    pub finished_at: Option<i64>,
    pub images: u64,
    pub ok: u64,
    pub failed: u64,
    pub cost: Usd,
    /// Stopped with Ctrl-C or SIGTERM before every image started.
    pub interrupted: bool,
    /// Its heartbeat is current (read back only; not written).
    pub alive: bool,
}

impl Coordination {
    /// Records `run` (at its start, and again at its end). A failure is logged: the run's own
    /// state folder and report still hold everything.
    pub async fn record_run(&self, run: &SharedRun) {
        let mut put = self
            .table()
            .client
            .put_item()
            .table_name(self.table().name())
            .item("pk", s("runs"))
            .item("sk", s(format!("{:012}#{}", run.started_at, run.run_id)))
            .item("run_id", s(&run.run_id))
            .item("group", s(&run.group))
            .item("manifest", s(&run.manifest))
            .item("started_at", n(run.started_at))
            .item("images", n(run.images as i64))
            .item("ok", n(run.ok as i64))
            .item("failed", n(run.failed as i64))
            .item("cost_micros", n(run.cost.micros()))
            .item("interrupted", AttributeValue::Bool(run.interrupted))
            .item("expires_at", n(unix_now() + KEEP_RUN_SECS));
        if let Some(shard) = &run.shard {
            put = put.item("shard", s(shard));
        }
        if let Some(at) = run.finished_at {
            put = put.item("finished_at", n(at));
        }
        if let Err(e) = put.send().await {
            tracing::warn!(
                "could not record the run in the shared history: {}",
                self.err(detail(e))
            );
        }
    }
}

impl Table {
    /// The runs recorded in the table, newest first, at most `limit`, only those of `group`
    /// when given; each unfinished one says whether its heartbeat is current.
    pub async fn runs(
        &self,
        group: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SharedRun>, CoordError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :runs")
            .expression_attribute_values(":runs", s("runs"))
            .scan_index_forward(false)
            .into_paginator()
            .items()
            .send();
        let mut runs = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| self.err(detail(e)))?;
            let Some(mut run) = parse(&item) else {
                continue;
            };
            if group.is_some_and(|g| g != run.group) {
                continue;
            }
            if run.finished_at.is_none() {
                run.alive = self.is_alive(&run.run_id).await?;
            }
            runs.push(run);
            if runs.len() >= limit {
                break;
            }
        }
        Ok(runs)
    }
}

fn parse(item: &HashMap<String, AttributeValue>) -> Option<SharedRun> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| item.get(k).and_then(number);
    Some(SharedRun {
        run_id: text("run_id")?,
        group: text("group")?,
        shard: text("shard"),
        manifest: text("manifest").unwrap_or_default(),
        started_at: num("started_at")?,
        finished_at: num("finished_at"),
        images: num("images").unwrap_or(0) as u64,
        ok: num("ok").unwrap_or(0) as u64,
        failed: num("failed").unwrap_or(0) as u64,
        cost: Usd(num("cost_micros").unwrap_or(0)),
        interrupted: item
            .get("interrupted")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        alive: false,
    })
}
