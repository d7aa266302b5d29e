//! A small SignalR client over WebSockets (skipNegotiation), built on the
//! node's own codec. Used by the load tester and by integration tests.
//!
//! It is deliberately simple: one task owns the client, `invoke` waits for its
//! Completion while setting other messages aside for `next_invocation`.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use hubwire_protocol::{
    encode_handshake_request, parse_handshake_response, CompletionOutcome, HubMessage, Invocation, Protocol, Value,
};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL cannot be used.
    #[error("bad url {0}")]
    Url(String),
    /// The TCP connection failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket layer failed (or the upgrade was refused, e.g. 401).
    #[error("websocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// The server refused the handshake.
    #[error("handshake refused: {0}")]
    Handshake(String),
    /// The server sent something that is not a hub message.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The connection closed (with the server's Close error, if any).
    #[error("closed: {0:?}")]
    Closed(Option<String>),
    /// Nothing arrived in time.
    #[error("timed out")]
    Timeout,
    /// The invocation failed on the server.
    #[error("hub error: {0}")]
    Hub(String),
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Node base URL, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// Hub name.
    pub hub: String,
    /// Access token (sent as `access_token`).
    pub token: Option<String>,
    /// Hub protocol.
    pub protocol: Protocol,
    /// Local source address to bind (to spread connections over 127.0.0.x).
    pub source: Option<IpAddr>,
}

/// A connected SignalR client.
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    protocol: Protocol,
    buf: BytesMut,
    pending: VecDeque<HubMessage>,
    next_id: u64,
}

impl Client {
    /// Connects with skipNegotiation and completes the handshake.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, ClientError> {
        let mut path = format!("/hubs/{}", options.hub);
        if let Some(token) = &options.token {
            path.push_str("?access_token=");
            path.push_str(&url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>());
        }
        let ws = open_websocket(options, &path).await?;
        let mut client = Self {
            ws,
            protocol: options.protocol,
            buf: BytesMut::new(),
            pending: VecDeque::new(),
            next_id: 0,
        };
        client
            .ws
            .send(Message::text(
                String::from_utf8_lossy(&encode_handshake_request(options.protocol)).into_owned(),
            ))
            .await
            .map_err(Box::new)?;
        loop {
            if let Some((error, consumed)) =
                parse_handshake_response(&client.buf).map_err(|e| ClientError::Protocol(e.to_string()))?
            {
                let _ = client.buf.split_to(consumed);
                return match error {
                    Some(error) => Err(ClientError::Handshake(error)),
                    None => Ok(client),
                };
            }
            client.read_frame().await?;
        }
    }

    async fn read_frame(&mut self) -> Result<(), ClientError> {
        match self.ws.next().await {
            Some(Ok(Message::Text(text))) => self.buf.extend_from_slice(text.as_bytes()),
            Some(Ok(Message::Binary(data))) => self.buf.extend_from_slice(&data),
            Some(Ok(Message::Close(_))) | None => return Err(ClientError::Closed(None)),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(Box::new(e).into()),
        }
        Ok(())
    }

    /// The next hub message from the server (Pings included), waiting for it.
    async fn read_message(&mut self) -> Result<HubMessage, ClientError> {
        loop {
            if let Some((payload, consumed)) = self
                .protocol
                .next_record(&self.buf, usize::MAX)
                .map_err(|e| ClientError::Protocol(e.to_string()))?
            {
                let decoded = self.protocol.decode(payload);
                let _ = self.buf.split_to(consumed);
                match decoded.map_err(|e| ClientError::Protocol(e.to_string()))? {
                    Some(HubMessage::Close(close)) => return Err(ClientError::Closed(close.error)),
                    Some(message) => return Ok(message),
                    None => continue,
                }
            }
            self.read_frame().await?;
        }
    }

    /// Sends one hub message.
    pub async fn send(&mut self, message: &HubMessage) -> Result<(), ClientError> {
        let bytes = self.protocol.encode_to_bytes(message);
        let frame = if self.protocol.is_binary() {
            Message::binary(bytes)
        } else {
            Message::text(String::from_utf8_lossy(&bytes).into_owned())
        };
        self.ws.send(frame).await.map_err(Box::new)?;
        Ok(())
    }

    /// Invokes `target(arguments)` without waiting for a result.
    pub async fn fire(&mut self, target: &str, arguments: Vec<Value>) -> Result<(), ClientError> {
        self.send(&HubMessage::Invocation(Invocation {
            target: target.into(),
            arguments,
            ..Invocation::default()
        }))
        .await
    }

    /// Invokes `target(arguments)` and waits for its result. Invocations the
    /// server sends meanwhile are kept for [`Client::next_invocation`].
    pub async fn invoke(&mut self, target: &str, arguments: Vec<Value>) -> Result<Value, ClientError> {
        self.next_id += 1;
        let id = self.next_id.to_string();
        self.send(&HubMessage::Invocation(Invocation {
            invocation_id: Some(id.clone()),
            target: target.into(),
            arguments,
            ..Invocation::default()
        }))
        .await?;
        loop {
            match self.read_message().await? {
                HubMessage::Completion(c) if c.invocation_id == id => {
                    return match c.outcome {
                        CompletionOutcome::Result(value) => Ok(value),
                        CompletionOutcome::Void => Ok(Value::Null),
                        CompletionOutcome::Error(error) => Err(ClientError::Hub(error)),
                    };
                }
                HubMessage::Ping => {}
                other => self.pending.push_back(other),
            }
        }
    }

    /// The next invocation the server sends (`target`, `arguments`), within `wait`.
    pub async fn next_invocation(&mut self, wait: Duration) -> Result<(String, Vec<Value>), ClientError> {
        let read = async {
            loop {
                let message = match self.pending.pop_front() {
                    Some(message) => message,
                    None => self.read_message().await?,
                };
                if let HubMessage::Invocation(invocation) = message {
                    return Ok((invocation.target, invocation.arguments));
                }
            }
        };
        tokio::time::timeout(wait, read)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Sends a Ping (keeps the server's client timeout from firing).
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        self.send(&HubMessage::Ping).await
    }

    /// Closes the WebSocket.
    pub async fn close(mut self) {
        // The server may already be gone; closing is best effort.
        let _ = self.ws.close(None).await;
    }
}

/// Sends one text frame (the text protocols of [`crate::peer`]).
pub(crate) async fn send_text(ws: &mut WebSocketStream<TcpStream>, text: String) -> Result<(), ClientError> {
    ws.send(Message::text(text)).await.map_err(Box::new)?;
    Ok(())
}

/// The next text frame, skipping control and binary frames.
pub(crate) async fn read_text(ws: &mut WebSocketStream<TcpStream>) -> Result<String, ClientError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => return Err(ClientError::Closed(None)),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(Box::new(e).into()),
        }
    }
}

/// Opens a WebSocket to `path` (with its query) on the node of `options`,
/// from the source address of `options`, with Nagle's algorithm off. Shared
/// by every client the load tester has (see [`crate::peer`]).
pub(crate) async fn open_websocket(
    options: &ConnectOptions,
    path: &str,
) -> Result<WebSocketStream<TcpStream>, ClientError> {
    let base = url::Url::parse(&options.base_url).map_err(|e| ClientError::Url(e.to_string()))?;
    let host = base
        .host_str()
        .ok_or_else(|| ClientError::Url(options.base_url.clone()))?;
    let port = base.port_or_known_default().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| ClientError::Url(options.base_url.clone()))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = options.source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{host}:{port}{path}"), stream)
        .await
        .map_err(Box::new)?;
    Ok(ws)
}
