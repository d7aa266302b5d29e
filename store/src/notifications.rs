//! Notifications of the notifications hub kind: each addressed to one
//! audience of a hub (a user, a tenant, a channel, or everyone), and each
//! user's state of it (`acknowledged_at`, `read_at`).
//!
//! A user's notifications are those of their audiences: addressed to them,
//! to their tenant, to one of the channels the caller names, or to all.
//! Ids are time-ordered like message ids ([`crate::id`]), so "newest first"
//! and the `before` cursor are an index range. Each node's ids only
//! increase, but two nodes can pick the same one in the same millisecond
//! (random low bits): the primary key refuses the second, and
//! [`Store::create_notifications`] retries that batch with fresh ids.
//!
//! Retention ([`Store::run_notification_retention`]) deletes a hub's
//! notifications older than its days, in chunks; on PostgreSQL under the
//! advisory lock [`NOTIFICATION_RETENTION_LOCK`], so one node at a time.

use std::sync::{Mutex, PoisonError};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

use crate::db::{checkout_postgres, with_conn, Db};
use crate::id::IdGenerator;
use crate::models::now_ms;
use crate::schema::{notification_states, notifications};
use crate::{MessageId, Result, Store, StoreError};

/// The PostgreSQL advisory lock a notification retention run holds.
pub const NOTIFICATION_RETENTION_LOCK: i64 = 0x6875_6277_6972_0003;

/// Notifications deleted per statement.
const CHUNK: i64 = 1000;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The ids of this process's notifications.
static IDS: Mutex<IdGenerator> = Mutex::new(IdGenerator::new());

/// Times a batch is tried when its ids collide with stored ones (another
/// node's of the same millisecond): one collision is rare, several in a row
/// mean something else is wrong.
const ID_ATTEMPTS: usize = 5;

/// `n` fresh ids for notifications made at `now` (Unix ms).
fn fresh_ids(now: i64, n: usize) -> Vec<MessageId> {
    let mut ids = IDS.lock().unwrap_or_else(PoisonError::into_inner);
    (0..n).map(|_| ids.next(now)).collect()
}

/// Who a notification is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "audience", content = "to", rename_all = "lowercase")]
pub enum Audience {
    /// One user (all their connections).
    User(String),
    /// Every user of a tenant (the token's `tenant` claim).
    Tenant(String),
    /// The subscribers of a channel.
    Channel(String),
    /// Everyone of the hub.
    All,
}

impl Audience {
    fn columns(&self) -> (&'static str, &str) {
        match self {
            Self::User(u) => ("user", u),
            Self::Tenant(t) => ("tenant", t),
            Self::Channel(c) => ("channel", c),
            Self::All => ("all", ""),
        }
    }

    fn from_columns(audience: &str, id: String) -> Self {
        match audience {
            "user" => Self::User(id),
            "tenant" => Self::Tenant(id),
            "channel" => Self::Channel(id),
            _ => Self::All,
        }
    }
}

/// A notification to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNotification {
    /// The hub's name.
    pub hub: String,
    /// Who it is for.
    pub audience: Audience,
    /// Its type.
    pub kind: String,
    /// Its title.
    pub title: String,
    /// Its body.
    pub body: Option<String>,
    /// JSON text.
    pub data: Option<String>,
}

/// A stored notification, with one user's state of it when read for a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Time-ordered id.
    pub id: MessageId,
    /// The hub's name.
    pub hub: String,
    /// Who it is for.
    pub audience: Audience,
    /// Its type.
    pub kind: String,
    /// Its title.
    pub title: String,
    /// Its body.
    pub body: Option<String>,
    /// JSON text.
    pub data: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When the user acknowledged it (Unix ms); none: not yet.
    pub acknowledged_at: Option<i64>,
    /// When the user read it (Unix ms); none: not yet.
    pub read_at: Option<i64>,
}

/// The user a query or a state change is for: their id, tenant, and the
/// channels whose notifications count as theirs.
#[derive(Clone, Copy, Debug)]
pub struct Recipient<'a> {
    /// The user id.
    pub user: &'a str,
    /// Their tenant, if any.
    pub tenant: Option<&'a str>,
    /// Channels they are subscribed to.
    pub channels: &'a [String],
}

