//! Conversations and their participants.
//!
//! Creation is idempotent and race-safe on both back ends: the conversation
//! row is inserted with `ON CONFLICT DO NOTHING` first (so a transaction
//! starts by writing: SQLite takes its write lock at once, PostgreSQL waits
//! on the unique index for a concurrent creator to commit), and only a loser
//! of that race reads what the winner stored to compare.

use std::collections::BTreeSet;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use crate::db::with_conn;
use crate::models::{now_ms, ConversationRow, Participant};
use crate::schema::{conversations, participants};
use crate::{Conversation, Result, Store, StoreError};

/// The kind of the conversations [`Store::direct_conversation`] makes.
pub const DIRECT: &str = "direct";

impl Store {
    /// Creates a conversation of `kind` with `participants`, with the given
    /// id or a generated one. An existing id of the same kind and the same
    /// participants returns the stored conversation; otherwise `Conflict`.
    pub async fn create_conversation(
        &self,
        id: Option<&str>,
        kind: &str,
        participants: &[&str],
    ) -> Result<Conversation> {
        self.observed("INSERT", "conversations", "create_conversation", async {
            let id = match id {
                Some("") => return Err(StoreError::Invalid("empty conversation id".into())),
                Some(id) => id.to_owned(),
                None => generated_id(),
            };
            if kind.is_empty() {
                return Err(StoreError::Invalid("empty conversation kind".into()));
            }
            let wanted: BTreeSet<&str> = participants.iter().copied().collect();
            let now = now_ms();
            let row = ConversationRow {
                id: id.clone(),
                kind: kind.to_owned(),
                created_at: now,
            };
            let members: Vec<Participant> = wanted
                .iter()
                .map(|user| Participant {
                    conversation_id: id.clone(),
                    user_id: (*user).to_owned(),
                    joined_at: now,
                })
                .collect();
            let inner = &*self.inner;
            let stored = with_conn!(inner, conn => {
                conn.transaction(async |conn| {
                    let inserted = diesel::insert_into(conversations::table)
                        .values(&row)
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                    if inserted == 1 {
                        // One row at a time: diesel-async has no multi-row insert
                        // for SQLite, and conversations are created rarely.
                        for member in &members {
                            diesel::insert_into(participants::table)
                                .values(member)
                                .execute(conn)
                                .await?;
                        }
                    }
                    load_conversation!(conn, &id).await
                })
                .await?
            });
            let stored = stored.ok_or_else(|| StoreError::NotFound(format!("conversation {id}")))?;
            let same = stored.kind == kind
                && stored
                    .participants
                    .iter()
                    .map(String::as_str)
                    .eq(wanted.iter().copied());
            if !same {
                return Err(StoreError::Conflict(format!(
                    "conversation {id} exists as {:?} with participants {:?}",
                    stored.kind, stored.participants
                )));
            }
            Ok(stored)
        })
        .await
    }

    /// The conversation `id` with its participants, if it exists.
    pub async fn get_conversation(&self, id: &str) -> Result<Option<Conversation>> {
        self.observed("SELECT", "conversations", "get_conversation", async {
            let inner = &*self.inner;
            with_conn!(inner, conn => load_conversation!(conn, id).await)
        })
        .await
    }

    /// The one direct conversation of users `a` and `b` (in either order),
    /// created on first use. Its id is derived from the two ids, so every
    /// node arrives at the same row.
    pub async fn direct_conversation(&self, a: &str, b: &str) -> Result<Conversation> {
        if a == b || a.is_empty() || b.is_empty() {
            return Err(StoreError::Invalid(
                "a direct conversation needs two different users".into(),
            ));
        }
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        // The length prefix keeps ("a:b", "c") and ("a", "b:c") apart.
        let id = format!("{DIRECT}:{}:{low}:{high}", low.len());
        self.create_conversation(Some(&id), DIRECT, &[low, high]).await
    }

