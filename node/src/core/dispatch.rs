//! Hub dispatch for one connection: turns the hub messages a client sends into
//! hub method calls, and their outcomes into Completion / StreamItem messages,
//! with ASP.NET Core's error texts.
//!
//! Invocations run one at a time, in arrival order, on their own task (ASP.NET
//! Core's default of one parallel invocation per client); while one runs, the
//! reader keeps reading until the small queue in between is full. Streams run
//! beside them, each on its own task, until they end, fail, the client sends
//! CancelInvocation, an item cannot be queued, or the connection ends —
//! whatever ends it: each stream waits on the connection's close signal, and
//! dropping the dispatcher stops every stream it started. A stream yields to
//! the worker after every item, so that one connection's fast streams cannot
//! keep the worker from everyone else's, and a connection runs at most
//! `max_streams_per_connection` at once: beyond it a stream invocation is
//! answered with a Completion error and the connection stays open.
//!
//! With an upstream configured (`core::upstream`), an invocation of a method
//! the hub does not define is not refused but forwarded: it runs on a task of
//! its own, at most `upstream_concurrency` per connection at once, and its
//! Completion is the upstream's answer (or an error; the connection stays).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::StreamExt;
use prometheus::{Histogram, IntGauge};
use tokio::sync::{mpsc, oneshot};

use crate::core::connection::{CloseRequest, ConnectionHandle};
use crate::core::hub::{Hub, HubCall, HubError, HubReply};
use crate::core::metrics::Limit;
use crate::core::node::Node;
use crate::core::upload::{OpenError, Upload, Uploads};
use hubwire_protocol::{Completion, CompletionOutcome, HubMessage, Invocation, StreamItem};

/// Invocations that may wait while one runs.
const INVOCATION_QUEUE: usize = 16;

/// The running streams of a connection by invocation id; dropping a sender
/// stops its stream.
type Streams = Rc<RefCell<HashMap<String, oneshot::Sender<()>>>>;

/// Counts one running stream in `hubwire_streams_running` while alive — also
/// when its task is dropped unfinished.
struct RunningStream(IntGauge);

impl RunningStream {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for RunningStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The dispatcher of one connection.
pub struct Dispatcher {
    ctx: Rc<Context>,
    /// Boxed: the channel allocates its slots up front, and a slot for a
    /// pointer is a twentieth of one for an `Invocation` (memory per connection).
    /// Created with the first invocation: idle connections have no runner.
    invocations: RefCell<Option<mpsc::Sender<Box<Queued>>>>,
    streams: Streams,
}

/// An invocation waiting for the runner, with the uploads it opened.
type Queued = (Invocation, Vec<Upload>);

struct Context {
    node: Arc<Node>,
    hub: Arc<dyn Hub>,
    caller: Arc<ConnectionHandle>,
    /// The client-to-server streams open on the connection.
    uploads: Uploads,
    /// `hubwire_invocation_duration_seconds` of each method, resolved on its first call.
    durations: RefCell<Vec<Option<Histogram>>>,
    /// Permits of the invocations forwarded to the upstream at once.
    upstream: Arc<tokio::sync::Semaphore>,
}

impl Context {
    fn call(&self) -> HubCall {
        HubCall::new(self.node.clone(), self.caller.clone())
    }

    /// Queues a message; `false` when the connection is closing (a full
    /// queue closes it), in which case the message is moot.
    fn send(&self, message: &HubMessage) -> bool {
        self.caller.enqueue(self.caller.protocol.encode_to_bytes(message))
    }

    fn complete(&self, invocation_id: Option<String>, outcome: CompletionOutcome) {
        if let Some(invocation_id) = invocation_id {
            // A Completion that cannot be queued is moot: the connection is closing.
            let _ = self.send(&HubMessage::Completion(Completion {
                invocation_id,
                outcome,
                ..Completion::default()
            }));
        }
    }

