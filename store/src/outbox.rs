//! The broadcast outbox: a message stays in it (`broadcast_at` NULL) from
//! its commit until the node that stored it (`stored_by`) has done its group
//! send and marked it. What is left in it is what a node stored and did not
//! (say it) broadcast: the hub broadcasts such a message again when its
//! sender repeats it, and a survivor sweeps the outbox of a node that died
//! ([`Store::unbroadcast_of`]).
//!
//! Marks are cheap: [`Store::mark_broadcast`] queues the id to one task that
//! writes everything queued (up to `batch_max`) as one
//! `UPDATE messages SET broadcast_at = ? WHERE id IN (...)`, one statement
//! and commit for many messages, as the appends' group commit does. The
//! partial index `messages_unbroadcast` holds only unmarked rows, so the
//! sweep reads a few rows whatever the size of the table.

use std::sync::Arc;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio::sync::{mpsc, oneshot};

use crate::batching::{answered, Batched};
use crate::db::{with_conn, Db};
use crate::models::{now_ms, MessageRow};
use crate::schema::messages;
use crate::{Message, MessageId, Result, Store, StoreError};

/// One queued mark.
pub(crate) struct PendingMark {
    id: MessageId,
    reply: oneshot::Sender<Batched<Result<()>>>,
}

impl Store {
    /// Marks message `id` broadcast (sets `broadcast_at`, if not set yet);
    /// returns once the mark is committed. Marks of many callers share one
    /// statement.
    pub async fn mark_broadcast(&self, id: MessageId) -> Result<()> {
        // Observed from the queue to the commit of its batch.
        let observation = self.observation("UPDATE", "messages", "mark_broadcast");
        let (reply, answer) = oneshot::channel();
        if self.inner.marks.send(PendingMark { id, reply }).await.is_err() {
            return observation.outcome(Err(StoreError::Closed));
        }
        answered(observation, answer).await
    }

    /// Up to `limit` messages `node` stored and did not mark broadcast,
    /// oldest first, after `after` (the last id of the previous page; none:
    /// from the first).
    pub async fn unbroadcast_of(&self, node: &str, after: Option<MessageId>, limit: usize) -> Result<Vec<Message>> {
        self.observed("SELECT", "messages", "unbroadcast_of", async {
            let after = after.map_or(i64::MIN, |id| id.0);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let inner = &*self.inner;
            let rows: Vec<MessageRow> = with_conn!(inner, conn => {
                messages::table
                    .filter(messages::stored_by.eq(node))
                    .filter(messages::broadcast_at.is_null())
                    .filter(messages::id.gt(after))
                    .order(messages::id.asc())
                    .limit(limit)
                    .select(MessageRow::as_select())
                    .load(conn)
                    .await?
            });
            self.decrypt_all(rows)
        })
        .await
    }
}

impl Store {
    /// Takes the broadcast of those of `ids` that are not marked: marks
    /// them now, in one statement, and returns the ids it marked. Of nodes
    /// racing to broadcast one unmarked message again (a repeat, a dead
    /// node's sweep), one takes it.
    pub async fn take_broadcast(&self, ids: &[MessageId]) -> Result<Vec<MessageId>> {
        self.observed("UPDATE", "messages", "take_broadcast", async {
            let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
            let now = now_ms();
            let inner = &*self.inner;
            let taken: Vec<i64> = with_conn!(inner, conn => {
                diesel::update(messages::table)
                    .filter(messages::id.eq_any(&ids))
                    .filter(messages::broadcast_at.is_null())
                    .set(messages::broadcast_at.eq(now))
                    .returning(messages::id)
                    .get_results(conn)
                    .await?
            });
            Ok(taken.into_iter().map(MessageId).collect())
        })
        .await
    }

    /// Gives a taken broadcast back (it failed): the message is unmarked
    /// again, for a later repeat or sweep.
    pub async fn untake_broadcast(&self, id: MessageId) -> Result<()> {
        self.observed("UPDATE", "messages", "untake_broadcast", async {
            let inner = &*self.inner;
            with_conn!(inner, conn => {
                diesel::update(messages::table)
                    .filter(messages::id.eq(id.0))
                    .set(messages::broadcast_at.eq(None::<i64>))
                    .execute(conn)
                    .await?;
            });
            Ok(())
        })
        .await
    }
}

/// How long marks taken under load wait for others to share their update:
/// marks are off the send's path (nobody waits for them but the outbox's
/// claim), so under load one update marks a few hundred messages instead of
/// a few each. A mark that comes alone is written at once, so that a repeat
/// sent right after the first send (on another node) finds it marked.
const MARK_LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// The mark task: takes what is queued (up to `batch_max`, under load
/// waiting [`MARK_LINGER`] for more) and writes it as one update, with up to
/// `in_flight` updates at once; runs until every [`Store`] handle is gone.
pub(crate) async fn run(
    db: Db,
    acquire_timeout: std::time::Duration,
    round_trips: prometheus::Histogram,
    queue: mpsc::Receiver<PendingMark>,
    batch_max: usize,
    in_flight: usize,
) {
    let marker = Arc::new(Marker {
        db,
        acquire_timeout,
        round_trips,
    });
    crate::batching::gather(
        queue,
        batch_max,
        in_flight,
        MARK_LINGER,
        move |batch: Vec<PendingMark>| {
            let marker = marker.clone();
            async move {
                let ids: Vec<i64> = batch.iter().map(|m| m.id.0).collect();
                let result = marker.mark(&ids).await;
                if let Err(e) = &result {
                    tracing::warn!(error = %e, messages = ids.len(), "could not mark messages broadcast");
                }
                let size = batch.len();
                for pending in batch {
                    // A caller that stopped waiting needs no answer.
                    let _ = pending.reply.send((result.clone(), size));
                }
            }
        },
    )
    .await;
}

struct Marker {
    db: Db,
    acquire_timeout: std::time::Duration,
    /// `hubwire_database_duration_seconds`, shared with the store.
    round_trips: prometheus::Histogram,
}

impl Marker {
    /// One `UPDATE ... WHERE id IN (...) AND broadcast_at IS NULL`.
    async fn mark(&self, ids: &[i64]) -> Result<()> {
        let now = now_ms();
        with_conn!(self, conn => {
            diesel::update(messages::table)
                .filter(messages::id.eq_any(ids))
                .filter(messages::broadcast_at.is_null())
                .set(messages::broadcast_at.eq(now))
                .execute(conn)
                .await?;
        });
        Ok(())
    }
}
