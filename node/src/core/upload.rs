//! Client-to-server streams ("uploads"): an invocation names stream ids in
//! `streamIds`, the client then sends StreamItems with those ids and ends
//! each with a Completion (with an error, if its stream failed).
//!
//! The dispatcher opens one [`Upload`] per stream id when the invocation
//! arrives (before it runs, since its items follow at once) and hands them to
//! the hub method through [`crate::core::hub::HubCall::upload`]. Each holds at
//! most [`STREAM_BUFFER`] items, ASP.NET Core's `StreamBufferCapacity`: when
//! the method does not keep up, the connection's reader waits for room,
//! which stops reading the socket — back-pressure onto the client, as in
//! ASP.NET Core. Uploads count towards `max_streams_per_connection` with the
//! server-to-client streams.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;

use hubwire_protocol::Value;

/// Items one upload holds before its client has to wait (ASP.NET Core's
/// default `StreamBufferCapacity`).
pub const STREAM_BUFFER: usize = 10;

/// One item, or the error the client completed its stream with.
pub type UploadItem = Result<Value, String>;

/// The error a client completed its stream with.
#[derive(Debug, thiserror::Error)]
#[error("The client's stream '{id}' failed: {error}")]
pub struct UploadError {
    /// The stream id.
    pub id: String,
    /// The client's error text.
    pub error: String,
}

/// A stream the client uploads into a hub method: its items in order, then
/// its end. An error the client completed it with arrives as an
/// [`UploadError`] (a `HubException` when a hub method passes it on).
pub struct Upload {
    id: String,
    items: mpsc::Receiver<UploadItem>,
}

impl Upload {
    /// The stream id the client gave it.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Stream for Upload {
    type Item = Result<Value, UploadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let id = self.id.clone();
        self.items
            .poll_recv(cx)
            .map(|item| item.map(|item| item.map_err(|error| UploadError { id, error })))
    }
}

/// The open uploads of one connection by stream id: where the reader puts
/// their items.
#[derive(Default, Clone)]
pub struct Uploads {
    open: Rc<RefCell<HashMap<String, mpsc::Sender<UploadItem>>>>,
}

/// Why an invocation's streams cannot be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// A stream id is already open on the connection.
    InUse(String),
}

impl Uploads {
    /// Opens one upload per id, all or none.
    pub fn open(&self, ids: &[String]) -> Result<Vec<Upload>, OpenError> {
        let mut open = self.open.borrow_mut();
        for (i, id) in ids.iter().enumerate() {
            if open.contains_key(id) || ids[..i].contains(id) {
                return Err(OpenError::InUse(id.clone()));
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                let (sender, items) = mpsc::channel(STREAM_BUFFER);
                open.insert(id.clone(), sender);
                Upload { id: id.clone(), items }
            })
            .collect())
    }

    /// Uploads open on the connection.
    pub fn len(&self) -> usize {
        self.open.borrow().len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` is an open upload.
    pub fn contains(&self, id: &str) -> bool {
        self.open.borrow().contains_key(id)
    }

    /// Delivers one item, waiting while the upload holds [`STREAM_BUFFER`].
    /// `false` when `id` is not an open upload. An item for an upload whose
    /// method stopped reading is dropped.
    pub async fn item(&self, id: &str, item: Value) -> bool {
        let Some(sender) = self.open.borrow().get(id).cloned() else {
            return false;
        };
        if sender.send(Ok(item)).await.is_err() {
            self.open.borrow_mut().remove(id);
        }
        true
    }

    /// Ends upload `id` (with the client's error, if any); `false` when it
    /// is not open.
    pub async fn complete(&self, id: &str, error: Option<String>) -> bool {
        let Some(sender) = self.open.borrow_mut().remove(id) else {
            return false;
        };
        if let Some(error) = error {
            let _ = sender.send(Err(error)).await;
        }
        true
    }

    /// Forgets `ids` once their invocation ended: later items are unexpected.
    pub fn close(&self, ids: &[String]) {
        let mut open = self.open.borrow_mut();
        for id in ids {
            open.remove(id);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_then_the_end_or_the_clients_error() {
        let uploads = Uploads::default();
        let mut streams = uploads.open(&["a".into(), "b".into()]).unwrap();
        assert_eq!(uploads.len(), 2);
        assert!(uploads.item("a", Value::from(1)).await);
        assert!(uploads.item("a", Value::from(2)).await);
        assert!(uploads.complete("a", None).await);
        assert!(!uploads.item("a", Value::from(3)).await, "ended: unknown now");
        assert!(uploads.complete("b", Some("boom".into())).await);
        let b = streams.pop().unwrap();
        let a = streams.pop().unwrap();
        let got: Vec<Value> = a.map(Result::unwrap).collect().await;
        assert_eq!(got, vec![Value::from(1), Value::from(2)]);
        let failed: Vec<Result<Value, UploadError>> = b.collect().await;
        assert_eq!(failed.len(), 1);
        assert_eq!(
            failed[0].as_ref().unwrap_err().to_string(),
            "The client's stream 'b' failed: boom"
        );
        assert!(uploads.is_empty());
    }

    #[tokio::test]
    async fn an_id_in_use_opens_nothing_and_a_full_upload_makes_the_sender_wait() {
        let uploads = Uploads::default();
        let _a = uploads.open(&["a".into()]).unwrap();
        assert_eq!(
            uploads.open(&["b".into(), "a".into()]).err(),
            Some(OpenError::InUse("a".into()))
        );
        assert_eq!(
            uploads.open(&["c".into(), "c".into()]).err(),
            Some(OpenError::InUse("c".into()))
        );
        assert!(!uploads.contains("b"));
        for i in 0..STREAM_BUFFER {
            assert!(uploads.item("a", Value::from(i)).await);
        }
        let next = Box::pin(uploads.item("a", Value::from(99)));
        assert!(
            futures_util::FutureExt::now_or_never(next).is_none(),
            "the eleventh item waits for the method"
        );
    }
}