    fn detailed(&self, summary: String, kind: &str, detail: &str) -> String {
        if self.node.config.detailed_errors {
            format!("{summary} {kind}: {detail}")
        } else {
            summary
        }
    }

    /// The error text ASP.NET Core sends for a failed invocation.
    fn invocation_error(&self, target: &str, error: &HubError) -> String {
        let summary = format!("An unexpected error occurred invoking '{target}' on the server.");
        match error {
            HubError::Hub(message) => format!("{summary} HubException: {message}"),
            HubError::Binding(detail) => self.detailed(
                format!("Failed to invoke '{target}' due to an error on the server."),
                "InvalidDataException",
                detail,
            ),
            HubError::Internal(detail) => self.detailed(summary, "Exception", detail),
        }
    }

    /// Checks an invocation against the method table; the error text if it fails.
    /// The method's number in the hub's table.
    fn validate(&self, invocation: &Invocation, streaming: bool) -> Result<usize, String> {
        let target = &invocation.target;
        let (index, spec) = self
            .hub
            .method(target)
            .ok_or_else(|| format!("Unknown hub method '{target}'"))?;
        if spec.streaming != streaming {
            let kind = if spec.streaming { "streaming" } else { "non-streaming" };
            let mode = if streaming { "a streaming" } else { "a non-streaming" };
            return Err(format!(
                "The client attempted to invoke the {kind} '{target}' method with {mode} invocation."
            ));
        }
        if invocation.stream_ids.len() != spec.uploads {
            let error = HubError::Hub(format!(
                "Client sent {} stream(s), Hub method expects {}.",
                invocation.stream_ids.len(),
                spec.uploads,
            ));
            return Err(self.invocation_error(target, &error));
        }
        if !spec.accepts(invocation.arguments.len()) {
            let expected = if spec.min_params == spec.params {
                spec.params.to_string()
            } else {
                format!("{} to {}", spec.min_params, spec.params)
            };
            let detail = format!(
                "Invocation provides {} argument(s) but target expects {expected}.",
                invocation.arguments.len(),
            );
            return Err(self.invocation_error(target, &HubError::Binding(detail)));
        }
        Ok(index)
    }

    async fn invoke(self: Rc<Self>, (invocation, uploads): Queued) {
        if self.hub.method(&invocation.target).is_none() && crate::core::upstream::configured(&self.node.config) {
            return self.forward(invocation, uploads).await;
        }
        let method = match self.validate(&invocation, false) {
            Ok(method) => method,
            Err(text) => {
                self.uploads.close(&invocation.stream_ids);
                return self.complete(invocation.invocation_id, CompletionOutcome::Error(text));
            }
        };
        let _timer = self.duration(method).start_timer();
        let mut span = crate::core::telemetry::invocation(
            self.hub.name(),
            &invocation.target,
            invocation.headers.get("traceparent").map(String::as_str),
        );
        let context = span.as_ref().map(crate::core::telemetry::Span::context);
        let call = self.call();
        call.uploads.borrow_mut().extend(uploads);
        let invoked = self.hub.invoke(call, method, invocation.arguments);
        let reply = crate::core::telemetry::within(context, invoked).await;
        // Items that still come for its streams are unexpected now.
        self.uploads.close(&invocation.stream_ids);
        let outcome = match reply {
            Ok(HubReply::Value(value)) => CompletionOutcome::Result(value),
            Ok(HubReply::Stream(_)) => {
                let error = HubError::Internal("a non-streaming method returned a stream".into());
                CompletionOutcome::Error(self.invocation_error(&invocation.target, &error))
            }
            Err(error) => CompletionOutcome::Error(self.invocation_error(&invocation.target, &error)),
        };
        if let (Some(span), CompletionOutcome::Error(text)) = (span.as_mut(), &outcome) {
            span.fail(text.clone());
        }
        self.complete(invocation.invocation_id, outcome);
    }

