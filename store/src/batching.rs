//! Group commit: every [`Store::append_message`] goes through one task that
//! takes everything queued (up to `batch_max`), writes it in one
//! transaction and then answers each caller. Thousands of appends per second
//! thus share a few round trips and commits (fsyncs) instead of paying one
//! each, and a caller is answered only after its row committed.
//!
//! Duplicates: appends with the same (conversation, sender,
//! client_message_id) within one batch are written once and all get the
//! stored message (the first `inserted`, the rest not); one that is already
//! stored is skipped by `ON CONFLICT DO NOTHING` and read back. A batch the
//! database refuses for a row's sake (a missing conversation, two nodes'
//! ids colliding) is retried row by row with fresh ids, so one bad append
//! fails alone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::db::{with_conn, Db, SqliteConn};
use crate::id::IdGenerator;
use crate::models::{now_ms, MessageRow};
use crate::observe::Observation;
use crate::schema::messages;
use crate::{Cipher, Message, MessageId, NewMessage, Result, Store, StoreError};

/// What an append is answered with: the stored message and whether this
/// append inserted it.
type Appended = Result<(Message, bool)>;

/// One queued append.
pub(crate) struct Pending {
    message: NewMessage,
    reply: oneshot::Sender<Batched<Appended>>,
}

/// A queued call's answer and the number of calls of its batch (for its
/// observer, `observe`).
pub(crate) type Batched<T> = (T, usize);

/// Waits for the answer of a queued call and tells `observation` its batch.
pub(crate) async fn answered<T>(
    mut observation: Observation,
    answer: oneshot::Receiver<Batched<Result<T>>>,
) -> Result<T> {
    let result = match answer.await {
        Ok((result, size)) => {
            observation.batch(size);
            result
        }
        Err(_) => Err(StoreError::Closed),
    };
    observation.outcome(result)
}

impl Store {
    /// Appends a message and returns it as stored, once it is committed.
    /// `inserted` is false when an earlier append with the same
    /// `client_message_id` (same conversation and sender) stored it: then
    /// the earlier message is returned. The conversation must exist
    /// (`NotFound` otherwise); that the sender may send is the caller's check.
    pub async fn append_message(&self, message: NewMessage) -> Result<(Message, bool)> {
        if let Some(attachments) = &message.attachments {
            serde_json::from_str::<serde::de::IgnoredAny>(attachments)
                .map_err(|e| StoreError::Invalid(format!("attachments are not JSON: {e}")))?;
        }
        // Observed from the queue to the commit of its batch.
        let observation = self.observation("INSERT", "messages", "append_message");
        let (reply, answer) = oneshot::channel();
        if self.inner.appends.send(Pending { message, reply }).await.is_err() {
            return observation.outcome(Err(StoreError::Closed));
        }
        answered(observation, answer).await
    }
}

/// What writing a batch needs: the pool, the id generator, the cipher.
#[derive(Clone)]
pub(crate) struct Committer {
    db: Db,
    acquire_timeout: Duration,
    cipher: Cipher,
    pub(crate) round_trips: prometheus::Histogram,
    /// A std mutex: held only to number a batch, never across an await.
    ids: Arc<Mutex<IdGenerator>>,
}

impl Committer {
    /// A committer writing through `db`.
    pub(crate) fn new(db: Db, acquire_timeout: Duration, cipher: Cipher, round_trips: prometheus::Histogram) -> Self {
        Self {
            db,
            acquire_timeout,
            cipher,
            round_trips,
            ids: Arc::default(),
        }
    }
}

