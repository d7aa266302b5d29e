//! Room membership grants of the rooms hub kind: which users may join which
//! room of a hub, as the app's backend granted them through the REST API.
//! Durable (both back ends): a grant outlives node restarts; the node checks
//! it on every join and heartbeat.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::with_conn;
use crate::models::now_ms;
use crate::schema::room_members;
use crate::{Result, Store};

impl Store {
    /// Grants `user` room `room` of hub `hub`: `true` if it was not granted.
    pub async fn grant_room(&self, hub: &str, room: &str, user: &str) -> Result<bool> {
        self.observed("INSERT", "room_members", "grant_room", async {
            let inner = &*self.inner;
            let now = now_ms();
            let added = with_conn!(inner, conn => {
                diesel::insert_into(room_members::table)
                    .values((
                        room_members::hub.eq(hub),
                        room_members::room_id.eq(room),
                        room_members::user_id.eq(user),
                        room_members::granted_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?
            });
            Ok(added == 1)
        })
        .await
    }

    /// Revokes `user`'s grant of room `room` of hub `hub`: `true` if there
    /// was one.
    pub async fn revoke_room(&self, hub: &str, room: &str, user: &str) -> Result<bool> {
        self.observed("DELETE", "room_members", "revoke_room", async {
            let inner = &*self.inner;
            let removed = with_conn!(inner, conn => {
                diesel::delete(
                    room_members::table
                        .filter(room_members::hub.eq(hub))
                        .filter(room_members::room_id.eq(room))
                        .filter(room_members::user_id.eq(user)),
                )
                .execute(conn)
                .await?
            });
            Ok(removed == 1)
        })
        .await
    }

    /// Whether `user` is granted room `room` of hub `hub`.
    pub async fn is_room_member(&self, hub: &str, room: &str, user: &str) -> Result<bool> {
        self.observed("SELECT", "room_members", "is_room_member", async {
            let inner = &*self.inner;
            let found = with_conn!(inner, conn => {
                room_members::table
                    .filter(room_members::hub.eq(hub))
                    .filter(room_members::room_id.eq(room))
                    .filter(room_members::user_id.eq(user))
                    .select(room_members::user_id)
                    .first::<String>(conn)
                    .await
                    .optional()?
            });
            Ok(found.is_some())
        })
        .await
    }

    /// The users granted room `room` of hub `hub`, by id.
    pub async fn room_members(&self, hub: &str, room: &str) -> Result<Vec<String>> {
        self.observed("SELECT", "room_members", "room_members", async {
            let inner = &*self.inner;
            let users = with_conn!(inner, conn => {
                room_members::table
                    .filter(room_members::hub.eq(hub))
                    .filter(room_members::room_id.eq(room))
                    .order(room_members::user_id.asc())
                    .select(room_members::user_id)
                    .load::<String>(conn)
                    .await?
            });
            Ok(users)
        })
        .await
    }
}