    /// Forwards an invocation of a method the hub lacks to the upstream
    /// (`core::upstream`) on a task of its own, once one of the connection's
    /// `upstream_concurrency` permits is free (the runner waits for it, so
    /// later invocations queue behind).
    async fn forward(self: Rc<Self>, invocation: Invocation, uploads: Vec<Upload>) {
        if !uploads.is_empty() {
            self.uploads.close(&invocation.stream_ids);
            let error = HubError::Hub("Client streams cannot be forwarded to the upstream.".into());
            let text = self.invocation_error(&invocation.target, &error);
            return self.complete(invocation.invocation_id, CompletionOutcome::Error(text));
        }
        let Ok(permit) = self.upstream.clone().acquire_owned().await else {
            return;
        };
        let ctx = self.clone();
        tokio::task::spawn_local(async move {
            let id = invocation.invocation_id.clone();
            let outcome =
                crate::core::upstream::invoke(&ctx.node.config, &ctx.node.metrics, &ctx.caller, invocation).await;
            drop(permit);
            ctx.complete(id, outcome);
        });
    }

    /// The invocation duration histogram of method number `method`.
    fn duration(&self, method: usize) -> Histogram {
        let mut durations = self.durations.borrow_mut();
        if durations.len() <= method {
            durations.resize(method + 1, None);
        }
        durations[method]
            .get_or_insert_with(|| {
                let name = self.hub.methods().get(method).map_or("", |m| &m.name);
                self.node.metrics.invocation(self.hub.name(), name)
            })
            .clone()
    }

    /// Runs one stream to its end and answers it, unless it was stopped.
    async fn stream(
        self: Rc<Self>,
        invocation: Invocation,
        method: usize,
        cancel: oneshot::Receiver<()>,
        streams: Streams,
    ) {
        let _running = RunningStream::new(&self.caller.metrics.streams_running);
        let id = invocation.invocation_id.clone().unwrap_or_default();
        let caller = self.caller.clone();
        // CancelInvocation or the dispatcher's end (the sender is dropped), or
        // the connection's close, whichever comes first.
        let stop = async move {
            tokio::select! {
                _ = cancel => {}
                _ = caller.closed() => {}
            }
        };
        // `stop`, and with it this stream's receiver, is gone once this returns.
        let outcome = self.run_stream(&id, invocation, method, stop).await;
        // Our entry, if it is still there, is the one whose receiver is now
        // closed; a live one belongs to a new stream that reused the id after
        // a CancelInvocation.
        let mut running = streams.borrow_mut();
        if running.get(&id).is_some_and(oneshot::Sender::is_closed) {
            running.remove(&id);
        }
        drop(running);
        if let Some(outcome) = outcome {
            self.complete(Some(id), outcome);
        }
    }

