//! Integration tests of the backplane, against real `redis-server` processes
//! started by the tests themselves (see `hubwire-test-support`).
//!
//! - [`behaviour`]: one suite, run against the in-process bus and Redis.
//! - [`keyspace`]: what lands in Redis, read with an independent client.
//! - [`dead_node`]: a node that stops heartbeating is swept by the others.
//! - [`outage`]: Redis stops and comes back, or loses its data.
//! - [`lease`]: records of a node nobody sweeps expire with its lease.
//! - [`cluster`]: Redis Cluster with sharded pub/sub.
//! - [`inbox`]: the bounded inbox of a node that does not keep up.

mod behaviour;
mod cluster;
mod common;
mod dead_node;
mod inbox;
mod keyspace;
mod lease;
mod outage;
