//! Cluster behaviour of real `hubwire-node` processes joined by Redis.
//!
//! Every test starts its own `redis-server` (or Redis Cluster) and three nodes
//! under a key prefix of its own, talks to them as SignalR clients and as a
//! backend (the REST API with an admin token), reads the keyspace with an
//! independent Redis client, and kills everything it started when it ends.
//!
//! # Layout
//! - [`harness`]: the nodes, recording clients, a publisher, polling.
//! - [`keyspace`]: the shared keyspace as `names.rs` documents it, read with the
//!   `redis` crate, and what it must hold for a set of live connections.
//! - [`rest`]: the same expectations checked through one node's REST API.
//! - [`node_death`]: a node killed with SIGKILL under traffic.
//! - [`redis_outage`]: Redis stopped for a few seconds under traffic.
//! - [`redis_cluster`]: three nodes on a Redis Cluster (sharded pub/sub).
//! - [`user_limit`]: the per-user connection limit across nodes.
//! - [`acks`]: acknowledged group and close commands, an inbox that only
//!   delivers, and sends that publish first (nodes of this process).

mod acks;
mod harness;
mod keyspace;
mod node_death;
mod redis_cluster;
mod redis_outage;
mod rest;
mod user_limit;