    /// The stream's outcome, or `None` when it was stopped (cancelled, or its
    /// connection is closing): the client has forgotten it, or is gone.
    async fn run_stream(
        &self,
        id: &str,
        invocation: Invocation,
        method: usize,
        stop: impl std::future::Future<Output = ()>,
    ) -> Option<CompletionOutcome> {
        tokio::pin!(stop);
        let reply = tokio::select! {
            biased;
            () = &mut stop => return None,
            reply = self.hub.invoke(self.call(), method, invocation.arguments) => reply,
        };
        let mut items = match reply {
            Ok(HubReply::Stream(items)) => items,
            Ok(HubReply::Value(value)) => return Some(CompletionOutcome::Result(value)),
            Err(error) => {
                return Some(CompletionOutcome::Error(
                    self.invocation_error(&invocation.target, &error),
                ))
            }
        };
        loop {
            let item = tokio::select! {
                biased;
                () = &mut stop => return None,
                item = items.next() => item,
            };
            match item {
                Some(Ok(item)) => {
                    let queued = self.send(&HubMessage::StreamItem(StreamItem {
                        invocation_id: id.to_owned(),
                        item,
                        ..StreamItem::default()
                    }));
                    if !queued {
                        return None;
                    }
                    // An item that is always ready would otherwise keep the
                    // worker until the stream ends: its writer and every other
                    // connection on it would wait.
                    tokio::task::yield_now().await;
                }
                Some(Err(error)) => {
                    let text = match &error {
                        HubError::Hub(message) => {
                            format!("An error occurred on the server while streaming results. HubException: {message}")
                        }
                        HubError::Binding(detail) | HubError::Internal(detail) => self.detailed(
                            "An error occurred on the server while streaming results.".into(),
                            "Exception",
                            detail,
                        ),
                    };
                    return Some(CompletionOutcome::Error(text));
                }
                None => return Some(CompletionOutcome::Void),
            }
        }
    }
}

impl Dispatcher {
    /// A dispatcher for `caller`.
    pub fn new(node: Arc<Node>, hub: Arc<dyn Hub>, caller: Arc<ConnectionHandle>) -> Self {
        let node_upstream_concurrency = node.config.upstream_concurrency.max(1);
        Self {
            ctx: Rc::new(Context {
                node,
                hub,
                caller,
                uploads: Uploads::default(),
                durations: RefCell::default(),
                upstream: Arc::new(tokio::sync::Semaphore::new(node_upstream_concurrency)),
            }),
            invocations: RefCell::new(None),
            streams: Rc::default(),
        }
    }

    /// The invocation queue, spawning its runner on the current worker the first time.
    fn invocation_queue(&self) -> mpsc::Sender<Box<Queued>> {
        self.invocations
            .borrow_mut()
            .get_or_insert_with(|| {
                let (invocations, mut queue) = mpsc::channel::<Box<Queued>>(INVOCATION_QUEUE);
                let runner = self.ctx.clone();
                tokio::task::spawn_local(async move {
                    while let Some(queued) = queue.recv().await {
                        runner.clone().invoke(*queued).await;
                    }
                });
                invocations
            })
            .clone()
    }

    /// Handles one message from the client; `Err` closes the connection.
    pub async fn handle(&self, message: HubMessage) -> Result<(), CloseRequest> {
        match message {
            HubMessage::Invocation(invocation) => {
                // Its uploads open now: their items follow at once.
                let Some(uploads) = self.open_uploads(&invocation) else {
                    return Ok(());
                };
                // Waiting for room is the rare case; its future is boxed so that the
                // reader's long-lived future does not carry it (memory per connection).
                let queue = self.invocation_queue();
                match queue.try_send(Box::new((invocation, uploads))) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(invocation)) => {
                        if Box::pin(queue.send(invocation)).await.is_err() {
                            return Err(CloseRequest::client_left());
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return Err(CloseRequest::client_left()),
                }
            }
            HubMessage::StreamInvocation(invocation) => self.start_stream(invocation),
            HubMessage::CancelInvocation(cancel) => {
                if let Some(stop) = self.streams.borrow_mut().remove(&cancel.invocation_id) {
                    // The stream may have just ended by itself; nothing to stop then.
                    let _ = stop.send(());
                }
            }
            HubMessage::Completion(completion) => {
                let error = match &completion.outcome {
                    CompletionOutcome::Error(error) => Some(error.clone()),
                    CompletionOutcome::Void | CompletionOutcome::Result(_) => None,
                };
                if self.ctx.uploads.contains(&completion.invocation_id) {
                    Box::pin(self.ctx.uploads.complete(&completion.invocation_id, error)).await;
                } else {
                    let id = completion.invocation_id.clone();
                    if !self
                        .ctx
                        .node
                        .client_completion(&self.ctx.caller.hub, &self.ctx.caller.id, completion)
                    {
                        tracing::debug!(connection = %self.ctx.caller.id, invocation = %id, "unexpected completion ignored");
                    }
                }
            }
            HubMessage::StreamItem(item) => {
                // Waits while the upload is full: back-pressure onto the client.
                if !Box::pin(self.ctx.uploads.item(&item.invocation_id, item.item)).await {
                    // As ASP.NET Core: an item for no open stream is dropped.
                    tracing::debug!(connection = %self.ctx.caller.id, invocation = %item.invocation_id, "stream item for no client stream ignored");
                }
            }
            HubMessage::Close(_) => return Err(CloseRequest::client_left()),
            HubMessage::Ping | HubMessage::Ack(_) | HubMessage::Sequence(_) => {}
        }
        Ok(())
    }

