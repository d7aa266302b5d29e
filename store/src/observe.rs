//! Telling an observer of each store call (the node's traces: a span per
//! call, docs/metrics.md): [`Store::observe`] installs one [`Observer`]; each
//! public call (all but [`Store::ping`] and the retention run) tells it what
//! it does — the SQL operation, the table, the method — when it starts, on
//! the caller's task, and the [`Observed`] it answers is dropped when the
//! call ends, told first of the failure or of the group-commit batch the call
//! was written in. A call queued to a commit task ([`Store::append_message`],
//! [`Store::mark_read`], [`Store::mark_broadcast`]) is observed by its caller
//! for the whole wait, queue and commit of its batch included.
//!
//! Without an observer a call costs one atomic load (the `OnceLock` read).
//! The store knows nothing of what the observer does with it (no tracing
//! crate here: the node owns its exporter).

use std::future::Future;

use crate::{Backend, Result, Store, StoreError};

/// What one store call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// The database of this store.
    pub backend: Backend,
    /// The SQL operation: `SELECT`, `INSERT`, `UPDATE`, `DELETE`.
    pub operation: &'static str,
    /// The table it is about (`messages`, `conversations`, ...).
    pub collection: &'static str,
    /// The [`Store`] method (`append_message`, ...).
    pub method: &'static str,
}

/// Told of each store call as it starts; see the module docs.
pub trait Observer: Send + Sync {
    /// `call` starts now, on the caller's task; `None` to not follow it.
    fn call(&self, call: &Call) -> Option<Box<dyn Observed>>;
}

/// One observed call; its drop is the call's end.
pub trait Observed: Send {
    /// The call was committed in a group commit of `size` calls (its own included).
    fn batch(&mut self, size: usize);
    /// The call failed with `error`.
    fn failed(&mut self, error: &StoreError);
}

/// An observation in progress, or nothing (no observer, or it passed).
pub(crate) struct Observation(Option<Box<dyn Observed>>);

impl Observation {
    /// Notes the batch the call was committed in.
    pub(crate) fn batch(&mut self, size: usize) {
        if let Some(observed) = &mut self.0 {
            observed.batch(size);
        }
    }

    /// Notes the call's outcome and hands it back.
    pub(crate) fn outcome<T>(mut self, result: Result<T>) -> Result<T> {
        if let (Some(observed), Err(e)) = (&mut self.0, &result) {
            observed.failed(e);
        }
        result
    }
}

impl Store {
    /// Tells `observer` of every call from now on (see the module docs).
    /// Only the first call counts.
    pub fn observe(&self, observer: std::sync::Arc<dyn Observer>) {
        // A second observer would be a wiring mistake; the first one stays.
        let _ = self.inner.observer.set(observer);
    }

    /// Starts observing one call of `method`: `operation` on `collection`.
    pub(crate) fn observation(
        &self,
        operation: &'static str,
        collection: &'static str,
        method: &'static str,
    ) -> Observation {
        Observation(self.inner.observer.get().and_then(|observer| {
            observer.call(&Call {
                backend: self.backend(),
                operation,
                collection,
                method,
            })
        }))
    }

    /// Runs `work`, one call of `method` (`operation` on `collection`), observed.
    pub(crate) async fn observed<T>(
        &self,
        operation: &'static str,
        collection: &'static str,
        method: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let observation = self.observation(operation, collection, method);
        observation.outcome(work.await)
    }
}
