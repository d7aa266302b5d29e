//! The client of the protocol-less server ([`crate::raw_server`]).
//!
//! The server only knows `join <group>`, `pub <group> <payload>` and
//! `echo <payload>`, and sends payloads back verbatim. The payloads this
//! client sends carry the least the scenarios need, chosen here and opaque
//! to the server:
//! - a group message is `<event> <json>` (so `pub g0 tick {"t":..}`);
//! - an echo is `#<id> <json>`, telling its reply from group messages.
//!
//! A join has no reply of its own: the server handles one connection's
//! frames in order, so an echo round trip after it says it is done.

use std::collections::VecDeque;
use std::time::Duration;

use hubwire_protocol::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;

use crate::client::{open_websocket, read_text, send_text, ClientError, ConnectOptions};

/// A connected client of the raw server.
pub struct RawClient {
    ws: WebSocketStream<TcpStream>,
    /// Group messages read while waiting for an echo.
    pending: VecDeque<String>,
    next_id: u64,
}

/// Splits `<event> <json>` into the event and its payload.
fn parse_event(text: &str) -> Result<(String, Value), ClientError> {
    let (event, json) = text
        .split_once(' ')
        .ok_or_else(|| ClientError::Protocol(format!("raw: not an event: {text:?}")))?;
    let payload = serde_json::from_str(json).map_err(|e| ClientError::Protocol(format!("raw: {e}")))?;
    Ok((event.to_owned(), payload))
}

impl RawClient {
    /// Opens the WebSocket (path `/`).
    pub async fn connect(options: &ConnectOptions) -> Result<Self, ClientError> {
        Ok(Self {
            ws: open_websocket(options, "/").await?,
            pending: VecDeque::new(),
            next_id: 0,
        })
    }

    async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        send_text(&mut self.ws, text).await
    }

    async fn read_text(&mut self) -> Result<String, ClientError> {
        read_text(&mut self.ws).await
    }

    /// Joins `group`; returns once the server has handled it.
    pub async fn join(&mut self, group: &str) -> Result<(), ClientError> {
        self.send_text(format!("join {group}")).await?;
        self.echo(&Value::Null).await.map(drop)
    }

    /// Publishes `<event> <payload>` to `group`.
    pub async fn publish(&mut self, group: &str, event: &str, payload: &Value) -> Result<(), ClientError> {
        self.send_text(format!("pub {group} {event} {payload}")).await
    }

    /// Sends `value` to be echoed and waits for it.
    pub async fn echo(&mut self, value: &Value) -> Result<Value, ClientError> {
        self.next_id += 1;
        let tag = format!("#{}", self.next_id);
        self.send_text(format!("echo {tag} {value}")).await?;
        loop {
            let text = self.read_text().await?;
            match text.split_once(' ') {
                Some((reply, json)) if reply == tag => {
                    return serde_json::from_str(json).map_err(|e| ClientError::Protocol(format!("raw: {e}")));
                }
                _ => self.pending.push_back(text),
            }
        }
    }

    /// The next group message (its event and payload), within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Result<(String, Value), ClientError> {
        let read = async {
            let text = match self.pending.pop_front() {
                Some(text) => text,
                None => self.read_text().await?,
            };
            parse_event(&text)
        };
        tokio::time::timeout(wait, read)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Closes the WebSocket.
    pub async fn close(mut self) {
        // The server may already be gone; closing is best effort.
        let _ = self.ws.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_an_event_name_and_json() {
        assert_eq!(
            parse_event("tick {\"t\":1}").ok(),
            Some(("tick".into(), json!({"t": 1})))
        );
        assert!(parse_event("tick").is_err());
        assert!(parse_event("tick {").is_err());
    }
}
