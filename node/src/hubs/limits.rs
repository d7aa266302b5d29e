//! The call limits the notifications, rooms and groups kinds share: per-user
//! call rates of `[hub.limits]` (token buckets cluster-wide, the chat kind's
//! [`Node::rate_wait`]) and the refusal of an input beyond its size. Every
//! refusal is a `HubException` naming the limit's field, counted in
//! `hubwire_limit_refusals_total{hub, limit}`.
//!
//! # Rules
//! - Limits are checked at the top of a method: its arguments' sizes first
//!   (a refused input takes no token), then its rate, before any store,
//!   keyspace or group work — a refused call costs one bucket take.
//! - When the backplane cannot answer a bucket take the call goes ahead
//!   (logged), as the chat kind's sends do.
//! - An anonymous caller (an `anonymous_hubs` hub) has a bucket per
//!   connection instead of per user.

use crate::core::hub::{HubCall, HubError};
use crate::core::metrics::Limit;
use crate::core::node::Node;
use crate::hubs::definition::Limits;
use hubwire_backplane::{HubName, UserId};

/// A per-user call rate of `[hub.limits]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallRate {
    /// Subscribes and unsubscribes (`subscriptions_per_minute`).
    Subscriptions,
    /// Room heartbeats (`heartbeats_per_minute`).
    Heartbeats,
    /// Notification acknowledgements and reads (`acks_per_minute`).
    Acks,
    /// Relays to a group (`relays_per_minute`).
    Relays,
}

impl CallRate {
    /// Its field in `[hub.limits]`, what it counts, its metric label.
    fn describe(self) -> (&'static str, &'static str, Limit) {
        match self {
            Self::Subscriptions => (
                "subscriptions_per_minute",
                "subscribes and unsubscribes",
                Limit::SubscriptionRate,
            ),
            Self::Heartbeats => ("heartbeats_per_minute", "heartbeats", Limit::HeartbeatRate),
            Self::Acks => ("acks_per_minute", "acknowledgements and reads", Limit::AckRate),
            Self::Relays => ("relays_per_minute", "relays", Limit::RelayRate),
        }
    }

    /// Its calls per user per minute in `limits` (0: no limit).
    pub fn per_minute(self, limits: &Limits) -> u32 {
        match self {
            Self::Subscriptions => limits.subscriptions_per_minute,
            Self::Heartbeats => limits.heartbeats_per_minute,
            Self::Acks => limits.acks_per_minute,
            Self::Relays => limits.relays_per_minute,
        }
    }

    /// The refusal text of a call beyond `per_minute`, retry in `retry_secs`.
    pub fn refusal(self, per_minute: u32, retry_secs: u64) -> String {
        let (field, what, _) = self.describe();
        format!("Rate limit exceeded: {per_minute} {what} per minute (limits.{field}); retry in {retry_secs} s.")
    }
}

/// Takes a token of the caller's `rate` bucket: refused (counted) when it
/// is empty.
pub async fn check_rate(call: &HubCall, limits: &Limits, rate: CallRate) -> Result<(), HubError> {
    let per_minute = rate.per_minute(limits);
    let caller = &call.caller;
    let key = caller
        .user()
        .cloned()
        .unwrap_or_else(|| UserId::from(format!("connection:{}", caller.id)));
    let (_, _, limit) = rate.describe();
    match call.node.rate_wait(&caller.hub, &key, limit, per_minute).await {
        None => Ok(()),
        Some(retry_secs) => Err(HubError::Hub(rate.refusal(per_minute, retry_secs))),
    }
}

/// An input refused by a limit: counted under `limit`, a `HubException`
/// with `text` (which names the limit's field).
pub fn input_refused(node: &Node, hub: &HubName, limit: Limit, text: String) -> HubError {
    node.metrics.refused(hub.as_str(), limit);
    HubError::Hub(text)
}

/// Refuses `value` (`what`, for the text) when it is empty or longer than
/// `max` characters, naming `field`.
pub fn check_chars(what: &str, value: &str, max: usize, field: &str) -> Result<(), String> {
    if value.is_empty() || value.chars().count() > max {
        return Err(format!("{what} must be 1 to {max} characters ({field})."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_field() {
        assert_eq!(
            CallRate::Heartbeats.refusal(120, 3),
            "Rate limit exceeded: 120 heartbeats per minute (limits.heartbeats_per_minute); retry in 3 s."
        );
        assert!(CallRate::Subscriptions
            .refusal(1, 1)
            .contains("(limits.subscriptions_per_minute)"));
        assert!(CallRate::Acks.refusal(1, 1).contains("(limits.acks_per_minute)"));
        assert!(CallRate::Relays.refusal(1, 1).contains("(limits.relays_per_minute)"));
        assert_eq!(
            check_chars("A channel name", &"c".repeat(129), 128, "notifications.max_name_chars"),
            Err("A channel name must be 1 to 128 characters (notifications.max_name_chars).".into())
        );
        assert!(check_chars("A channel name", "", 128, "f").is_err());
        assert!(check_chars("A channel name", &"é".repeat(128), 128, "f").is_ok());
    }
}
