//! The client results this node awaits, by invocation id — the table
//! [`crate::core::client_results`]'s `Node` methods fill and answer. Below
//! `node` so that the node can own it.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use hubwire_backplane::ConnectionId;
use hubwire_protocol::CompletionOutcome;

/// One awaited client result.
pub struct Waiter {
    /// The connection that must answer.
    pub connection: ConnectionId,
    /// Where the answer goes.
    pub answer: oneshot::Sender<CompletionOutcome>,
}

/// The client results this node awaits, by invocation id.
#[derive(Default)]
pub struct ClientResults {
    waiting: Mutex<HashMap<String, Waiter>>,
}

impl ClientResults {
    /// Awaits an answer to `invocation_id`.
    pub fn wait(&self, invocation_id: String, waiter: Waiter) {
        self.waiting.lock().insert(invocation_id, waiter);
    }

    /// Forgets `invocation_id` when the returned guard is dropped, however
    /// the call ends.
    pub fn forget_on_drop<'a>(&'a self, invocation_id: &'a str) -> impl Drop + 'a {
        Forget(self, invocation_id)
    }

    /// Hands `outcome` to the waiter of `invocation_id` if it awaits `connection`.
    pub fn answer(&self, invocation_id: &str, connection: &ConnectionId, outcome: CompletionOutcome) -> bool {
        let waiter = {
            let mut waiting = self.waiting.lock();
            if waiting.get(invocation_id).is_none_or(|w| w.connection != *connection) {
                return false;
            }
            waiting.remove(invocation_id)
        };
        let Some(waiter) = waiter else {
            return false;
        };
        // The caller may have given up (timeout) just now: answered all the same.
        let _ = waiter.answer.send(outcome);
        true
    }

    /// Client results awaited right now.
    pub fn len(&self) -> usize {
        self.waiting.lock().len()
    }

    /// Whether none is awaited.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Forgets a waiter however its call ends.
struct Forget<'a>(&'a ClientResults, &'a str);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.waiting.lock().remove(self.1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_the_invoked_connection_answers_and_only_once() {
        let results = ClientResults::default();
        let (answer, mut answered) = oneshot::channel();
        results.wait(
            "n1|x".into(),
            Waiter {
                connection: ConnectionId::from("c1"),
                answer,
            },
        );
        let other = ConnectionId::from("c2");
        assert!(
            !results.answer("n1|x", &other, CompletionOutcome::Void),
            "another connection"
        );
        assert!(results.answer("n1|x", &ConnectionId::from("c1"), CompletionOutcome::Result(1.into())));
        assert_eq!(answered.try_recv().unwrap(), CompletionOutcome::Result(1.into()));
        assert!(
            !results.answer("n1|x", &ConnectionId::from("c1"), CompletionOutcome::Void),
            "once"
        );
        {
            let _forget = results.forget_on_drop("n1|y");
            let (answer, _) = oneshot::channel();
            results.wait(
                "n1|y".into(),
                Waiter {
                    connection: ConnectionId::from("c1"),
                    answer,
                },
            );
            assert_eq!(results.len(), 1);
        }
        assert!(results.is_empty(), "forgotten with its call");
    }
}