/// The group-commit loop every batched write shares (messages here, read
/// positions in `receipts`, broadcast marks in `outbox`): takes what is
/// queued, up to `batch_max`, as one batch and hands it to `commit`, with up
/// to `in_flight` batches committing at once (while one waits for its
/// commit, the next gathers and starts); runs until every sender is gone
/// and the last batch is answered. With a `linger`, a batch taken under load
/// (more than one was waiting) that is not full waits that long for more
/// before it is written: for writes nobody waits on (broadcast marks), fewer
/// and larger statements when they come in thousands a second, and no delay
/// for one alone.
pub(crate) async fn gather<T, F, Fut>(
    mut queue: mpsc::Receiver<T>,
    batch_max: usize,
    in_flight: usize,
    linger: Duration,
    commit: F,
) where
    T: Send + 'static,
    F: Fn(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    loop {
        // Closed only when this task drops it, below.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut batch = Vec::with_capacity(batch_max);
        if queue.recv_many(&mut batch, batch_max.max(1)).await == 0 {
            break;
        }
        if !linger.is_zero() && batch.len() > 1 && batch.len() < batch_max {
            tokio::time::sleep(linger).await;
            while batch.len() < batch_max {
                match queue.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
        }
        let work = commit(batch);
        tokio::spawn(async move {
            work.await;
            drop(slot);
        });
    }
}

/// The commit task of messages ([`gather`] over [`Committer::commit`]).
pub(crate) async fn run(committer: Committer, queue: mpsc::Receiver<Pending>, batch_max: usize, in_flight: usize) {
    gather(queue, batch_max, in_flight, Duration::ZERO, move |batch| {
        let committer = committer.clone();
        async move { committer.commit(batch).await }
    })
    .await;
}

/// The key that makes appends duplicates of each other.
type DedupKey = (String, String, String);

impl Committer {
    /// Writes one batch and answers its callers.
    async fn commit(&self, batch: Vec<Pending>) {
        let size = batch.len();
        // The first append of each key is written; the others follow it.
        let mut leaders: Vec<Pending> = Vec::with_capacity(batch.len());
        let mut followers: Vec<(usize, oneshot::Sender<Batched<Appended>>)> = Vec::new();
        let mut first_of: HashMap<DedupKey, usize> = HashMap::new();
        for pending in batch {
            let key = pending.message.client_message_id.as_ref().map(|client_id| {
                let m = &pending.message;
                (m.conversation_id.clone(), m.sender_id.clone(), client_id.clone())
            });
            match key.as_ref().and_then(|k| first_of.get(k)) {
                Some(&leader) => followers.push((leader, pending.reply)),
                None => {
                    if let Some(key) = key {
                        first_of.insert(key, leaders.len());
                    }
                    leaders.push(pending);
                }
            }
        }
        let messages: Vec<&NewMessage> = leaders.iter().map(|p| &p.message).collect();
        let mut results = match self.write(&messages).await {
            Err(e) if e.is_constraint() && messages.len() > 1 => {
                tracing::warn!(error = %e, rows = messages.len(), "batch refused; retrying row by row");
                let mut one_by_one = Vec::with_capacity(messages.len());
                for message in &messages {
                    let result = self.write(&[*message]).await.map(|mut rows| rows.remove(0));
                    one_by_one.push(result);
                }
                one_by_one
            }
            Err(e) => vec![Err(e); messages.len()],
            Ok(rows) => rows.into_iter().map(Ok).collect(),
        };
        for result in &mut results {
            if matches!(result, Err(e) if e.is_foreign_key()) {
                *result = Err(StoreError::NotFound("conversation".into()));
            }
        }
        for (leader, reply) in followers {
            let result = results[leader].clone().map(|(message, _)| (message, false));
            // A caller that stopped waiting (cancelled) needs no answer.
            let _ = reply.send((result, size));
        }
        for (pending, result) in leaders.into_iter().zip(results) {
            let _ = pending.reply.send((result, size));
        }
    }

    /// Writes distinct messages in one transaction: each stored message and
    /// whether it was inserted now, in order.
    async fn write(&self, messages: &[&NewMessage]) -> Result<Vec<(Message, bool)>> {
        let now = now_ms();
        let ids: Vec<MessageId> = {
            let mut generator = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
            messages.iter().map(|_| generator.next(now)).collect()
        };
        let mut rows = Vec::with_capacity(messages.len());
        for (message, id) in messages.iter().zip(ids) {
            let (content, key_id) = self.cipher.seal(&message.conversation_id, id, &message.content)?;
            rows.push(MessageRow {
                id: id.0,
                conversation_id: message.conversation_id.clone(),
                sender_id: message.sender_id.clone(),
                content,
                attachments: message.attachments.clone(),
                client_message_id: message.client_message_id.clone(),
                sent_at: now,
                key_id,
                message_type: message.message_type.clone(),
                stored_by: message.stored_by.clone(),
                broadcast_at: None,
            });
        }
        let rows = &rows;
        let stored: Vec<(MessageRow, bool)> = with_conn!(self, conn => {
            conn.transaction(async |conn| {
                let inserted: HashSet<i64> = conn.insert_messages(rows).await?.into_iter().collect();
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    if inserted.contains(&row.id) {
                        out.push((row.clone(), true));
                        continue;
                    }
                    // Skipped: its client_message_id is stored already.
                    let existing = messages::table
                        .filter(messages::conversation_id.eq(&row.conversation_id))
                        .filter(messages::sender_id.eq(&row.sender_id))
                        .filter(messages::client_message_id.eq(&row.client_message_id))
                        .select(MessageRow::as_select())
                        .first(conn)
                        .await?;
                    out.push((existing, false));
                }
                Ok::<_, StoreError>(out)
            })
            .await?
        });
        stored
            .into_iter()
            .map(|(row, inserted)| Ok((decrypt(&self.cipher, row)?, inserted)))
            .collect()
    }
}

