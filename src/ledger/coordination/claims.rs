//! Claims on paid steps across machines: one conditional `PutItem` takes a step, a `DeleteItem`
//! gives it back. A claim whose owner's heartbeat stopped (a killed shard) is taken over with a
//! conditional write naming the old owner, so two machines never both take it over.

use super::{CoordError, Coordination, KEEP_SECS, condition_failed, detail, n, number, s};
use crate::ledger::unix_now;

/// Who does a step now, across machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedClaim {
    /// The caller does it.
    Mine,
    /// A live run elsewhere is doing it.
    Theirs { run_id: String },
}

impl Coordination {
    /// Claims the step `key` (a claim key's hex) for this run's task `token`.
    pub async fn claim(&self, key: &str, token: u64) -> Result<SharedClaim, CoordError> {
        let pk = format!("claim#{key}");
        for _ in 0..4 {
            let put = self
                .put_claim(&pk, token)
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match put {
                Ok(_) => return Ok(SharedClaim::Mine),
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(self.err(detail(e))),
            }
            let Some((owner, theirs)) = self.holder(&pk).await? else {
                continue; // released meanwhile: try again
            };
            // Our own (an SDK retry of our put that had landed, or a claim this run left
            // behind: the run's tasks are kept apart by the local store's claims first).
            let ours = owner == self.inner.run_id;
            if !ours && self.is_alive(&owner).await? {
                return Ok(SharedClaim::Theirs { run_id: owner });
            }
            if ours && theirs == token as i64 {
                return Ok(SharedClaim::Mine);
            }
            let took = self
                .put_claim(&pk, token)
                .condition_expression("#o = :old AND #t = :oldtoken")
                .expression_attribute_names("#o", "owner")
                .expression_attribute_names("#t", "token")
                .expression_attribute_values(":old", s(&owner))
                .expression_attribute_values(":oldtoken", n(theirs))
                .send()
                .await;
            match took {
                Ok(_) => {
                    if !ours {
                        tracing::info!("took over a step claimed by run {owner}, which is gone");
                    }
                    return Ok(SharedClaim::Mine);
                }
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(self.err(detail(e))),
            }
        }
        // Contended four times over: someone alive has it.
        Ok(SharedClaim::Theirs {
            run_id: "another run".into(),
        })
    }

    /// Gives the claim back in the background (only if it is still this task's); awaited by
    /// [`Coordination::finish`].
    pub fn release(&self, key: &str, token: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the claim dies with the heartbeat
        };
        let this = self.clone();
        let pk = format!("claim#{key}");
        let task = runtime.spawn(async move {
            let _ = this
                .table()
                .delete(pk)
                .condition_expression("#o = :me AND #t = :token")
                .expression_attribute_names("#o", "owner")
                .expression_attribute_names("#t", "token")
                .expression_attribute_values(":me", s(&this.inner.run_id))
                .expression_attribute_values(":token", n(token as i64))
                .send()
                .await;
        });
        self.release_later(task);
    }

    fn put_claim(
        &self,
        pk: &str,
        token: u64,
    ) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
        self.table()
            .put(pk)
            .item("owner", s(&self.inner.run_id))
            .item("token", n(token as i64))
            .item("expires_at", n(unix_now() + KEEP_SECS))
    }

    /// The claim's owner and token, if it is held.
    async fn holder(&self, pk: &str) -> Result<Option<(String, i64)>, CoordError> {
        let item = self.table().get(pk).await?;
        Ok(item.and_then(|item| {
            let owner = item.get("owner")?.as_s().ok()?.clone();
            let token = number(item.get("token")?)?;
            Some((owner, token))
        }))
    }
}