#[derive(Insertable)]
#[diesel(table_name = notifications)]
#[diesel(treat_none_as_default_value = false)]
struct NotificationRow<'a> {
    id: i64,
    hub: &'a str,
    audience: &'a str,
    audience_id: &'a str,
    kind: &'a str,
    title: &'a str,
    body: Option<&'a str>,
    data: Option<&'a str>,
    created_at: i64,
}

type Loaded = (
    (
        i64,
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
    ),
    Option<i64>,
    Option<i64>,
);

fn notification(
    ((id, hub, audience, audience_id, kind, title, body, data, created_at), ack, read): Loaded,
) -> Notification {
    Notification {
        id: MessageId(id),
        hub,
        audience: Audience::from_columns(&audience, audience_id),
        kind,
        title,
        body,
        data,
        created_at,
        acknowledged_at: ack,
        read_at: read,
    }
}

/// `batch` as stored with `ids` at `now`, no user's state yet.
fn stored(batch: &[NewNotification], ids: Vec<MessageId>, now: i64) -> Vec<Notification> {
    batch
        .iter()
        .zip(ids)
        .map(|(n, id)| Notification {
            id,
            hub: n.hub.clone(),
            audience: n.audience.clone(),
            kind: n.kind.clone(),
            title: n.title.clone(),
            body: n.body.clone(),
            data: n.data.clone(),
            created_at: now,
            acknowledged_at: None,
            read_at: None,
        })
        .collect()
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// The query of `hub`'s notifications of `$recipient`, with their state.
/// What a read of notifications selects: the notification's columns and
/// the reader's acknowledged / read times (of the left-joined state row).
macro_rules! columns {
    () => {
        (
            notification_columns!(),
            notification_states::acknowledged_at.nullable(),
            notification_states::read_at.nullable(),
        )
    };
}

/// A notification's own columns (no reader's state).
macro_rules! notification_columns {
    () => {
        (
            notifications::id,
            notifications::hub,
            notifications::audience,
            notifications::audience_id,
            notifications::kind,
            notifications::title,
            notifications::body,
            notifications::data,
            notifications::created_at,
        )
    };
}

macro_rules! of_recipient {
    ($hub:expr, $user:expr, $tenant:expr, $channels:expr) => {
        notifications::table
            .left_join(
                notification_states::table.on(notification_states::notification_id
                    .eq(notifications::id)
                    .and(notification_states::user_id.eq($user))),
            )
            .filter(notifications::hub.eq($hub))
            .filter(
                notifications::audience
                    .eq("user")
                    .and(notifications::audience_id.eq($user))
                    .or(notifications::audience
                        .eq("tenant")
                        .and(notifications::audience_id.eq($tenant)))
                    .or(notifications::audience
                        .eq("channel")
                        .and(notifications::audience_id.eq_any($channels)))
                    .or(notifications::audience.eq("all")),
            )
            .select(columns!())
    };
}

/// Deletes `hub`'s notifications created before `cutoff`, and their states.
macro_rules! delete_older {
    ($conn:expr, $hub:expr, $cutoff:expr) => {
        async {
            let mut deleted = 0u64;
            loop {
                let ids: Vec<i64> = notifications::table
                    .filter(notifications::hub.eq($hub))
                    .filter(notifications::created_at.lt($cutoff))
                    .select(notifications::id)
                    .limit(CHUNK)
                    .load(&mut *$conn)
                    .await?;
                if ids.is_empty() {
                    return Ok::<_, StoreError>(deleted);
                }
                diesel::delete(notification_states::table.filter(notification_states::notification_id.eq_any(&ids)))
                    .execute(&mut *$conn)
                    .await?;
                let n = diesel::delete(notifications::table.filter(notifications::id.eq_any(&ids)))
                    .execute(&mut *$conn)
                    .await?;
                deleted += n as u64;
            }
        }
    };
}
/// Which state a change sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Acknowledge,
    Read,
}

