//! Group commit of read positions: every [`Store::mark_read`] goes through
//! one task that takes everything queued (up to `batch_max`), coalesces it
//! to the newest position per (conversation, user) and writes the batch in
//! one transaction — one existence check of the messages named, one upsert
//! of every position, one read-back — then answers each caller with its
//! position as stored. A chat's receipts (each reader marks every message it
//! gets) thus cost a few statements per commit instead of three each.
//!
//! Durability: a caller is answered only after the transaction holding its
//! position (or a newer one of the same user in the same conversation, which
//! covers it) committed, exactly as before batching. A mark naming a message
//! that is not in the conversation fails alone with `NotFound`; the others of
//! its batch are written. Rows are written in key order, so that two batches
//! in flight on PostgreSQL lock their rows in the same order (no deadlock).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::{mpsc, oneshot};

use crate::batching::{answered, Batched};
use crate::db::{checkout_postgres, checkout_sqlite, Db};
use crate::models::{now_ms, ReadPositionRow};
use crate::schema::{messages, read_positions};
use crate::{MessageId, ReadPosition, Result, Store, StoreError};

/// One queued mark.
pub(crate) struct PendingRead {
    row: ReadPositionRow,
    reply: oneshot::Sender<Batched<Result<ReadPosition>>>,
}

impl Store {
    /// Marks `conversation` read by `user` up to `message` (which must be a
    /// message of it). The position only moves forward: marking an older
    /// message leaves it. Returns the position as stored afterwards, once it
    /// is committed (group-committed with the other marks of the moment).
    pub async fn mark_read(&self, conversation: &str, user: &str, message: MessageId) -> Result<ReadPosition> {
        let row = ReadPositionRow {
            conversation_id: conversation.to_owned(),
            user_id: user.to_owned(),
            last_read_id: message.0,
            read_at: now_ms(),
        };
        // Observed from the queue to the commit of its batch.
        let observation = self.observation("INSERT", "read_positions", "mark_read");
        let (reply, answer) = oneshot::channel();
        if self.inner.reads.send(PendingRead { row, reply }).await.is_err() {
            return observation.outcome(Err(StoreError::Closed));
        }
        answered(observation, answer).await
    }
}

/// The commit task of read positions: as the messages' (`batching::run`),
/// up to `in_flight` batches committing at once.
pub(crate) async fn run(
    db: Db,
    acquire_timeout: Duration,
    queue: mpsc::Receiver<PendingRead>,
    batch_max: usize,
    in_flight: usize,
) {
    crate::batching::gather(queue, batch_max, in_flight, Duration::ZERO, move |batch| {
        let db = db.clone();
        async move { commit(&db, acquire_timeout, batch).await }
    })
    .await;
}

/// (conversation, user): one read position.
type Key = (String, String);

/// Writes one batch and answers its callers.
async fn commit(db: &Db, acquire_timeout: Duration, batch: Vec<PendingRead>) {
    let size = batch.len();
    let (rows, replies): (Vec<ReadPositionRow>, Vec<_>) = batch.into_iter().map(|p| (p.row, p.reply)).unzip();
    let outcome = match db {
        Db::Postgres(pool) => match checkout_postgres(pool, acquire_timeout).await {
            Ok(mut conn) => write_postgres(&mut conn, &rows).await,
            Err(e) => Err(e),
        },
        Db::Sqlite(pool) => match checkout_sqlite(pool, acquire_timeout).await {
            Ok(mut conn) => {
                let owned = rows.clone();
                conn.spawn_blocking(move |conn| write_sqlite(conn, &owned))
                    .await
                    .map_err(StoreError::from)
            }
            Err(e) => Err(e),
        },
    };
    match outcome {
        Err(e) => {
            for reply in replies {
                let _ = reply.send((Err(e.clone()), size));
            }
        }
        Ok((existing, stored)) => {
            let stored: HashMap<Key, ReadPositionRow> = stored
                .into_iter()
                .map(|row| ((row.conversation_id.clone(), row.user_id.clone()), row))
                .collect();
            for (row, reply) in rows.iter().zip(replies) {
                let answer = if !existing.contains(&(row.last_read_id, row.conversation_id.clone())) {
                    Err(StoreError::NotFound(format!(
                        "message {} in conversation {}",
                        MessageId(row.last_read_id),
                        row.conversation_id
                    )))
                } else {
                    match stored.get(&(row.conversation_id.clone(), row.user_id.clone())) {
                        Some(position) => Ok(ReadPosition {
                            message_id: MessageId(position.last_read_id),
                            read_at: position.read_at,
                        }),
                        // Written in this transaction: only a deletion since (the
                        // conversation's) takes it away.
                        None => Err(StoreError::NotFound(format!("conversation {}", row.conversation_id))),
                    }
                };
                // A caller that stopped waiting (cancelled) needs no answer.
                let _ = reply.send((answer, size));
            }
        }
    }
}

