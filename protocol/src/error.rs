//! Error types for framing and decoding.
//!
//! [`FrameError`] is returned by record splitting ([`crate::Protocol::next_record`]);
//! it means the byte stream itself can no longer be trusted and the connection
//! should be closed. [`ProtocolError`] is returned when a complete record (or a
//! handshake) does not form a valid message. Messages mirror the wording of the
//! ASP.NET Core / JavaScript implementations where that was cheap, so logs look
//! familiar to people who know SignalR.

use thiserror::Error;

/// A record could not be split off the byte stream.
#[derive(Error, Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The record (or the bytes buffered so far without a complete record) is
    /// larger than the configured maximum message size.
    #[error("message exceeds the maximum message size of {limit} bytes")]
    TooLarge {
        /// The configured maximum payload size in bytes.
        limit: usize,
    },
    /// The MessagePack varint length prefix is malformed (longer than 5 bytes or
    /// announcing 2 GiB or more).
    #[error("invalid length prefix: messages over 2GB in size are not supported")]
    InvalidLengthPrefix,
}

/// A complete record or handshake could not be decoded into a message.
#[derive(Error, Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The payload is not valid JSON.
    #[error("Error reading JSON: {0}")]
    InvalidJson(String),
    /// The payload is not valid MessagePack (truncated, reserved marker, bad UTF-8, ...).
    #[error("Error reading MessagePack: {0}")]
    InvalidMessagePack(String),
    /// The payload parsed, but is not the expected container (JSON object / MessagePack array).
    #[error("Invalid payload: {0}")]
    InvalidPayload(&'static str),
    /// A property required by the message type is missing (or empty, for invocation ids).
    #[error("Missing required property '{0}'.")]
    MissingProperty(&'static str),
    /// A property is present but has the wrong type.
    #[error("Expected '{property}' to be of type {expected}.")]
    InvalidPropertyType {
        /// The wire name of the property (`"target"`, `"headers"`, ...).
        property: &'static str,
        /// The expected type, e.g. `"String"`.
        expected: &'static str,
    },
    /// A MessagePack message array has fewer elements than its type requires.
    #[error("Invalid payload for {0} message.")]
    TooFewElements(&'static str),
    /// A completion carries both a result and an error.
    #[error("The 'error' and 'result' properties are mutually exclusive.")]
    ResultAndError,
    /// A MessagePack completion has a result kind other than 1, 2 or 3.
    #[error("Invalid invocation result kind.")]
    InvalidResultKind,
    /// A MessagePack extension type other than the timestamp (-1) was found in a value.
    #[error("Unsupported MessagePack extension type {0}.")]
    UnsupportedExtension(i8),
    /// The handshake request or response is malformed.
    #[error("Invalid handshake: {0}")]
    InvalidHandshake(String),
}