/// A stored row as a [`Message`], its content decrypted.
pub(crate) fn decrypt(cipher: &Cipher, row: MessageRow) -> Result<Message> {
    let id = MessageId(row.id);
    let content = cipher.open(&row.conversation_id, id, &row.content, row.key_id.as_deref())?;
    Ok(Message {
        id,
        conversation_id: row.conversation_id,
        sender_id: row.sender_id,
        content,
        attachments: row.attachments,
        client_message_id: row.client_message_id,
        sent_at: row.sent_at,
        key_id: row.key_id,
        message_type: row.message_type,
        stored_by: row.stored_by,
        broadcast_at: row.broadcast_at,
    })
}

/// Inserting message rows, skipping those whose client_message_id is taken:
/// the ids of the rows inserted.
trait InsertMessages {
    async fn insert_messages(&mut self, rows: &[MessageRow]) -> QueryResult<Vec<i64>>;
}

impl InsertMessages for AsyncPgConnection {
    /// One multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING id`.
    async fn insert_messages(&mut self, rows: &[MessageRow]) -> QueryResult<Vec<i64>> {
        diesel::insert_into(messages::table)
            .values(rows)
            .on_conflict((
                messages::conversation_id,
                messages::sender_id,
                messages::client_message_id,
            ))
            .do_nothing()
            .returning(messages::id)
            .get_results(self)
            .await
    }
}

impl InsertMessages for SqliteConn {
    /// Row by row (diesel has no multi-row upsert for SQLite; each is a call
    /// into the embedded library, no round trip), all in one call onto the
    /// blocking pool rather than one per row, in the caller's transaction,
    /// so still one commit.
    async fn insert_messages(&mut self, rows: &[MessageRow]) -> QueryResult<Vec<i64>> {
        let rows = rows.to_vec();
        self.spawn_blocking(move |conn| {
            let mut inserted = Vec::with_capacity(rows.len());
            for row in &rows {
                let insert = diesel::insert_into(messages::table)
                    .values(row)
                    .on_conflict((
                        messages::conversation_id,
                        messages::sender_id,
                        messages::client_message_id,
                    ))
                    .do_nothing()
                    .returning(messages::id);
                // diesel's synchronous `RunQueryDsl`, named: the async one is in scope too.
                let id = diesel::RunQueryDsl::get_result::<i64>(insert, conn).optional()?;
                inserted.extend(id);
            }
            Ok(inserted)
        })
        .await
    }
}