/// The distinct message ids a batch names.
fn named_ids(rows: &[ReadPositionRow]) -> Vec<i64> {
    let ids: HashSet<i64> = rows.iter().map(|r| r.last_read_id).collect();
    ids.into_iter().collect()
}

/// The newest position per key among the marks whose message exists (in
/// its conversation), in key order: what the batch writes.
fn coalesce(rows: &[ReadPositionRow], existing: &HashSet<(i64, String)>) -> Vec<ReadPositionRow> {
    let mut newest: BTreeMap<Key, &ReadPositionRow> = BTreeMap::new();
    for row in rows {
        if !existing.contains(&(row.last_read_id, row.conversation_id.clone())) {
            continue;
        }
        let key = (row.conversation_id.clone(), row.user_id.clone());
        match newest.get(&key) {
            Some(kept) if kept.last_read_id >= row.last_read_id => {}
            _ => {
                newest.insert(key, row);
            }
        }
    }
    newest.into_values().cloned().collect()
}

/// The stored positions of the keys written (the read-back selects a
/// superset — every user of every conversation named — and keeps the keys).
fn of_keys(found: Vec<ReadPositionRow>, written: &[ReadPositionRow]) -> Vec<ReadPositionRow> {
    let keys: HashSet<(&str, &str)> = written
        .iter()
        .map(|r| (r.conversation_id.as_str(), r.user_id.as_str()))
        .collect();
    found
        .into_iter()
        .filter(|r| keys.contains(&(r.conversation_id.as_str(), r.user_id.as_str())))
        .collect()
}

/// What a batch's transaction returns: the (message, conversation) pairs
/// that exist, and the stored positions of the keys written.
type Written = (HashSet<(i64, String)>, Vec<ReadPositionRow>);

/// The batch on PostgreSQL: three statements in one transaction, the upsert
/// one multi-row `INSERT ... ON CONFLICT DO UPDATE ... WHERE` (only a newer
/// message moves a position).
async fn write_postgres(conn: &mut AsyncPgConnection, rows: &[ReadPositionRow]) -> Result<Written> {
    let ids = named_ids(rows);
    conn.transaction(async |conn| {
        let existing: HashSet<(i64, String)> = messages::table
            .filter(messages::id.eq_any(&ids))
            .select((messages::id, messages::conversation_id))
            .load(conn)
            .await?
            .into_iter()
            .collect();
        let newest = coalesce(rows, &existing);
        if newest.is_empty() {
            return Ok((existing, Vec::new()));
        }
        let upsert = diesel::insert_into(read_positions::table)
            .values(&newest)
            .on_conflict((read_positions::conversation_id, read_positions::user_id))
            .do_update()
            .set((
                read_positions::last_read_id.eq(excluded(read_positions::last_read_id)),
                read_positions::read_at.eq(excluded(read_positions::read_at)),
            ));
        diesel::query_dsl::methods::FilterDsl::filter(
            upsert,
            read_positions::last_read_id.lt(excluded(read_positions::last_read_id)),
        )
        .execute(conn)
        .await?;
        let (conversations, users) = names(&newest);
        let found = read_positions::table
            .filter(read_positions::conversation_id.eq_any(&conversations))
            .filter(read_positions::user_id.eq_any(&users))
            .select(ReadPositionRow::as_select())
            .load(conn)
            .await?;
        Ok::<_, StoreError>((existing, of_keys(found, &newest)))
    })
    .await
}

