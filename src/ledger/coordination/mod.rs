//! Coordination across machines in one DynamoDB table (`shared.dynamodb_table`): claims on
//! paid steps (`claims.rs`), the run and daily caps with holds (`money.rs`), each model's
//! requests per minute (`rates.rs`), the run history (`history.rs`), and the liveness of every
//! run taking part (here).
//!
//! Every shard of a catalogue (and every other run naming the same table) talks to the same
//! items, so the promises a single machine keeps with its SQLite store hold across machines:
//! a step is paid once, the caps are never exceeded, an account's quota is shared. The table has
//! a string partition key `pk` and a string sort key `sk`; every item carries `expires_at` (unix
//! seconds) for DynamoDB's TTL to clean up. Items:
//!
//! | `pk` | `sk` | what |
//! |---|---|---|
//! | `live#<run id>` | `-` | a run's heartbeat: alive while `alive_until` is ahead |
//! | `claim#<step key>` | `-` | who is doing a paid step (`owner`, `token`) |
//! | `budget#run#<run group>` | `-` | a run group's `spent` (micro-dollars) and `holds` in flight |
//! | `budget#day#<YYYY-MM-DD>` | `-` | the same for one UTC day, across every run |
//! | `rate#<model id>` | `-` | the model's next free send time (`next_us`) |
//! | `runs` | `<started>#<run id>` | the run history every machine sees (`history.rs`) |
//!
//! DynamoDB conditions cannot add, so a cap check is `spent <= :room` with the room (cap minus
//! price) worked out here. A failure to reach the table never falls back to counting in memory:
//! a hold that cannot be taken is refused (see `money.rs`). Only this module imports
//! `aws-sdk-dynamodb`.

mod claims;
mod history;
mod money;
mod rates;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Region;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ScalarAttributeType};
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;

pub use claims::SharedClaim;
pub use history::SharedRun;
pub use money::{Refusal, SharedCaps, SharedHold};
pub use rates::{PACE, interval_us};

use super::unix_now;
use crate::log_once::LogOnce;

/// A run is taken for dead when its heartbeat is this old.
pub const ALIVE_SECS: i64 = 10;
/// How often a run renews its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(3);
/// DynamoDB's TTL removes claims, heartbeats and rate items this long after their last write.
const KEEP_SECS: i64 = 86_400;
/// The most of an error's detail kept in messages.
const MAX_DETAIL: usize = 300;

/// How to reach the table (from the manifest's `aws:` section; the SDK's own environment, such
/// as `AWS_ENDPOINT_URL_DYNAMODB`, applies where these leave something unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSettings {
    pub name: String,
    pub region: Option<String>,
    pub profile: Option<String>,
}

/// Why the table could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DynamoDB table `{table}`: {what}")]
pub struct CoordError {
    pub table: String,
    pub what: String,
}

/// The coordination table, reached and checked.
#[derive(Debug, Clone)]
pub struct Table {
    client: Client,
    name: String,
}

impl Table {
    /// A client for the table in `settings` (nothing is called yet).
    pub async fn connect(settings: &TableSettings) -> Table {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        let sdk = loader.load().await;
        let mut conf = aws_sdk_dynamodb::config::Builder::from(&sdk);
        if sdk.region().is_none() {
            conf = conf.region(Region::new("us-east-1"));
        }
        Table {
            client: Client::from_conf(conf.build()),
            name: settings.name.clone(),
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that the table exists with the key this module writes (`pk` string partition
    /// key, `sk` string sort key), before any work; the error says how to create it.
    pub async fn check(&self) -> Result<(), CoordError> {
        let create = format!(
            "create it with: aws dynamodb create-table --table-name {0} --billing-mode PAY_PER_REQUEST --attribute-definitions AttributeName=pk,AttributeType=S AttributeName=sk,AttributeType=S --key-schema AttributeName=pk,KeyType=HASH AttributeName=sk,KeyType=RANGE && aws dynamodb update-time-to-live --table-name {0} --time-to-live-specification Enabled=true,AttributeName=expires_at",
            self.name
        );
        let out = self
            .client
            .describe_table()
            .table_name(&self.name)
            .send()
            .await
            .map_err(|e| {
                let missing = e
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception());
                if missing {
                    self.err(format!("does not exist; {create}"))
                } else {
                    self.err(detail(e))
                }
            })?;
        let table = out.table();
        let keys = table.map(|t| t.key_schema()).unwrap_or_default();
        let defs = table.map(|t| t.attribute_definitions()).unwrap_or_default();
        let is_string = |name: &str| {
            defs.iter().any(|d| {
                d.attribute_name() == name && d.attribute_type() == &ScalarAttributeType::S
            })
        };
        let has = |name: &str, kind: KeyType| {
            keys.iter()
                .any(|k| k.attribute_name() == name && k.key_type() == &kind)
                && is_string(name)
        };
        if keys.len() == 2 && has("pk", KeyType::Hash) && has("sk", KeyType::Range) {
            Ok(())
        } else {
            Err(self.err(format!(
                "its key must be `pk` (string, partition) and `sk` (string, sort); {create}"
            )))
        }
    }

    /// Whether `run_id` renewed its heartbeat within [`ALIVE_SECS`].
    async fn is_alive(&self, run_id: &str) -> Result<bool, CoordError> {
        let item = self.get(&format!("live#{run_id}")).await?;
        let until = item.and_then(|i| number(i.get("alive_until")?));
        Ok(until.is_some_and(|t| t > unix_now()))
    }

    /// The item (`pk`, `-`), read consistently.
    async fn get(&self, pk: &str) -> Result<Option<Item>, CoordError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("pk", s(pk))
            .key("sk", s("-"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(detail(e)))?;
        Ok(out.item().cloned())
    }

    /// An `UpdateItem` of the item (`pk`, `-`), to finish and send.
    fn update(&self, pk: impl Into<String>) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.name)
            .key("pk", s(pk))
            .key("sk", s("-"))
    }

