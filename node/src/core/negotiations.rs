//! The table of negotiated connections (the HTTP side is `web::negotiate`).
//!
//! Negotiate version 1 hands out a public `connectionId` and a secret
//! `connectionToken`; the transport request carries the token as `?id=`, so a
//! connection id seen by other clients (or the REST API) cannot be used to
//! hijack the connection. Version 0 has only the id, which is also the token.
//!
//! A token is bound to the user who negotiated it (a WebSocket authenticated
//! as anyone else is refused with 403), lives `negotiate_ttl_secs` unless a
//! transport claims it (checked on claim, not only when swept), and unused
//! tokens are capped per user (429) and per node (503).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;

use crate::core::config::Config;
use hubwire_backplane::{ConnectionId, HubName, UserId};

/// A fresh random id (16 random bytes, URL-safe base64).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Pending {
    connection_id: ConnectionId,
    hub: HubName,
    /// Who negotiated (`None`: anonymous); only they may connect with it.
    user: Option<UserId>,
    created: Instant,
    active: bool,
    /// Negotiated with `useStatefulReconnect=true` (and the node offers it).
    stateful: bool,
}

/// Why a transport request cannot use a connection token.
#[derive(Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// No such negotiated connection (or another hub's, or expired): 404.
    NotFound,
    /// A transport is already connected with it: 409.
    InUse,
    /// Negotiated by another user than the transport request's: 403.
    WrongUser,
}

/// Why a negotiation was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum NegotiateError {
    /// The user holds `max_pending_negotiations_per_user` unused tokens: 429.
    UserLimit,
    /// The node holds `max_pending_negotiations` unused tokens: 503.
    NodeLimit,
}

/// How often abandoned negotiations are swept (a sweep walks the whole table).
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// At a limit, expired entries are swept before refusing, at most this often
/// (so that refused floods do not walk the table on every request).
const SWEEP_AT_LIMIT_EVERY: Duration = Duration::from_secs(1);

/// How long unused tokens live and how many there may be (0 = unlimited).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Lifetime of an unused token.
    pub ttl: Duration,
    /// Unused tokens per user.
    pub per_user: usize,
    /// Unused tokens on the node.
    pub total: usize,
}

impl Limits {
    /// The limits of `config`.
    pub fn of(config: &Config) -> Self {
        Self {
            ttl: Duration::from_secs(config.negotiate_ttl_secs),
            per_user: config.max_pending_negotiations_per_user,
            total: config.max_pending_negotiations,
        }
    }
}

/// Negotiated connections by token. Unused ("pending") tokens are counted per
/// user and in total; a token stops counting once a transport claims it.
pub struct Negotiations {
    limits: Limits,
    pending: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    by_token: HashMap<String, Pending>,
    pending_total: usize,
    pending_by_user: HashMap<UserId, usize>,
    last_sweep: Option<Instant>,
}

impl Table {
    fn uncount(&mut self, user: Option<&UserId>) {
        self.pending_total -= 1;
        if let Some(user) = user {
            if let Some(n) = self.pending_by_user.get_mut(user) {
                *n -= 1;
                if *n == 0 {
                    self.pending_by_user.remove(user);
                }
            }
        }
    }

    fn sweep(&mut self, now: Instant, ttl: Duration) {
        let expired: Vec<String> = self
            .by_token
            .iter()
            .filter(|(_, p)| !p.active && now.duration_since(p.created) >= ttl)
            .map(|(token, _)| token.clone())
            .collect();
        for token in expired {
            if let Some(p) = self.by_token.remove(&token) {
                self.uncount(p.user.as_ref());
            }
        }
        self.last_sweep = Some(now);
    }

    fn refusal(&self, user: Option<&UserId>, limits: &Limits) -> Option<NegotiateError> {
        if limits.total > 0 && self.pending_total >= limits.total {
            return Some(NegotiateError::NodeLimit);
        }
        let held = user.and_then(|u| self.pending_by_user.get(u)).copied().unwrap_or(0);
        (limits.per_user > 0 && held >= limits.per_user).then_some(NegotiateError::UserLimit)
    }
}

