//! Reading messages (history pages, catch-up), read positions (written by
//! `receipts`), and a
//! user's list of conversations with last message and unread count.
//!
//! Cursors are message ids, exclusive. Ids order by time, so a cursor works
//! on any node; a message another node committed late with a smaller id
//! than a cursor already handed out is not seen by that cursor (clocks of
//! nodes are assumed close; the hub's live delivery covers the gap).

use std::collections::HashMap;

use diesel::dsl::{count_star, max};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;

use crate::batching::decrypt;
use crate::db::with_conn;
use crate::models::{MessageRow, ReadPositionRow};
use crate::schema::{conversations, messages, participants, read_positions};
use crate::{Conversation, ConversationSummary, Message, MessageId, ReadPosition, Result, Store};

diesel::define_sql_function! {
    /// `coalesce(a, b)`: `a` unless it is NULL.
    fn coalesce(a: diesel::sql_types::Nullable<BigInt>, b: BigInt) -> BigInt;
}

impl Store {
    /// Up to `limit` messages of `conversation` after `after` (all, when
    /// none), oldest first: catching up from the last message seen.
    pub async fn messages_after(
        &self,
        conversation: &str,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.observed("SELECT", "messages", "messages_after", async {
            let after = after.map_or(i64::MIN, |id| id.0);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let inner = &*self.inner;
            let rows = with_conn!(inner, conn => {
                messages::table
                    .filter(messages::conversation_id.eq(conversation))
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

    /// Up to `limit` messages of `conversation` before `before` (the newest,
    /// when none), newest first: one page of history.
    pub async fn messages_before(
        &self,
        conversation: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.observed("SELECT", "messages", "messages_before", async {
            let before = before.map_or(i64::MAX, |id| id.0);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let inner = &*self.inner;
            let rows = with_conn!(inner, conn => {
                messages::table
                    .filter(messages::conversation_id.eq(conversation))
                    .filter(messages::id.lt(before))
                    .order(messages::id.desc())
                    .limit(limit)
                    .select(MessageRow::as_select())
                    .load(conn)
                    .await?
            });
            self.decrypt_all(rows)
        })
        .await
    }

    /// The message `id` of `conversation`, if stored.
    pub async fn message(&self, conversation: &str, id: MessageId) -> Result<Option<Message>> {
        self.observed("SELECT", "messages", "message", async {
            let inner = &*self.inner;
            let row = with_conn!(inner, conn => {
                messages::table
                    .filter(messages::conversation_id.eq(conversation))
                    .filter(messages::id.eq(id.0))
                    .select(MessageRow::as_select())
                    .first(conn)
                    .await
                    .optional()?
            });
            row.map(|row| decrypt(&self.inner.cipher, row)).transpose()
        })
        .await
    }

    /// Where `user` has read up to in `conversation`, if anywhere.
    pub async fn read_position(&self, conversation: &str, user: &str) -> Result<Option<ReadPosition>> {
        self.observed("SELECT", "read_positions", "read_position", async {
            let inner = &*self.inner;
            let stored = with_conn!(inner, conn => {
                read_positions::table
                    .filter(read_positions::conversation_id.eq(conversation))
                    .filter(read_positions::user_id.eq(user))
                    .select(ReadPositionRow::as_select())
                    .first(conn)
                    .await
                    .optional()?
            });
            Ok(stored.map(|row| ReadPosition {
                message_id: MessageId(row.last_read_id),
                read_at: row.read_at,
            }))
        })
        .await
    }

    /// The conversations `user` takes part in, each with its newest message
    /// and the number of messages of others after the user's read position;
    /// most recently active first. Four queries, whatever the count.
    pub async fn conversations_of(&self, user: &str) -> Result<Vec<ConversationSummary>> {
        self.observed("SELECT", "conversations", "conversations_of", async {
            let inner = &*self.inner;
            let reader = user.to_owned();
            let (rows, members, last_rows, unread) = with_conn!(inner, conn => {
                let rows: Vec<(String, String, i64)> = conversations::table
                    .inner_join(participants::table)
                    .filter(participants::user_id.eq(user))
                    .select((conversations::id, conversations::kind, conversations::created_at))
                    .load(conn)
                    .await?;
                let ids: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
                let members: Vec<(String, String)> = participants::table
                    .filter(participants::conversation_id.eq_any(&ids))
                    .order((participants::conversation_id, participants::user_id))
                    .select((participants::conversation_id, participants::user_id))
                    .load(conn)
                    .await?;
                let newest: Vec<Option<i64>> = messages::table
                    .filter(messages::conversation_id.eq_any(&ids))
                    .group_by(messages::conversation_id)
                    .select(max(messages::id))
                    .load(conn)
                    .await?;
                let newest: Vec<i64> = newest.into_iter().flatten().collect();
                let last_rows: Vec<MessageRow> = messages::table
                    .filter(messages::id.eq_any(&newest))
                    .select(MessageRow::as_select())
                    .load(conn)
                    .await?;
                let unread: Vec<(String, i64)> = messages::table
                    .inner_join(
                        participants::table.on(participants::conversation_id
                            .eq(messages::conversation_id)
                            .and(participants::user_id.eq(reader.clone()))),
                    )
                    .left_join(
                        read_positions::table.on(read_positions::conversation_id
                            .eq(messages::conversation_id)
                            .and(read_positions::user_id.eq(reader.clone()))),
                    )
                    .filter(messages::sender_id.ne(reader.clone()))
                    .filter(messages::id.gt(coalesce(read_positions::last_read_id.nullable(), i64::MIN)))
                    .group_by(messages::conversation_id)
                    .select((messages::conversation_id, count_star()))
                    .load(conn)
                    .await?;
                (rows, members, last_rows, unread)
            });
            let mut people: HashMap<String, Vec<String>> = HashMap::new();
            for (conversation, member) in members {
                people.entry(conversation).or_default().push(member);
            }
            let mut last: HashMap<String, Message> = HashMap::new();
            for row in last_rows {
                let message = decrypt(&self.inner.cipher, row)?;
                last.insert(message.conversation_id.clone(), message);
            }
            let unread: HashMap<String, i64> = unread.into_iter().collect();
            let mut out: Vec<ConversationSummary> = rows
                .into_iter()
                .map(|(id, kind, created_at)| ConversationSummary {
                    last_message: last.remove(&id),
                    unread: unread.get(&id).copied().unwrap_or(0).max(0).unsigned_abs(),
                    conversation: Conversation {
                        participants: people.remove(&id).unwrap_or_default(),
                        id,
                        kind,
                        created_at,
                    },
                })
                .collect();
            out.sort_by_key(|s| {
                // Message ids order by time and never tie.
                let active = s
                    .last_message
                    .as_ref()
                    .map_or(MessageId::first_at(s.conversation.created_at), |m| m.id);
                (std::cmp::Reverse(active), s.conversation.id.clone())
            });
            Ok(out)
        })
        .await
    }

    pub(crate) fn decrypt_all(&self, rows: Vec<MessageRow>) -> Result<Vec<Message>> {
        rows.into_iter().map(|row| decrypt(&self.inner.cipher, row)).collect()
    }
}