    /// Adds `user` to `conversation`: `true` if they were not in it.
    pub async fn add_participant(&self, conversation: &str, user: &str) -> Result<bool> {
        self.observed("INSERT", "participants", "add_participant", async {
            let row = Participant {
                conversation_id: conversation.to_owned(),
                user_id: user.to_owned(),
                joined_at: now_ms(),
            };
            let inner = &*self.inner;
            let added: Result<usize> = with_conn!(inner, conn => {
                diesel::insert_into(participants::table)
                    .values(&row)
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await
                    .map_err(StoreError::from)
            });
            match added {
                Ok(n) => Ok(n == 1),
                Err(e) if e.is_foreign_key() => Err(StoreError::NotFound(format!("conversation {conversation}"))),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Removes `user` from `conversation`: `true` if they were in it.
    pub async fn remove_participant(&self, conversation: &str, user: &str) -> Result<bool> {
        self.observed("DELETE", "participants", "remove_participant", async {
            let inner = &*self.inner;
            let removed = with_conn!(inner, conn => {
                diesel::delete(
                    participants::table
                        .filter(participants::conversation_id.eq(conversation))
                        .filter(participants::user_id.eq(user)),
                )
                .execute(conn)
                .await?
            });
            Ok(removed == 1)
        })
        .await
    }

    /// Whether `user` takes part in `conversation`.
    pub async fn is_participant(&self, conversation: &str, user: &str) -> Result<bool> {
        self.observed("SELECT", "participants", "is_participant", async {
            let inner = &*self.inner;
            let found = with_conn!(inner, conn => {
                participants::table
                    .filter(participants::conversation_id.eq(conversation))
                    .filter(participants::user_id.eq(user))
                    .select(participants::user_id)
                    .first::<String>(conn)
                    .await
                    .optional()?
            });
            Ok(found.is_some())
        })
        .await
    }

    /// The users who share a conversation with `user` (`user` excluded),
    /// each once: whom presence in "conversations" mode tells (one query; not
    /// the inbox, whose last messages and unread counts it does not need).
    pub async fn partners_of(&self, user: &str) -> Result<Vec<String>> {
        self.observed("SELECT", "participants", "partners_of", async {
            let inner = &*self.inner;
            let mine = diesel::alias!(participants as mine);
            let theirs = mine
                .filter(mine.field(participants::user_id).eq(user))
                .select(mine.field(participants::conversation_id));
            let rows = with_conn!(inner, conn => {
                participants::table
                    .filter(participants::conversation_id.eq_any(theirs))
                    .filter(participants::user_id.ne(user))
                    .select(participants::user_id)
                    .distinct()
                    .order(participants::user_id)
                    .load::<String>(conn)
                    .await?
            });
            Ok(rows)
        })
        .await
    }

    /// The participants of `conversation`, by user id.
    pub async fn participants(&self, conversation: &str) -> Result<Vec<Participant>> {
        self.observed("SELECT", "participants", "participants", async {
            let inner = &*self.inner;
            let rows = with_conn!(inner, conn => {
                participants::table
                    .filter(participants::conversation_id.eq(conversation))
                    .order(participants::user_id)
                    .select(Participant::as_select())
                    .load(conn)
                    .await?
            });
            Ok(rows)
        })
        .await
    }
}

/// Reads a conversation and its participants on `$conn` (either back
/// end): a `Result<Option<Conversation>>` expression, inside an async fn.
macro_rules! load_conversation {
    ($conn:expr, $id:expr) => {
        async {
            let id: &str = $id;
            let row = conversations::table
                .filter(conversations::id.eq(id))
                .select(ConversationRow::as_select())
                .first(&mut *$conn)
                .await
                .optional()?;
            let Some(row) = row else {
                return Ok::<_, StoreError>(None);
            };
            let users = participants::table
                .filter(participants::conversation_id.eq(id))
                .order(participants::user_id)
                .select(participants::user_id)
                .load::<String>(&mut *$conn)
                .await?;
            Ok(Some(Conversation {
                id: row.id,
                kind: row.kind,
                created_at: row.created_at,
                participants: users,
            }))
        }
    };
}
pub(crate) use load_conversation;

/// A random conversation id: 32 hex digits.
fn generated_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