    /// A `PutItem` of the item (`pk`, `-`), to finish and send.
    fn put(&self, pk: impl Into<String>) -> PutItemFluentBuilder {
        self.client
            .put_item()
            .table_name(&self.name)
            .item("pk", s(pk))
            .item("sk", s("-"))
    }

    /// A `DeleteItem` of the item (`pk`, `-`), to finish and send.
    fn delete(&self, pk: impl Into<String>) -> DeleteItemFluentBuilder {
        self.client
            .delete_item()
            .table_name(&self.name)
            .key("pk", s(pk))
            .key("sk", s("-"))
    }

    fn err(&self, what: impl Into<String>) -> CoordError {
        CoordError {
            table: self.name.clone(),
            what: what.into(),
        }
    }
}

/// One run's part in the coordination: its identity, its run group's caps, its heartbeat.
/// Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct Coordination {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    table: Table,
    run_id: String,
    /// The runs sharing one run cap: the shards of one array job (see [`crate::shard`]).
    group: String,
    caps: SharedCaps,
    /// Numbers this run's holds.
    next_hold: AtomicU64,
    heartbeat: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Claim releases started by dropped guards, awaited at the end of the run.
    releases: AsyncMutex<Vec<JoinHandle<()>>>,
    /// Days whose budget item this run has made sure exists.
    days_ready: std::sync::Mutex<Vec<String>>,
    /// Whether a failure to keep a shared send schedule was already logged.
    warned_rates: LogOnce,
}

impl Coordination {
    /// Joins the table as `run_id` of `group`: writes the first heartbeat (so an unreachable
    /// table stops the run before any work), makes sure the group's budget item exists, clears
    /// holds of dead runs that expired, and keeps the heartbeat going until
    /// [`Coordination::finish`].
    pub async fn start(
        table: Table,
        run_id: &str,
        group: &str,
        caps: SharedCaps,
    ) -> Result<Coordination, CoordError> {
        let inner = Arc::new(Inner {
            table,
            run_id: run_id.to_owned(),
            group: group.to_owned(),
            caps,
            next_hold: AtomicU64::new(1),
            heartbeat: std::sync::Mutex::new(None),
            releases: AsyncMutex::new(Vec::new()),
            days_ready: std::sync::Mutex::new(Vec::new()),
            warned_rates: LogOnce::new(),
        });
        let coordination = Coordination { inner };
        coordination.beat().await?;
        coordination.prepare_budget().await?;
        let beating = coordination.clone();
        let task = tokio::spawn(async move {
            let mut failed = false;
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                match beating.beat().await {
                    Ok(()) => failed = false,
                    Err(e) if !failed => {
                        failed = true;
                        tracing::warn!("coordination heartbeat: {e}");
                    }
                    Err(_) => {}
                }
            }
        });
        *coordination.inner.heartbeat.lock().expect("heartbeat") = Some(task);
        Ok(coordination)
    }

    /// The run group.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// Ends this run's part: waits for claim releases still going, stops the heartbeat and
    /// removes it (the run is dead to the others at once).
    pub async fn finish(&self) {
        let releases = std::mem::take(&mut *self.inner.releases.lock().await);
        for release in releases {
            let _ = release.await;
        }
        if let Some(task) = self.inner.heartbeat.lock().expect("heartbeat").take() {
            task.abort();
        }
        let _ = self
            .table()
            .delete(format!("live#{}", self.inner.run_id))
            .send()
            .await;
    }

    async fn beat(&self) -> Result<(), CoordError> {
        let now = unix_now();
        self.table()
            .put(format!("live#{}", self.inner.run_id))
            .item("group", s(&self.inner.group))
            .item("alive_until", n(now + ALIVE_SECS))
            .item("expires_at", n(now + KEEP_SECS))
            .send()
            .await
            .map(drop)
            .map_err(|e| self.err(detail(e)))
    }

    /// Whether `run_id` renewed its heartbeat within [`ALIVE_SECS`].
    async fn is_alive(&self, run_id: &str) -> Result<bool, CoordError> {
        self.inner.table.is_alive(run_id).await
    }

    fn table(&self) -> &Table {
        &self.inner.table
    }

    fn err(&self, what: impl Into<String>) -> CoordError {
        self.inner.table.err(what)
    }

    /// Keeps a claim release going in the background until [`Coordination::finish`].
    fn release_later(&self, task: JoinHandle<()>) {
        if let Ok(mut releases) = self.inner.releases.try_lock() {
            releases.retain(|t| !t.is_finished());
            releases.push(task);
        }
    }

    fn warn_rates_once(&self, e: &CoordError) {
        if self.inner.warned_rates.first() {
            tracing::warn!(
                "shared rate limit: {e}; pacing this shard at its fixed share meanwhile"
            );
        }
    }
}

/// An item's attributes.
type Item = std::collections::HashMap<String, AttributeValue>;

/// A string attribute.
fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute.
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A number attribute's value.
fn number(v: &AttributeValue) -> Option<i64> {
    v.as_n().ok()?.parse().ok()
}

/// An SDK error, with its service code and message, cut to [`MAX_DETAIL`] bytes.
fn detail<E: std::error::Error + 'static>(e: E) -> String {
    let mut text = DisplayErrorContext(e).to_string();
    if text.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Whether an SDK error is DynamoDB refusing a condition.
fn condition_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}