impl Negotiations {
    /// An empty table with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pending: Mutex::default(),
        }
    }

    /// Records a negotiation by `user`; returns `(connection id, connection token)`.
    pub fn create(
        &self,
        hub: &HubName,
        version: u32,
        user: Option<&UserId>,
    ) -> Result<(ConnectionId, String), NegotiateError> {
        let mut table = self.pending.lock();
        let now = Instant::now();
        if table.last_sweep.is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY) {
            table.sweep(now, self.limits.ttl);
        }
        if let Some(refused) = table.refusal(user, &self.limits) {
            if table
                .last_sweep
                .is_some_and(|at| now.duration_since(at) < SWEEP_AT_LIMIT_EVERY)
            {
                return Err(refused);
            }
            table.sweep(now, self.limits.ttl);
            if let Some(refused) = table.refusal(user, &self.limits) {
                return Err(refused);
            }
        }
        let id = random_id();
        let token = if version >= 1 { random_id() } else { id.clone() };
        table.pending_total += 1;
        if let Some(user) = user {
            *table.pending_by_user.entry(user.clone()).or_default() += 1;
        }
        table.by_token.insert(
            token.clone(),
            Pending {
                connection_id: ConnectionId::from(id.clone()),
                hub: hub.clone(),
                user: user.cloned(),
                created: now,
                active: false,
                stateful: false,
            },
        );
        Ok((ConnectionId::from(id), token))
    }

    /// Marks a token as connected by `user` and returns its connection id.
    pub fn claim(&self, token: &str, hub: &HubName, user: Option<&UserId>) -> Result<ConnectionId, ClaimError> {
        let mut table = self.pending.lock();
        let ttl = self.limits.ttl;
        let p = table
            .by_token
            .get_mut(token)
            .filter(|p| p.hub == *hub)
            // Expired but not swept yet: as good as gone.
            .filter(|p| p.active || p.created.elapsed() < ttl)
            .ok_or(ClaimError::NotFound)?;
        if p.user.as_ref() != user {
            return Err(ClaimError::WrongUser);
        }
        if p.active {
            return Err(ClaimError::InUse);
        }
        p.active = true;
        let (id, owner) = (p.connection_id.clone(), p.user.clone());
        table.uncount(owner.as_ref());
        Ok(id)
    }

    /// Forgets a token once its connection ended (it cannot be reused).
    pub fn release(&self, token: &str) {
        let mut table = self.pending.lock();
        if let Some(p) = table.by_token.remove(token) {
            if !p.active {
                table.uncount(p.user.as_ref());
            }
        }
    }

    /// Marks a token as negotiated for stateful reconnect (`useStatefulReconnect`).
    pub fn allow_stateful_reconnect(&self, token: &str) {
        if let Some(p) = self.pending.lock().by_token.get_mut(token) {
            p.stateful = true;
        }
    }

    /// Whether `token` was negotiated for stateful reconnect.
    pub fn is_stateful(&self, token: &str) -> bool {
        self.pending.lock().by_token.get(token).is_some_and(|p| p.stateful)
    }

    /// Unused tokens on this node.
    pub fn pending(&self) -> usize {
        self.pending.lock().pending_total
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table(ttl: Duration, per_user: usize, total: usize) -> Negotiations {
        Negotiations::new(Limits { ttl, per_user, total })
    }

    #[test]
    fn a_token_connects_once_and_only_to_its_hub() {
        let table = table(Duration::from_secs(60), 0, 0);
        let hub = HubName::from("chat");
        let (id, token) = table.create(&hub, 1, None).unwrap();
        assert_ne!(id.as_str(), token, "version 1 keeps the token secret");
        assert_eq!(
            table.claim(&token, &HubName::from("other"), None),
            Err(ClaimError::NotFound)
        );
        assert_eq!(table.claim(&token, &hub, None), Ok(id));
        assert_eq!(table.claim(&token, &hub, None), Err(ClaimError::InUse));
        table.release(&token);
        assert_eq!(table.claim(&token, &hub, None), Err(ClaimError::NotFound));
        let (id0, token0) = table.create(&hub, 0, None).unwrap();
        assert_eq!(id0.as_str(), token0);
    }

    #[test]
    fn only_the_negotiating_user_may_claim_a_token() {
        let table = table(Duration::from_secs(60), 0, 0);
        let hub = HubName::from("chat");
        let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
        let (id, token) = table.create(&hub, 1, Some(&alice)).unwrap();
        assert_eq!(table.claim(&token, &hub, Some(&bob)), Err(ClaimError::WrongUser));
        assert_eq!(table.claim(&token, &hub, None), Err(ClaimError::WrongUser));
        assert_eq!(table.claim(&token, &hub, Some(&alice)), Ok(id));
        let (_, anonymous) = table.create(&hub, 1, None).unwrap();
        assert_eq!(table.claim(&anonymous, &hub, Some(&bob)), Err(ClaimError::WrongUser));
    }

    #[test]
    fn unused_tokens_are_capped_per_user_and_in_total() {
        let table = table(Duration::from_secs(60), 2, 3);
        let hub = HubName::from("chat");
        let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
        let (_, first) = table.create(&hub, 1, Some(&alice)).unwrap();
        table.create(&hub, 1, Some(&alice)).unwrap();
        assert_eq!(table.create(&hub, 1, Some(&alice)), Err(NegotiateError::UserLimit));
        // A claimed token no longer counts.
        table.claim(&first, &hub, Some(&alice)).unwrap();
        table.create(&hub, 1, Some(&alice)).unwrap();
        table.create(&hub, 1, Some(&bob)).unwrap();
        assert_eq!(table.pending(), 3);
        assert_eq!(table.create(&hub, 1, Some(&bob)), Err(NegotiateError::NodeLimit));
        assert_eq!(table.create(&hub, 1, None), Err(NegotiateError::NodeLimit));
    }

    #[test]
    fn expired_tokens_cannot_be_claimed_and_stop_counting() {
        let table = table(Duration::ZERO, 1, 0);
        let hub = HubName::from("chat");
        let alice = UserId::from("alice");
        let (_, token) = table.create(&hub, 1, Some(&alice)).unwrap();
        // Not swept yet, but past its lifetime.
        assert_eq!(table.claim(&token, &hub, Some(&alice)), Err(ClaimError::NotFound));
        // At the limit the expired entry is swept instead of refusing.
        std::thread::sleep(SWEEP_AT_LIMIT_EVERY);
        table.create(&hub, 1, Some(&alice)).unwrap();
        assert_eq!(table.pending(), 1);
    }
}