impl Store {
    /// Stores `batch` in one transaction; returns them with their ids (in
    /// order). Ids another node stored first (a primary-key violation) are
    /// replaced by fresh ones and the batch tried again, up to
    /// [`ID_ATTEMPTS`] times.
    pub async fn create_notifications(&self, batch: &[NewNotification]) -> Result<Vec<Notification>> {
        self.create_notifications_with(batch, fresh_ids).await
    }

    /// [`Store::create_notifications`] with ids from `ids_for(now, n)`.
    async fn create_notifications_with(
        &self,
        batch: &[NewNotification],
        mut ids_for: impl FnMut(i64, usize) -> Vec<MessageId> + Send,
    ) -> Result<Vec<Notification>> {
        self.observed("INSERT", "notifications", "create_notifications", async {
            if batch.is_empty() {
                return Ok(Vec::new());
            }
            let mut attempt = 1;
            loop {
                let now = now_ms();
                let ids = ids_for(now, batch.len());
                match self.insert_notifications(batch, &ids, now).await {
                    Ok(()) => return Ok(stored(batch, ids, now)),
                    Err(e) if e.is_unique_violation() && attempt < ID_ATTEMPTS => {
                        tracing::warn!(error = %e, attempt, rows = batch.len(), "notification ids taken (another node's): retrying with fresh ids");
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .await
    }

    /// Inserts `batch` with `ids` at `now` in one transaction.
    async fn insert_notifications(&self, batch: &[NewNotification], ids: &[MessageId], now: i64) -> Result<()> {
        let rows: Vec<NotificationRow<'_>> = batch
            .iter()
            .zip(ids)
            .map(|(n, id)| {
                let (audience, audience_id) = n.audience.columns();
                NotificationRow {
                    id: id.0,
                    hub: &n.hub,
                    audience,
                    audience_id,
                    kind: &n.kind,
                    title: &n.title,
                    body: n.body.as_deref(),
                    data: n.data.as_deref(),
                    created_at: now,
                }
            })
            .collect();
        let inner = &*self.inner;
        let rows = &rows;
        with_conn!(inner, conn => {
            // One transaction, row by row (SQLite's diesel has no multi-row
            // insert of optional values): a batch is stored whole or not at all.
            conn.transaction(async |conn| {
                for row in rows {
                    diesel::insert_into(notifications::table)
                        .values(row)
                        .execute(conn)
                        .await?;
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        });
        Ok(())
    }

    /// Up to `limit` of the notifications addressed to `channel` of `hub`,
    /// newest first, older than `before` (none: from the newest); no user's
    /// state (`acknowledged_at`, `read_at` are none).
    pub async fn channel_notifications(
        &self,
        hub: &str,
        channel: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        self.observed("SELECT", "notifications", "channel_notifications", async {
            let before = before.map_or(i64::MAX, |id| id.0);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let inner = &*self.inner;
            let rows: Vec<Loaded> = with_conn!(inner, conn => {
                notifications::table
                    .filter(notifications::hub.eq(hub))
                    .filter(notifications::audience.eq("channel"))
                    .filter(notifications::audience_id.eq(channel))
                    .filter(notifications::id.lt(before))
                    .select(notification_columns!())
                    .order(notifications::id.desc())
                    .limit(limit)
                    .load(conn)
                    .await?
                    .into_iter()
                    .map(|row| (row, None, None))
                    .collect()
            });
            Ok(rows.into_iter().map(notification).collect())
        })
        .await
    }

    /// Up to `limit` of `hub`'s notifications of `recipient`, newest first,
    /// older than `before` (none: from the newest); only those not read when
    /// `unread_only`.
    pub async fn notifications_of(
        &self,
        hub: &str,
        recipient: Recipient<'_>,
        unread_only: bool,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        self.observed("SELECT", "notifications", "notifications_of", async {
            let before = before.map_or(i64::MAX, |id| id.0);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            // No tenant, no channel: values no notification is addressed to.
            let tenant = recipient.tenant.unwrap_or("");
            let mut channels: Vec<&str> = recipient.channels.iter().map(String::as_str).collect();
            if channels.is_empty() {
                channels.push("");
            }
            let user = recipient.user;
            let inner = &*self.inner;
            let rows: Vec<Loaded> = with_conn!(inner, conn => {
                if unread_only {
                    of_recipient!(hub, user, tenant, &channels)
                        .filter(notifications::id.lt(before))
                        .filter(notification_states::read_at.is_null())
                        .order(notifications::id.desc())
                        .limit(limit)
                        .load(conn)
                        .await?
                } else {
                    of_recipient!(hub, user, tenant, &channels)
                        .filter(notifications::id.lt(before))
                        .order(notifications::id.desc())
                        .limit(limit)
                        .load(conn)
                        .await?
                }
            });
            Ok(rows.into_iter().map(notification).collect())
        })
        .await
    }

    /// `recipient` acknowledged notification `id` of `hub` (the first time
    /// counts); returns it with their state, `NotFound` when it is not one
    /// of theirs.
    pub async fn acknowledge_notification(
        &self,
        hub: &str,
        id: MessageId,
        recipient: Recipient<'_>,
    ) -> Result<Notification> {
        self.change_state(hub, id, recipient, Change::Acknowledge).await
    }

    /// `recipient` read notification `id` of `hub` (the first time counts;
    /// reading acknowledges too); returns it with their state, `NotFound`
    /// when it is not one of theirs.
    pub async fn read_notification(&self, hub: &str, id: MessageId, recipient: Recipient<'_>) -> Result<Notification> {
        self.change_state(hub, id, recipient, Change::Read).await
    }

    async fn change_state(
        &self,
        hub: &str,
        id: MessageId,
        recipient: Recipient<'_>,
        change: Change,
    ) -> Result<Notification> {
        let method = match change {
            Change::Acknowledge => "acknowledge_notification",
            Change::Read => "read_notification",
        };
        self.observed("UPDATE", "notification_states", method, async {
            let tenant = recipient.tenant.unwrap_or("");
            let mut channels: Vec<&str> = recipient.channels.iter().map(String::as_str).collect();
            channels.push("");
            let user = recipient.user;
            let now = now_ms();
            let inner = &*self.inner;
            let found: Option<Loaded> = with_conn!(inner, conn => {
                // Any channel: a subscription may have ended since.
                let row: Option<Loaded> = of_recipient!(hub, user, tenant, &channels)
                    .filter(notifications::id.eq(id.0))
                    .first(conn)
                    .await
                    .optional()?;
                let row = row.or({
                    notifications::table
                        .left_join(
                            notification_states::table.on(notification_states::notification_id
                                .eq(notifications::id)
                                .and(notification_states::user_id.eq(user))),
                        )
                        .filter(notifications::hub.eq(hub))
                        .filter(notifications::id.eq(id.0))
                        .filter(notifications::audience.eq("channel"))
                        .select(columns!())
                        .first(conn)
                        .await
                        .optional()?
                });
                if row.is_some() {
                    diesel::insert_into(notification_states::table)
                        .values((
                            notification_states::notification_id.eq(id.0),
                            notification_states::user_id.eq(user),
                        ))
                        .on_conflict((notification_states::notification_id, notification_states::user_id))
                        .do_nothing()
                        .execute(conn)
                        .await?;
                    let state = notification_states::table
                        .filter(notification_states::notification_id.eq(id.0))
                        .filter(notification_states::user_id.eq(user));
                    diesel::update(state.filter(notification_states::acknowledged_at.is_null()))
                        .set(notification_states::acknowledged_at.eq(now))
                        .execute(conn)
                        .await?;
                    if change == Change::Read {
                        diesel::update(state.filter(notification_states::read_at.is_null()))
                            .set(notification_states::read_at.eq(now))
                            .execute(conn)
                            .await?;
                    }
                    let (ack, read): (Option<i64>, Option<i64>) = state
                        .select((notification_states::acknowledged_at, notification_states::read_at))
                        .first(conn)
                        .await?;
                    row.map(|(n, _, _)| (n, ack, read))
                } else {
                    None
                }
            });
            found
                .map(notification)
                .ok_or_else(|| StoreError::NotFound(format!("no notification '{id}' for this user")))
        })
        .await
    }

    /// One retention run of `hub`'s notifications as of `now_ms`: those
    /// created more than `days` days before are deleted with their states.
    /// Returns how many, or `None` when another node holds the lock
    /// (PostgreSQL) and the run was skipped.
    pub async fn run_notification_retention(&self, hub: &str, days: u32, now_ms: i64) -> Result<Option<u64>> {
        let cutoff = now_ms - i64::from(days) * DAY_MS;
        let inner = &*self.inner;
        match &inner.db {
            Db::Postgres(pool) => {
                let mut conn = checkout_postgres(pool, inner.acquire_timeout).await?;
                let conn = &mut *conn;
                let lock = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                    .bind::<BigInt, _>(NOTIFICATION_RETENTION_LOCK)
                    .get_result::<Locked>(conn)
                    .await?;
                if !lock.locked {
                    return Ok(None);
                }
                let result = delete_older!(conn, hub, cutoff).await;
                let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
                    .bind::<BigInt, _>(NOTIFICATION_RETENTION_LOCK)
                    .execute(conn)
                    .await;
                let deleted = result?;
                unlocked?;
                Ok(Some(deleted))
            }
            Db::Sqlite(pool) => {
                let mut conn = crate::db::checkout_sqlite(pool, inner.acquire_timeout).await?;
                let conn = &mut *conn;
                Ok(Some(delete_older!(conn, hub, cutoff).await?))
            }
        }
    }

    /// How often retention jobs run (`retention_interval_secs`).
    pub fn retention_interval(&self) -> std::time::Duration {
        self.inner.retention_interval
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::StoreConfig;

    fn one(title: &str) -> NewNotification {
        NewNotification {
            hub: "n".into(),
            audience: Audience::User("alice".into()),
            kind: "k".into(),
            title: title.into(),
            body: None,
            data: None,
        }
    }

    /// Two nodes picking the same id: the second batch's first try collides
    /// with the first's stored row, and it is stored whole with fresh ids.
    async fn a_taken_id_is_retried_with_a_fresh_one(config: StoreConfig) {
        let store = Store::open(&config).await.unwrap();
        let first = store.create_notifications(&[one("first")]).await.unwrap();
        let taken = first[0].id;
        let mut tries = 0;
        let second = store
            .create_notifications_with(&[one("second a"), one("second b")], |now, n| {
                tries += 1;
                match tries {
                    // The other node's id, then one of ours.
                    1 => vec![MessageId(taken.0 + 1), taken],
                    _ => fresh_ids(now, n),
                }
            })
            .await
            .unwrap();
        assert_eq!(tries, 2);
        assert!(second.iter().all(|n| n.id != taken && n.id.0 != taken.0 + 1));
        let recipient = Recipient {
            user: "alice",
            tenant: None,
            channels: &[],
        };
        let all = store.notifications_of("n", recipient, false, None, 50).await.unwrap();
        let mut titles: Vec<&str> = all.iter().map(|n| n.title.as_str()).collect();
        titles.sort_unstable();
        assert_eq!(
            titles,
            ["first", "second a", "second b"],
            "nothing of the failed try stayed"
        );
        assert_eq!(all.iter().find(|n| n.id == taken).unwrap().title, "first");

        // Ids that keep colliding give up after ID_ATTEMPTS tries.
        let mut tries = 0;
        let refused = store
            .create_notifications_with(&[one("never")], |_, _| {
                tries += 1;
                vec![taken]
            })
            .await
            .unwrap_err();
        assert!(refused.is_unique_violation(), "{refused}");
        assert_eq!(tries, ID_ATTEMPTS);
    }

    #[tokio::test]
    async fn a_taken_id_is_retried_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        a_taken_id_is_retried_with_a_fresh_one(StoreConfig {
            data_dir: dir.path().to_owned(),
            ..StoreConfig::default()
        })
        .await;
    }

    #[tokio::test]
    async fn a_taken_id_is_retried_on_postgres() {
        let server = hubwire_test_support::postgres::PostgresServer::start();
        a_taken_id_is_retried_with_a_fresh_one(StoreConfig {
            database_url: Some(server.url()),
            ..StoreConfig::default()
        })
        .await;
    }
}
