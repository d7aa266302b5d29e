//! The small per-user state held in Redis: rate buckets (one atomic
//! `take_token.lua` on Redis' clock), last-seen times (written by
//! `drop_conn` in the prelude when a user's last connection goes; read here)
//! and cached read positions (plain `SET PX` / `GET`).

use std::time::Duration;

use fred::prelude::KeysInterface;
use fred::types::Expiration;

use super::scripts::{array, int};
use super::Shared;
use crate::names::{HubName, UserId};
use crate::{BackplaneError, Rate, READ_POSITION_TTL};

impl Shared {
    pub(super) async fn take_token(
        &self,
        hub: &HubName,
        user: &UserId,
        bucket: &str,
        limit: u32,
        per: Duration,
    ) -> Result<Rate, BackplaneError> {
        if limit == 0 {
            return Ok(Rate::RetryAfter(per));
        }
        let per_ms = per.as_millis().max(1);
        let keys = vec![self.names.rate(hub, user, bucket)];
        let args = vec![self.names.hub_base(hub), limit.to_string(), per_ms.to_string()];
        let what = self.scripts.take_token.name();
        let mut reply = array(what, self.script(&self.scripts.take_token, keys, args).await?)?.into_iter();
        let mut next = || reply.next().map(|v| int(what, v)).transpose();
        match (next()?, next()?) {
            (Some(1), _) => Ok(Rate::Allowed),
            (Some(0), Some(wait)) => Ok(Rate::RetryAfter(Duration::from_millis(
                u64::try_from(wait).unwrap_or(0),
            ))),
            other => Err(BackplaneError::Unavailable(format!(
                "unexpected reply to {what}: {other:?}"
            ))),
        }
    }

    pub(super) async fn last_seen(&self, hub: &HubName, user: &UserId) -> Result<Option<u64>, BackplaneError> {
        let get = self.client.get::<Option<String>, _>(self.names.last_seen(hub, user));
        let seen = self.call("GET last seen", get).await?;
        Ok(seen.and_then(|ms| ms.parse().ok()))
    }

    pub(super) async fn cache_read_position(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
        position: &str,
    ) -> Result<(), BackplaneError> {
        let ttl = i64::try_from(READ_POSITION_TTL.as_millis()).unwrap_or(i64::MAX);
        let key = self.names.read_position(hub, conversation, user);
        let set = self
            .client
            .set::<(), _, _>(key, position, Some(Expiration::PX(ttl)), None, false);
        self.call("SET read position", set).await
    }

    pub(super) async fn cached_read_position(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
    ) -> Result<Option<String>, BackplaneError> {
        let key = self.names.read_position(hub, conversation, user);
        let get = self.client.get::<Option<String>, _>(key);
        self.call("GET read position", get).await
    }
}