    /// Opens the uploads `invocation` names; `None` (the invocation answered
    /// with an error) beyond `max_streams_per_connection` or for an id in use.
    fn open_uploads(&self, invocation: &Invocation) -> Option<Vec<Upload>> {
        let ctx = &self.ctx;
        let ids = &invocation.stream_ids;
        if ids.is_empty() {
            return Some(Vec::new());
        }
        let limit = ctx.node.config.max_streams_per_connection;
        let running = self.streams.borrow().len() + ctx.uploads.len();
        let error = if limit > 0 && running + ids.len() > limit {
            ctx.node
                .metrics
                .refused(ctx.caller.hub.as_str(), Limit::StreamsPerConnection);
            HubError::Hub(format!("A connection may run at most {limit} streams at once."))
        } else {
            match ctx.uploads.open(ids) {
                Ok(uploads) => return Some(uploads),
                Err(OpenError::InUse(id)) => HubError::Hub(format!("Stream ID '{id}' is already in use.")),
            }
        };
        let text = ctx.invocation_error(&invocation.target, &error);
        ctx.complete(invocation.invocation_id.clone(), CompletionOutcome::Error(text));
        None
    }

    fn start_stream(&self, invocation: Invocation) {
        let ctx = &self.ctx;
        let method = match ctx.validate(&invocation, true) {
            Ok(method) => method,
            Err(text) => return ctx.complete(invocation.invocation_id, CompletionOutcome::Error(text)),
        };
        let Some(id) = invocation.invocation_id.clone() else {
            return;
        };
        let (stop, cancel) = oneshot::channel();
        {
            let mut streams = self.streams.borrow_mut();
            if streams.contains_key(&id) {
                drop(streams);
                let text = format!("Invocation ID '{id}' is already in use.");
                return ctx.complete(Some(id), CompletionOutcome::Error(text));
            }
            let limit = ctx.node.config.max_streams_per_connection;
            if limit > 0 && streams.len() + ctx.uploads.len() >= limit {
                drop(streams);
                ctx.node
                    .metrics
                    .refused(ctx.caller.hub.as_str(), Limit::StreamsPerConnection);
                let error = HubError::Hub(format!("A connection may run at most {limit} streams at once."));
                let text = ctx.invocation_error(&invocation.target, &error);
                return ctx.complete(Some(id), CompletionOutcome::Error(text));
            }
            streams.insert(id, stop);
        }
        tokio::task::spawn_local(ctx.clone().stream(invocation, method, cancel, self.streams.clone()));
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Dropping the senders stops every stream of the connection, however
        // it ended; each task then drops its hold on the context.
        self.streams.borrow_mut().clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::auth::Authenticator;
    use crate::core::config::Config;
    use crate::core::connection::QueueReceiver;
    use crate::core::hub::HubSet;
    use crate::hubs::diagnostics::DiagnosticsHub;
    use hubwire_backplane::{AnyBackplane, LocalBackplane, NodeId};
    use hubwire_protocol::{Protocol, Value};

    struct Setup {
        node: Arc<Node>,
        handle: Arc<ConnectionHandle>,
        queue: QueueReceiver,
        dispatcher: Dispatcher,
    }

    fn setup(max_streams: usize, queue_capacity: usize) -> Setup {
        let config = Config {
            jwt_secret: Some("s".into()),
            max_streams_per_connection: max_streams,
            ..Config::default()
        };
        let auth = Authenticator::from_config(&config).unwrap();
        let (backplane, _inbox) = LocalBackplane::single(NodeId::from("n1"));
        let hub: Arc<dyn Hub> = Arc::new(DiagnosticsHub);
        let hubs = HubSet::default().with(hub.clone());
        let node = Arc::new(hubs.serve(config, auth, AnyBackplane::Local(backplane)));
        let (handle, queue) = ConnectionHandle::new(
            "c1".into(),
            "diagnostics".into(),
            None,
            Protocol::Json,
            "WebSockets",
            crate::core::connection::QueueLimits {
                records: queue_capacity,
                bytes: 1 << 20,
            },
            node.metrics.hub("diagnostics"),
        );
        let dispatcher = Dispatcher::new(node.clone(), hub, handle.clone());
        Setup {
            node,
            handle,
            queue,
            dispatcher,
        }
    }

    fn stream(id: &str, count: u64, interval_ms: u64) -> HubMessage {
        HubMessage::StreamInvocation(Invocation {
            invocation_id: Some(id.into()),
            target: "Stream".into(),
            arguments: vec![Value::from(count), Value::from(interval_ms)],
            ..Invocation::default()
        })
    }

    /// Every queued record, parsed (JSON records end with the record separator).
    fn drain(queue: &mut QueueReceiver) -> Vec<serde_json::Value> {
        std::iter::from_fn(|| queue.try_recv())
            .map(|q| serde_json::from_slice(&q.record[..q.record.len() - 1]).unwrap())
            .collect()
    }

    /// Lets the worker's other tasks run until `done` holds (bounded: "not
    /// hung forever").
    async fn until(what: &str, done: impl Fn() -> bool) {
        let wait = async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    async fn until_running(handle: &ConnectionHandle, running: i64) {
        until(&format!("{running} running streams"), || {
            handle.metrics.streams_running.get() == running
        })
        .await;
    }

    #[actix_web::test]
    async fn streams_beyond_the_limit_are_refused_and_the_rest_end_with_their_connection() {
        let mut s = setup(4, 64);
        for i in 0..5 {
            s.dispatcher
                .handle(stream(&format!("s{i}"), 100_000, 3_600_000))
                .await
                .unwrap();
        }
        until_running(&s.handle, 4).await;
        let records = drain(&mut s.queue);
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["type"], 3);
        assert_eq!(records[0]["invocationId"], "s4");
        assert_eq!(
            records[0]["error"],
            "An unexpected error occurred invoking 'Stream' on the server. HubException: A connection may run at most 4 streams at once."
        );
        assert!(s.handle.close_request().is_none(), "the connection stays open");
        let refusals = s.node.render_metrics();
        assert!(
            refusals.contains(r#"hubwire_limit_refusals_total{hub="diagnostics",limit="streams_per_connection"} 1"#),
            "{refusals}"
        );
        s.handle.close(CloseRequest::client_left());
        until_running(&s.handle, 0).await;
        assert!(drain(&mut s.queue).is_empty(), "stopped streams are not completed");
    }

    fn sum(id: &str, streams: &[&str]) -> HubMessage {
        HubMessage::Invocation(Invocation {
            invocation_id: Some(id.into()),
            target: "Sum".into(),
            stream_ids: streams.iter().map(|s| (*s).to_owned()).collect(),
            ..Invocation::default()
        })
    }

    fn item(id: &str, value: i64) -> HubMessage {
        HubMessage::StreamItem(StreamItem {
            invocation_id: id.into(),
            item: Value::from(value),
            ..StreamItem::default()
        })
    }

    fn end(id: &str, error: Option<&str>) -> HubMessage {
        HubMessage::Completion(Completion {
            invocation_id: id.into(),
            outcome: error.map_or(CompletionOutcome::Void, |e| CompletionOutcome::Error(e.into())),
            ..Completion::default()
        })
    }

    #[actix_web::test]
    async fn an_upload_stream_is_consumed_by_its_method_and_its_errors_are_completions() {
        let mut s = setup(2, 64);
        let d = &s.dispatcher;
        d.handle(sum("1", &["u1"])).await.unwrap();
        for i in 1..=20 {
            d.handle(item("u1", i)).await.unwrap();
        }
        d.handle(end("u1", None)).await.unwrap();
        d.handle(item("u1", 1000)).await.unwrap(); // ended: ignored
        d.handle(sum("2", &["u2"])).await.unwrap();
        d.handle(item("u2", 1)).await.unwrap();
        d.handle(end("u2", Some("client gave up"))).await.unwrap();
        d.handle(sum("3", &[])).await.unwrap();
        d.handle(sum("4", &["a", "b", "c"])).await.unwrap();
        until("four completions", || s.handle.metrics.messages_out.get() >= 4).await;
        let records = drain(&mut s.queue);
        let by_id = |id: &str| records.iter().find(|r| r["invocationId"] == id).unwrap().clone();
        assert_eq!(
            by_id("1")["result"],
            210,
            "1 + … + 20, the eleventh item waited for room"
        );
        assert_eq!(
            by_id("2")["error"],
            "An unexpected error occurred invoking 'Sum' on the server. HubException: The client's stream 'u2' failed: client gave up"
        );
        assert_eq!(
            by_id("3")["error"],
            "An unexpected error occurred invoking 'Sum' on the server. HubException: Client sent 0 stream(s), Hub method expects 1."
        );
        assert_eq!(
            by_id("4")["error"],
            "An unexpected error occurred invoking 'Sum' on the server. HubException: A connection may run at most 2 streams at once."
        );
        assert!(s.handle.close_request().is_none(), "the connection stays open");
    }

    #[actix_web::test]
    async fn dropping_the_dispatcher_stops_its_streams() {
        let s = setup(4, 64);
        s.dispatcher.handle(stream("a", 100_000, 3_600_000)).await.unwrap();
        s.dispatcher.handle(stream("b", 100_000, 3_600_000)).await.unwrap();
        until_running(&s.handle, 2).await;
        drop(s.dispatcher);
        until_running(&s.handle, 0).await;
        assert!(s.handle.close_request().is_none());
    }

    #[actix_web::test]
    async fn a_stream_whose_items_cannot_be_queued_stops() {
        let mut s = setup(4, 8);
        // 100 s of items unless it stops at the first one that does not fit.
        s.dispatcher.handle(stream("paced", 100_000, 1)).await.unwrap();
        let slow_closed = || {
            s.handle
                .metrics
                .slow_closed
                .get(crate::core::metrics::SlowReason::QueueRecords)
                .get()
                == 1
        };
        until("the slow close", || {
            slow_closed() && s.handle.metrics.streams_running.get() == 0
        })
        .await;
        let items = drain(&mut s.queue);
        assert_eq!(items.len(), 8, "the queue's worth, then the slow close");
        assert!(items.iter().all(|m| m["type"] == 2));
    }

    #[actix_web::test]
    async fn a_fast_stream_lets_other_tasks_of_its_worker_run_between_items() {
        let mut s = setup(4, 200_000);
        s.dispatcher.handle(stream("fast", 100_000, 0)).await.unwrap();
        // Spawned after the stream, on the same worker: it runs only when the
        // stream lets go of the worker.
        actix_web::rt::spawn(async {}).await.unwrap();
        let records = drain(&mut s.queue);
        assert!(!records.is_empty(), "the stream had started");
        assert!(
            records.iter().all(|m| m["type"] == 2),
            "the other task ran before the stream's end: {} items so far",
            records.len()
        );
        s.handle.close(CloseRequest::client_left());
        until_running(&s.handle, 0).await;
    }
}
