//! The store's error type.

use std::sync::Arc;

use crate::MessageId;

/// What can go wrong in the store. `Clone`, because one failed group commit
/// answers every caller in the batch.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The request contradicts what is stored (e.g. a conversation id that
    /// exists with other participants).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Something the request refers to does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request itself is malformed.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The database cannot be reached (down, refusing, pool timed out).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error.
    #[error("database error: {0}")]
    Database(#[source] Arc<diesel::result::Error>),
    /// The embedded migrations could not be run.
    #[error("migrations failed: {0}")]
    Migration(String),
    /// A message is encrypted with a key the configuration no longer has.
    #[error("message {message} is encrypted with key {key_id:?}, which is not configured")]
    KeyMissing {
        /// The key id stored with the message.
        key_id: String,
        /// The message.
        message: MessageId,
    },
    /// A message's ciphertext does not decrypt with its key (tampered, or a
    /// different key under the same id).
    #[error("message {0} cannot be decrypted with its key")]
    Decrypt(MessageId),
    /// The configuration is unusable.
    #[error("store configuration: {0}")]
    Config(String),
    /// The store's commit task has ended (the runtime is shutting down).
    #[error("the store is shut down")]
    Closed,
}

impl From<diesel::result::Error> for StoreError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        match &error {
            Error::DatabaseError(Kind::ClosedConnection | Kind::UnableToSendCommand, info) => {
                Self::Unavailable(info.message().to_owned())
            }
            Error::BrokenTransactionManager => Self::Unavailable(error.to_string()),
            _ => Self::Database(Arc::new(error)),
        }
    }
}

impl StoreError {
    /// Whether the database refused a row (a constraint), as opposed to
    /// being unreachable: then retrying the rows one by one isolates it.
    pub(crate) fn is_constraint(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        matches!(
            self,
            Self::Database(e) if matches!(
                **e,
                Error::DatabaseError(Kind::UniqueViolation | Kind::ForeignKeyViolation | Kind::NotNullViolation | Kind::CheckViolation, _)
            )
        )
    }

    /// Whether this is a unique (or primary-key) violation: for rows with
    /// generated ids, two nodes that picked the same one.
    pub(crate) fn is_unique_violation(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        matches!(self, Self::Database(e) if matches!(**e, Error::DatabaseError(Kind::UniqueViolation, _)))
    }

    /// Whether this is a foreign-key violation (a row naming a missing
    /// conversation: every foreign key points at `conversations`).
    pub(crate) fn is_foreign_key(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        matches!(self, Self::Database(e) if matches!(**e, Error::DatabaseError(Kind::ForeignKeyViolation, _)))
    }
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
