//! Admission of connections, decided before the 101 of a WebSocket upgrade or
//! the answer to the first request of an SSE / long-polling connection: a
//! node-wide cap on connections, and a cap on those still in their SignalR
//! handshake, overall and per client address.
//!
//! An admitted socket holds a [`SocketPermit`] for its whole life and a
//! [`HandshakePermit`] until its handshake completes. A permit gives its place
//! back when dropped, so no path out of a connection (refusal, error, panic)
//! can leak one. The per-user limit is not here: it is cluster-wide and lives
//! in the backplane's `register`, which the transport calls before the 101.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use prometheus::IntGauge;

use crate::core::config::Config;
use crate::core::metrics::{Metrics, RefusalReason};

/// Open files the default `max_connections` leaves to everything that is not
/// a WebSocket: stdio, the listener, the runtimes' epoll and wake-up
/// descriptors (two per worker), Redis connections, and short HTTP requests
/// such as `/healthz`, `/metrics` and the REST API.
pub const RESERVED_FILES: usize = 64;

/// The default `max_connections`: the open-file soft limit minus
/// [`RESERVED_FILES`] (at least 1; unlimited when the limit is).
pub fn default_max_connections() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    match limit.current {
        Some(soft) => usize::try_from(soft)
            .unwrap_or(usize::MAX)
            .saturating_sub(RESERVED_FILES)
            .max(1),
        None => usize::MAX,
    }
}

/// The admission state of one node.
pub struct Admission {
    max_sockets: usize,
    /// 0 = unlimited.
    max_handshakes: usize,
    /// 0 = unlimited.
    max_handshakes_per_ip: usize,
    sockets: AtomicUsize,
    handshakes: Mutex<Handshakes>,
    sockets_gauge: IntGauge,
    handshakes_gauge: IntGauge,
}

#[derive(Default)]
struct Handshakes {
    total: usize,
    /// Only addresses with a handshake in progress (entries are removed at 0).
    per_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    /// Limits from `config`, gauges from `metrics`.
    pub fn new(config: &Config, metrics: &Metrics) -> Self {
        Self {
            max_sockets: config.max_connections.unwrap_or_else(default_max_connections),
            max_handshakes: config.max_handshakes,
            max_handshakes_per_ip: config.max_handshakes_per_ip,
            sockets: AtomicUsize::new(0),
            handshakes: Mutex::new(Handshakes::default()),
            sockets_gauge: metrics.sockets.clone(),
            handshakes_gauge: metrics.handshakes.clone(),
        }
    }

    /// The node-wide cap in force.
    pub fn max_sockets(&self) -> usize {
        self.max_sockets
    }

    /// Admits one upgraded socket from `peer` into its handshake, or says why not.
    pub fn admit(&self, peer: Option<IpAddr>) -> Result<(SocketPermit<'_>, HandshakePermit<'_>), RefusalReason> {
        if self.sockets.fetch_add(1, Ordering::AcqRel) >= self.max_sockets {
            self.sockets.fetch_sub(1, Ordering::AcqRel);
            return Err(RefusalReason::NodeFull);
        }
        self.sockets_gauge.inc();
        let socket = SocketPermit(self);
        let mut handshakes = self.handshakes.lock();
        if self.max_handshakes != 0 && handshakes.total >= self.max_handshakes {
            return Err(RefusalReason::Handshakes);
        }
        if let Some(ip) = peer {
            let from_ip = handshakes.per_ip.entry(ip).or_insert(0);
            if self.max_handshakes_per_ip != 0 && *from_ip >= self.max_handshakes_per_ip {
                return Err(RefusalReason::HandshakesPerIp);
            }
            *from_ip += 1;
        }
        handshakes.total += 1;
        self.handshakes_gauge.inc();
        Ok((socket, HandshakePermit { admission: self, peer }))
    }
}

/// One place under the node-wide cap, held for the socket's life.
pub struct SocketPermit<'a>(&'a Admission);

impl Drop for SocketPermit<'_> {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Ordering::AcqRel);
        self.0.sockets_gauge.dec();
    }
}

/// One place under the handshake caps, held until the handshake completes.
pub struct HandshakePermit<'a> {
    admission: &'a Admission,
    peer: Option<IpAddr>,
}

impl Drop for HandshakePermit<'_> {
    fn drop(&mut self) {
        let mut handshakes = self.admission.handshakes.lock();
        handshakes.total -= 1;
        if let Some(ip) = self.peer {
            if let Some(from_ip) = handshakes.per_ip.get_mut(&ip) {
                *from_ip -= 1;
                if *from_ip == 0 {
                    handshakes.per_ip.remove(&ip);
                }
            }
        }
        self.admission.handshakes_gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(sockets: usize, handshakes: usize, per_ip: usize) -> (Admission, Metrics) {
        let config = Config {
            max_connections: Some(sockets),
            max_handshakes: handshakes,
            max_handshakes_per_ip: per_ip,
            ..Config::default()
        };
        let metrics = Metrics::new();
        (Admission::new(&config, &metrics), metrics)
    }

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    #[test]
    fn each_cap_refuses_with_its_reason_and_dropped_permits_give_their_place_back() {
        let (admission, metrics) = admission(4, 3, 2);
        let a1 = admission.admit(A).ok();
        let a2 = admission.admit(A).ok();
        assert_eq!(admission.admit(A).err(), Some(RefusalReason::HandshakesPerIp));
        let b1 = admission.admit(B).ok();
        assert_eq!(admission.admit(B).err(), Some(RefusalReason::Handshakes));
        assert_eq!(metrics.handshakes.get(), 3);
        // A handshake that completes keeps its socket but frees its handshake place.
        let (a1_socket, a1_handshake) = a1.expect("first of A admitted");
        drop(a1_handshake);
        let b2 = admission.admit(B).ok();
        assert!(b2.is_some(), "a completed handshake frees its place");
        assert_eq!(admission.admit(None).err(), Some(RefusalReason::NodeFull));
        assert_eq!(metrics.sockets.get(), 4);
        drop((a1_socket, a2, b1, b2));
        assert_eq!((metrics.sockets.get(), metrics.handshakes.get()), (0, 0));
        assert!(admission.handshakes.lock().per_ip.is_empty(), "no entry left behind");
        assert!(admission.admit(A).is_ok());
    }

    #[test]
    fn the_default_cap_leaves_room_below_the_open_file_limit() {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let expected = soft.map_or(usize::MAX, |s| (s as usize).saturating_sub(RESERVED_FILES).max(1));
        assert_eq!(default_max_connections(), expected);
        let (zero, _) = admission(0, 0, 0);
        assert_eq!(zero.admit(None).err(), Some(RefusalReason::NodeFull));
    }
}
