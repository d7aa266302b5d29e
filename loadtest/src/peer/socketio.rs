//! A Socket.IO v5 client over Engine.IO v4 on a plain WebSocket, as much of
//! it as the scenarios use: the main namespace, text packets, events and
//! acknowledgements, and answering the server's heartbeat.
//!
//! The exchange: connect to `/socket.io/?EIO=4&transport=websocket`, read the
//! Engine.IO open packet `0{...}`, send the Socket.IO CONNECT `40`, read `40{...}`.
//! Then every WebSocket text frame is one Engine.IO packet: `2` is the
//! server's ping (answered `3`), `4` carries a Socket.IO packet: `2[...]` an
//! event, `2<id>[...]` an event wanting an ack, `3<id>[...]` an ack.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use hubwire_protocol::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::client::{open_websocket, read_text, send_text, ClientError, ConnectOptions};

/// The path and query of a WebSocket-only Engine.IO v4 connection.
const PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// A Socket.IO packet of the main namespace, as far as this client reads it.
#[derive(Debug, PartialEq)]
enum Packet {
    /// CONNECT acknowledged (`0{...}`).
    Connect,
    /// The server disconnected the socket (`1`).
    Disconnect,
    /// An event (`2[name, ...args]`), maybe wanting an ack (`2<id>[...]`).
    Event {
        /// The ack id, if the server wants one.
        id: Option<u64>,
        /// The event name and its arguments.
        data: Vec<Value>,
    },
    /// The ack of one of our events (`3<id>[...]`).
    Ack {
        /// Our event's id.
        id: u64,
        /// The ack's arguments.
        data: Vec<Value>,
    },
    /// CONNECT refused (`4{...}`).
    ConnectError(String),
}

/// What one Engine.IO text frame holds.
#[derive(Debug, PartialEq)]
enum Frame {
    /// The server's ping, to answer with a pong.
    Ping,
    /// The transport is closing.
    Close,
    /// A Socket.IO packet.
    Packet(Packet),
    /// Anything else (open, noop, pong): nothing to do.
    Other,
}

