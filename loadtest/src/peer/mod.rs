//! The servers the scenarios can drive, and one client over all of them, so
//! that hubwire and its peers run the very same scenario code.
//!
//! A scenario needs five things of a connection: join a group, publish to a
//! group, an echo round trip, the next event pushed to it, and whatever keeps
//! the server from timing it out. [`Peer`] offers those over:
//! - [`ServerKind::Hubwire`]: the SignalR [`Client`], calling the
//!   `diagnostics` hub (`JoinGroup`, `SendToGroup`, `Echo`); unchanged, so
//!   hubwire's figures do not move with the peers' code;
//! - [`ServerKind::Socketio`]: [`socketio::SocketIoClient`], Socket.IO v5 over
//!   Engine.IO v4 on a plain WebSocket, against `bench/socketio/server.mjs`;
//! - [`ServerKind::Raw`]: [`raw::RawClient`], the protocol-less text frames of
//!   [`crate::raw_server`].
//!
//! Every connection is owned by one task and read only when the scenario
//! asks, as with the SignalR client; no peer gets a reader task of its own.

pub mod raw;
pub mod socketio;

use std::time::Duration;

use clap::ValueEnum;
use hubwire_protocol::Value;
use serde::Serialize;

use crate::client::{Client, ClientError, ConnectOptions};
use raw::RawClient;
use socketio::SocketIoClient;

/// Which server the scenarios talk to (`--server`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// hubwire (SignalR, the `diagnostics` hub).
    #[default]
    Hubwire,
    /// Socket.IO 4 (`bench/socketio/server.mjs`).
    Socketio,
    /// The protocol-less broadcast server (`raw_ws_server`).
    Raw,
}

impl ServerKind {
    /// The name `--server` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hubwire => "hubwire",
            Self::Socketio => "socketio",
            Self::Raw => "raw",
        }
    }
}

/// One connection to any of the servers.
pub enum Peer {
    /// A SignalR connection to hubwire.
    Hubwire(Client),
    /// A Socket.IO connection.
    SocketIo(SocketIoClient),
    /// A connection to the protocol-less server.
    Raw(RawClient),
}

impl Peer {
    /// Connects to a server of `kind` (for hubwire: to `options.hub`).
    pub async fn connect(kind: ServerKind, options: &ConnectOptions) -> Result<Self, ClientError> {
        Ok(match kind {
            ServerKind::Hubwire => Self::Hubwire(Client::connect(options).await?),
            ServerKind::Socketio => Self::SocketIo(SocketIoClient::connect(options).await?),
            ServerKind::Raw => Self::Raw(RawClient::connect(options).await?),
        })
    }

    /// Joins `group` and returns once the server has done it.
    pub async fn join(&mut self, group: &str) -> Result<(), ClientError> {
        match self {
            Self::Hubwire(c) => c.invoke("JoinGroup", vec![Value::from(group)]).await.map(drop),
            Self::SocketIo(c) => c.call("join", vec![Value::from(group)]).await.map(drop),
            Self::Raw(c) => c.join(group).await,
        }
    }

    /// Asks the server to send `event(payload)` to every member of `group`,
    /// without waiting for anything.
    pub async fn send_to_group(&mut self, group: &str, event: &str, payload: Value) -> Result<(), ClientError> {
        match self {
            Self::Hubwire(c) => {
                c.fire("SendToGroup", vec![Value::from(group), Value::from(event), payload])
                    .await
            }
            Self::SocketIo(c) => {
                c.emit("sendToGroup", vec![Value::from(group), Value::from(event), payload])
                    .await
            }
            Self::Raw(c) => c.publish(group, event, &payload).await,
        }
    }

    /// Sends `value` to be echoed and waits for it to come back.
    pub async fn echo(&mut self, value: Value) -> Result<Value, ClientError> {
        self.echo_by("Echo", value).await
    }

    /// [`Peer::echo`] through hub method `method` (hubwire only; e.g. one the
    /// hub lacks, forwarded to an upstream that echoes).
    pub async fn echo_by(&mut self, method: &str, value: Value) -> Result<Value, ClientError> {
        match self {
            Self::Hubwire(c) => c.invoke(method, vec![value]).await,
            Self::SocketIo(c) => Ok(c
                .call("echo", vec![value])
                .await?
                .into_iter()
                .next()
                .unwrap_or(Value::Null)),
            Self::Raw(c) => c.echo(&value).await,
        }
    }

    /// The next event the server pushes (its name and first argument), within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Result<(String, Value), ClientError> {
        match self {
            Self::Hubwire(c) => {
                let (target, arguments) = c.next_invocation(wait).await?;
                Ok((target, arguments.into_iter().next().unwrap_or(Value::Null)))
            }
            Self::SocketIo(c) => c.next_event(wait).await,
            Self::Raw(c) => c.next_event(wait).await,
        }
    }

    /// Keeps an otherwise silent connection alive, the way each server wants:
    /// a SignalR Ping; answering Engine.IO pings already received (Socket.IO
    /// pings from the server); nothing for the raw server, which has no timeout.
    pub async fn keepalive(&mut self) -> Result<(), ClientError> {
        match self {
            Self::Hubwire(c) => c.ping().await,
            Self::SocketIo(c) => c.answer_pings().await,
            Self::Raw(_) => Ok(()),
        }
    }

    /// [`Peer::keepalive`] if `every` has passed since `last` (then `last` is now).
    pub async fn keepalive_if_due(
        &mut self,
        last: &mut std::time::Instant,
        every: Duration,
    ) -> Result<(), ClientError> {
        if last.elapsed() >= every {
            self.keepalive().await?;
            *last = std::time::Instant::now();
        }
        Ok(())
    }

    /// The SignalR client, if this is a hubwire connection.
    pub fn into_hubwire(self) -> Option<Client> {
        match self {
            Self::Hubwire(c) => Some(c),
            _ => None,
        }
    }

    /// Closes the connection.
    pub async fn close(self) {
        match self {
            Self::Hubwire(c) => c.close().await,
            Self::SocketIo(c) => c.close().await,
            Self::Raw(c) => c.close().await,
        }
    }
}