/// The batch on SQLite, in one call onto the blocking pool: an `IMMEDIATE`
/// transaction (it reads before it writes, which a deferred one could not
/// upgrade under another writer), the upsert row by row (calls into the
/// embedded library, no round trips), one commit.
fn write_sqlite(conn: &mut diesel::SqliteConnection, rows: &[ReadPositionRow]) -> QueryResult<Written> {
    // diesel's synchronous `RunQueryDsl`, named: the async one is in scope too.
    use diesel::RunQueryDsl as Sync;
    let ids = named_ids(rows);
    conn.immediate_transaction(|conn| {
        let existing_query = messages::table
            .filter(messages::id.eq_any(&ids))
            .select((messages::id, messages::conversation_id));
        let existing: HashSet<(i64, String)> = Sync::load(existing_query, conn)?.into_iter().collect();
        let newest = coalesce(rows, &existing);
        if newest.is_empty() {
            return Ok((existing, Vec::new()));
        }
        for row in &newest {
            let upsert = diesel::insert_into(read_positions::table)
                .values(row)
                .on_conflict((read_positions::conversation_id, read_positions::user_id))
                .do_update()
                .set((
                    read_positions::last_read_id.eq(excluded(read_positions::last_read_id)),
                    read_positions::read_at.eq(excluded(read_positions::read_at)),
                ));
            let forward = diesel::query_dsl::methods::FilterDsl::filter(
                upsert,
                read_positions::last_read_id.lt(excluded(read_positions::last_read_id)),
            );
            Sync::execute(forward, conn)?;
        }
        let (conversations, users) = names(&newest);
        let found_query = read_positions::table
            .filter(read_positions::conversation_id.eq_any(&conversations))
            .filter(read_positions::user_id.eq_any(&users))
            .select(ReadPositionRow::as_select());
        let found = Sync::load(found_query, conn)?;
        Ok((existing, of_keys(found, &newest)))
    })
}

/// The distinct conversations and users of `rows`.
fn names(rows: &[ReadPositionRow]) -> (Vec<&str>, Vec<&str>) {
    let conversations: HashSet<&str> = rows.iter().map(|r| r.conversation_id.as_str()).collect();
    let users: HashSet<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
    (conversations.into_iter().collect(), users.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(conversation: &str, user: &str, id: i64) -> ReadPositionRow {
        ReadPositionRow {
            conversation_id: conversation.into(),
            user_id: user.into(),
            last_read_id: id,
            read_at: id * 10,
        }
    }

    #[test]
    fn coalesce_keeps_the_newest_existing_position_per_key_in_key_order() {
        let rows = [
            row("c2", "a", 5),
            row("c1", "b", 3),
            row("c1", "b", 7),
            row("c1", "b", 4),
            row("c1", "a", 9),
            row("c1", "a", 99),
        ];
        let existing: HashSet<(i64, String)> = [(5, "c2"), (3, "c1"), (7, "c1"), (4, "c1"), (9, "c1")]
            .into_iter()
            .map(|(id, c)| (id, c.to_owned()))
            .collect();
        let written = coalesce(&rows, &existing);
        let keys: Vec<(&str, &str, i64)> = written
            .iter()
            .map(|r| (r.conversation_id.as_str(), r.user_id.as_str(), r.last_read_id))
            .collect();
        // 99 does not exist: a's position is 9; b's the newest of three.
        assert_eq!(keys, vec![("c1", "a", 9), ("c1", "b", 7), ("c2", "a", 5)]);
        assert_eq!(written[1].read_at, 70);
    }

    #[test]
    fn a_message_of_another_conversation_does_not_count() {
        let existing: HashSet<(i64, String)> = [(5, "c2".to_owned())].into_iter().collect();
        assert!(coalesce(&[row("c1", "a", 5)], &existing).is_empty());
    }

    #[test]
    fn the_read_back_keeps_only_the_keys_written() {
        let found = vec![
            row("c1", "a", 1),
            row("c1", "b", 2),
            row("c2", "a", 3),
            row("c2", "b", 4),
        ];
        let written = [row("c1", "a", 1), row("c2", "b", 4)];
        let kept = of_keys(found, &written);
        assert_eq!(kept, vec![row("c1", "a", 1), row("c2", "b", 4)]);
    }
}