/// Parses one Engine.IO text frame.
fn parse_frame(text: &str) -> Result<Frame, ClientError> {
    let bad = || ClientError::Protocol(format!("socket.io: cannot read {text:?}"));
    let mut chars = text.chars();
    match chars.next() {
        Some('2') => return Ok(Frame::Ping),
        Some('1') => return Ok(Frame::Close),
        Some('4') => {}
        Some(_) => return Ok(Frame::Other),
        None => return Err(bad()),
    }
    let kind = chars.next().ok_or_else(bad)?;
    let rest = chars.as_str();
    if rest.starts_with('/') {
        return Err(ClientError::Protocol(format!(
            "socket.io: unexpected namespace in {text:?}"
        )));
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = (digits > 0)
        .then(|| rest[..digits].parse::<u64>())
        .transpose()
        .map_err(|_| bad())?;
    let body = &rest[digits..];
    let array = || match serde_json::from_str(body) {
        Ok(Value::Array(data)) => Ok(data),
        _ => Err(bad()),
    };
    Ok(Frame::Packet(match kind {
        '0' => Packet::Connect,
        '1' => Packet::Disconnect,
        '2' => Packet::Event { id, data: array()? },
        '3' => Packet::Ack {
            id: id.ok_or_else(bad)?,
            data: array()?,
        },
        '4' => Packet::ConnectError(body.to_owned()),
        _ => return Err(bad()),
    }))
}

/// Encodes an event (`42[...]`, or `42<id>[...]` when an ack is wanted).
fn encode_event(id: Option<u64>, name: &str, args: Vec<Value>) -> String {
    let mut data = Vec::with_capacity(args.len() + 1);
    data.push(Value::from(name));
    data.extend(args);
    let id = id.map_or_else(String::new, |id| id.to_string());
    format!("42{id}{}", Value::Array(data))
}

/// A connected Socket.IO client (main namespace).
pub struct SocketIoClient {
    ws: WebSocketStream<TcpStream>,
    /// Events read while waiting for an ack, for [`SocketIoClient::next_event`].
    pending: VecDeque<Vec<Value>>,
    next_id: u64,
}

impl SocketIoClient {
    /// Opens the WebSocket and connects to the main namespace.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, ClientError> {
        let ws = open_websocket(options, PATH).await?;
        let mut client = Self {
            ws,
            pending: VecDeque::new(),
            next_id: 0,
        };
        match client.read_text().await? {
            open if open.starts_with('0') => {}
            other => {
                return Err(ClientError::Handshake(format!(
                    "expected an open packet, got {other:?}"
                )))
            }
        }
        client.send_text("40".to_owned()).await?;
        loop {
            match client.read_packet().await? {
                Packet::Connect => return Ok(client),
                Packet::ConnectError(error) => return Err(ClientError::Handshake(error)),
                _ => {}
            }
        }
    }

    async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        send_text(&mut self.ws, text).await
    }

    async fn read_text(&mut self) -> Result<String, ClientError> {
        read_text(&mut self.ws).await
    }

    /// Handles one frame: answers a ping, returns a packet.
    async fn handle(&mut self, text: &str) -> Result<Option<Packet>, ClientError> {
        match parse_frame(text)? {
            Frame::Ping => self.send_text("3".to_owned()).await.map(|()| None),
            Frame::Close | Frame::Packet(Packet::Disconnect) => Err(ClientError::Closed(None)),
            Frame::Packet(packet) => Ok(Some(packet)),
            Frame::Other => Ok(None),
        }
    }

    /// The next Socket.IO packet, answering pings meanwhile.
    async fn read_packet(&mut self) -> Result<Packet, ClientError> {
        loop {
            let text = self.read_text().await?;
            if let Some(packet) = self.handle(&text).await? {
                return Ok(packet);
            }
        }
    }

    /// Emits `name(args)` without asking for an ack.
    pub async fn emit(&mut self, name: &str, args: Vec<Value>) -> Result<(), ClientError> {
        self.send_text(encode_event(None, name, args)).await
    }

    /// Emits `name(args)` with an ack and waits for it; returns the ack's
    /// arguments. Events arriving meanwhile are kept for [`SocketIoClient::next_event`].
    pub async fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Vec<Value>, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(encode_event(Some(id), name, args)).await?;
        loop {
            match self.read_packet().await? {
                Packet::Ack { id: acked, data } if acked == id => return Ok(data),
                Packet::Event { data, .. } => self.pending.push_back(data),
                _ => {}
            }
        }
    }

    /// The next event (its name and first argument), within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Result<(String, Value), ClientError> {
        let read = async {
            loop {
                let data = match self.pending.pop_front() {
                    Some(data) => data,
                    None => match self.read_packet().await? {
                        Packet::Event { data, .. } => data,
                        _ => continue,
                    },
                };
                let mut data = data.into_iter();
                if let Some(Value::String(name)) = data.next() {
                    return Ok((name, data.next().unwrap_or(Value::Null)));
                }
            }
        };
        tokio::time::timeout(wait, read)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Reads what has already arrived without waiting, answering the
    /// server's pings (Engine.IO v4 clients never ping themselves) and
    /// keeping events for [`SocketIoClient::next_event`].
    pub async fn answer_pings(&mut self) -> Result<(), ClientError> {
        // `now_or_never` polls once; a frame half-read stays buffered in the
        // WebSocket and is finished by the next read.
        while let Some(frame) = self.ws.next().now_or_never() {
            match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Some(Packet::Event { data, .. }) = self.handle(text.as_str()).await? {
                        self.pending.push_back(data);
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Err(ClientError::Closed(None)),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Box::new(e).into()),
            }
        }
        Ok(())
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
    fn frames_are_read_as_engine_io_and_socket_io_packets() {
        let parse = |text| parse_frame(text).ok();
        assert_eq!(parse("2"), Some(Frame::Ping));
        assert_eq!(parse("1"), Some(Frame::Close));
        assert_eq!(parse("0{\"sid\":\"x\",\"pingInterval\":25000}"), Some(Frame::Other));
        assert_eq!(parse("40{\"sid\":\"a\"}"), Some(Frame::Packet(Packet::Connect)));
        assert_eq!(parse("41"), Some(Frame::Packet(Packet::Disconnect)));
        assert_eq!(
            parse("42[\"tick\",{\"t\":1}]"),
            Some(Frame::Packet(Packet::Event {
                id: None,
                data: vec![json!("tick"), json!({"t": 1})]
            }))
        );
        assert_eq!(
            parse("4312[\"x\"]"),
            Some(Frame::Packet(Packet::Ack {
                id: 12,
                data: vec![json!("x")]
            }))
        );
        assert_eq!(
            parse("44{\"message\":\"no\"}"),
            Some(Frame::Packet(Packet::ConnectError("{\"message\":\"no\"}".into())))
        );
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        for text in [
            "",
            "4",
            "42",
            "42{",
            "43[1]",
            "49[]",
            "42/admin,[\"x\"]",
            "4299999999999999999999[]",
        ] {
            assert!(parse_frame(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn events_are_encoded_with_an_optional_ack_id() {
        assert_eq!(encode_event(None, "join", vec![json!("g0")]), "42[\"join\",\"g0\"]");
        assert_eq!(encode_event(Some(7), "echo", vec![json!(1)]), "427[\"echo\",1]");
    }
}
