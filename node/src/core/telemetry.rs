//! OpenTelemetry traces, exported over OTLP/HTTP with JSON bodies when
//! `otlp_endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) is set; off and free
//! when not: [`span`] returns `None` after one atomic load, and nothing is
//! allocated.
//!
//! A small exporter of its own rather than the `opentelemetry` crates
//! (docs/decisions.md): spans are plain records ([`Span`]), ended on drop,
//! queued to one task that posts them in batches to `{endpoint}/v1/traces`
//! over HTTP/1.1 (`http://` only; a full queue drops spans rather than wait).
//! Trace context comes in and goes out as W3C `traceparent` strings — read
//! from an invocation's `headers` the way ASP.NET Core's SignalR server does.
//!
//! The exporter is process-wide (as OpenTelemetry's global tracer provider
//! is): [`install`] once per process; the first call wins.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Spans waiting for the exporter; more are dropped.
const QUEUE: usize = 4096;
/// Spans per OTLP request at most.
const BATCH: usize = 512;
/// How long the exporter gathers a batch.
const LINGER: Duration = Duration::from_millis(200);

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

struct Exporter {
    /// Ended spans, already in OTLP's JSON shape (so nothing queued is a
    /// `Span` whose drop would queue it again).
    spans: mpsc::Sender<Value>,
}

/// A W3C trace context: the trace and the span a new span is a child of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// The parent span's id.
    pub span_id: [u8; 8],
    /// The sampled flag.
    pub sampled: bool,
}

impl TraceContext {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; `None` for anything else or all-zero ids.
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id: [u8; 16] = hex(trace)?;
        let span_id: [u8; 8] = hex(span)?;
        let [flags]: [u8; 1] = hex(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` value.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            to_hex(&self.trace_id),
            to_hex(&self.span_id),
            u8::from(self.sampled)
        )
    }
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// OTLP span kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Handles a request (negotiate, connect, a hub invocation, a REST call).
    Server = 2,
    /// Calls out (Redis, the database).
    Client = 3,
    /// Sends a message to other nodes.
    Producer = 4,
    /// Handles a message from another node.
    Consumer = 5,
}

/// One span; ended and queued for export when dropped.
pub struct Span {
    context: TraceContext,
    parent: Option<[u8; 8]>,
    name: String,
    kind: Kind,
    start: u128,
    attributes: Vec<(&'static str, Value)>,
    error: Option<String>,
}

impl Span {
    /// The context a child of this span (or another node continuing it) takes.
    pub fn context(&self) -> TraceContext {
        self.context
    }

    /// Sets an attribute.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        self.attributes.push((key, value.into()));
    }

    /// Marks the span failed (status ERROR) with `message`.
    pub fn fail(&mut self, message: impl Into<String>) {
        self.error = Some(message.into());
    }

    fn to_otlp(&self, end: u128) -> Value {
        let attributes: Vec<Value> = self.attributes.iter().map(|(k, v)| attribute(k, v)).collect();
        let mut span = json!({
            "traceId": to_hex(&self.context.trace_id),
            "spanId": to_hex(&self.context.span_id),
            "name": self.name,
            "kind": self.kind as u8,
            "startTimeUnixNano": self.start.to_string(),
            "endTimeUnixNano": end.to_string(),
            "attributes": attributes,
            "status": match &self.error {
                None => json!({}),
                Some(message) => json!({ "code": 2, "message": message }),
            },
        });
        if let Some(parent) = self.parent {
            span["parentSpanId"] = Value::String(to_hex(&parent));
        }
        span
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(exporter) = EXPORTER.get() {
            // Ended now; spans are lost rather than waited for when the exporter lags.
            let _ = exporter.spans.try_send(self.to_otlp(now_nanos()));
        }
    }
}

fn attribute(key: &str, value: &Value) -> Value {
    let value = match value {
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({ "intValue": n.to_string() }),
        Value::Number(n) => json!({ "doubleValue": n }),
        Value::String(s) => json!({ "stringValue": s }),
        other => json!({ "stringValue": other.to_string() }),
    };
    json!({ "key": key, "value": value })
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

tokio::task_local! {
    /// The span a hub invocation runs in, for what it sends to other nodes.
    static CURRENT: Option<TraceContext>;
}

/// Runs `work` with `context` as the current trace context ([`current`]).
pub async fn within<F: std::future::Future>(context: Option<TraceContext>, work: F) -> F::Output {
    CURRENT.scope(context, work).await
}

/// The trace context of the invocation running on this task, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok().flatten()
}

/// The span of a send another node published (`{hub}/deliver`, consumer
/// kind), continuing the trace of the span that sent it.
pub fn delivery(hub: &str, traceparent: Option<&str>) -> Option<Span> {
    let parent = traceparent.and_then(TraceContext::parse)?;
    let mut span = span(format!("{hub}/deliver"), Kind::Consumer, Some(parent))?;
    span.set("rpc.system", "signalr");
    span.set("rpc.service", hub);
    span.set("messaging.system", "redis");
    span.set("messaging.operation.type", "receive");
    Some(span)
}

/// Whether traces are exported.
pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

/// Starts a span named `name`, a child of `parent` (else the root of a new
/// trace); `None` when tracing is off.
pub fn span(name: impl Into<String>, kind: Kind, parent: Option<TraceContext>) -> Option<Span> {
    EXPORTER.get()?;
    let mut span_id = [0u8; 8];
    let mut rng = rand::rng();
    rng.fill_bytes(&mut span_id);
    let context = match parent {
        Some(parent) => TraceContext { span_id, ..parent },
        None => {
            let mut trace_id = [0u8; 16];
            rng.fill_bytes(&mut trace_id);
            TraceContext {
                trace_id,
                span_id,
                sampled: true,
            }
        }
    };
    Some(Span {
        context,
        parent: parent.map(|p| p.span_id),
        name: name.into(),
        kind,
        start: now_nanos(),
        attributes: Vec::new(),
        error: None,
    })
}

/// The span of a hub method invocation, named and attributed as ASP.NET
/// Core's SignalR server names its `InvocationIn` activity: `{hub}/{method}`,
/// server kind, `rpc.system = signalr`, `rpc.service` = the hub,
/// `rpc.method` = the method; its parent from the invocation's `traceparent`
/// header, if any.
pub fn invocation(hub: &str, method: &str, traceparent: Option<&str>) -> Option<Span> {
    let parent = traceparent.and_then(TraceContext::parse);
    let mut span = span(format!("{hub}/{method}"), Kind::Server, parent)?;
    span.set("rpc.system", "signalr");
    span.set("rpc.service", hub);
    span.set("rpc.method", method);
    Some(span)
}

/// Spans of store calls made within a traced invocation or request
/// ([`hubwire_store::Store::observe`]): `{operation} {table}`, client kind,
/// as OpenTelemetry's database conventions name them — `db.system.name`
/// (`postgresql` / `sqlite`), `db.operation.name`, `db.collection.name`,
/// `code.function.name` (the store method), `db.operation.batch.size` for a
/// call that was group-committed; a child of [`current`]. Calls with no
/// traced parent (sweeps, the outbox's background marks) have none.
pub struct StoreSpans;

impl hubwire_store::observe::Observer for StoreSpans {
    fn call(&self, call: &hubwire_store::observe::Call) -> Option<Box<dyn hubwire_store::observe::Observed>> {
        let parent = current()?;
        let name = format!("{} {}", call.operation, call.collection);
        let mut span = span(name, Kind::Client, Some(parent))?;
        span.set(
            "db.system.name",
            match call.backend {
                hubwire_store::Backend::Postgres => "postgresql",
                hubwire_store::Backend::Sqlite => "sqlite",
            },
        );
        span.set("db.operation.name", call.operation);
        span.set("db.collection.name", call.collection);
        span.set("code.function.name", call.method);
        Some(Box::new(span))
    }
}

impl hubwire_store::observe::Observed for Span {
    fn batch(&mut self, size: usize) {
        self.set("db.operation.batch.size", size);
    }

    fn failed(&mut self, error: &hubwire_store::StoreError) {
        self.fail(error.to_string());
    }
}

/// Spans of the Redis commands made within a traced invocation or request
/// ([`hubwire_backplane::RedisBackplane::observe`]): the command (`SADD`,
/// `HGET`; `EVALSHA {script}` for a keyspace script), client kind,
/// `db.system.name = redis`, `db.operation.name` = the command,
/// `db.stored_procedure.name` = the script, `hubwire.redis.call` = what the
/// call is for; a child of [`current`]. Publishes are left to the node's own
/// `PUBLISH` producer span (whose context travels to the other nodes);
/// commands with no traced parent (heartbeats, sweeps, resyncs) have none.
pub struct RedisSpans;

impl hubwire_backplane::redis::CommandObserver for RedisSpans {
    fn command(
        &self,
        command: &hubwire_backplane::redis::Command<'_>,
    ) -> Option<Box<dyn hubwire_backplane::redis::Observed>> {
        if matches!(command.name, "PUBLISH" | "SPUBLISH") {
            return None;
        }
        let parent = current()?;
        let name = match command.script {
            Some(script) => format!("{} {script}", command.name),
            None => command.name.to_owned(),
        };
        let mut span = span(name, Kind::Client, Some(parent))?;
        span.set("db.system.name", "redis");
        span.set("db.operation.name", command.name.to_owned());
        if let Some(script) = command.script {
            span.set("db.stored_procedure.name", script.to_owned());
        }
        span.set("hubwire.redis.call", command.what.to_owned());
        Some(Box::new(span))
    }
}

impl hubwire_backplane::redis::Observed for Span {
    fn failed(&mut self, error: &str) {
        self.fail(error);
    }
}

/// Starts exporting to `endpoint` (the OTLP base URL, `http://host:4318`;
/// spans go to `{endpoint}/v1/traces`) as `service.name` = `service` and
/// `service.instance.id` = `node`. Only the first call of a process counts.
pub fn install(endpoint: &str, service: &str, node: &str) -> anyhow::Result<()> {
    let target = traces_url(endpoint)?;
    if EXPORTER.get().is_some() {
        return Ok(());
    }
    let (spans, queue) = mpsc::channel(QUEUE);
    if EXPORTER.set(Exporter { spans }).is_ok() {
        let resource = json!({ "attributes": [
            attribute("service.name", &Value::from(service)),
            attribute("service.instance.id", &Value::from(node)),
        ]});
        tokio::spawn(export(target, resource, queue));
    }
    Ok(())
}

/// Where the exporter posts: `{endpoint}/v1/traces`, `http://` only.
fn traces_url(endpoint: &str) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(endpoint).map_err(|e| anyhow::anyhow!("otlp_endpoint {endpoint:?}: {e}"))?;
    if url.scheme() != "http" {
        anyhow::bail!("otlp_endpoint {endpoint:?}: only http:// is supported (put a collector beside the node)");
    }
    if url.host_str().is_none() {
        anyhow::bail!("otlp_endpoint {endpoint:?} has no host");
    }
    let mut traces = url.clone();
    traces.set_path(&format!("{}/v1/traces", url.path().trim_end_matches('/')));
    Ok(traces)
}

async fn export(target: url::Url, resource: Value, mut queue: mpsc::Receiver<Value>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let body = json!({ "resourceSpans": [{
            "resource": resource,
            "scopeSpans": [{ "scope": { "name": "hubwire-node" }, "spans": std::mem::take(&mut batch) }],
        }]});
        if let Err(e) = post(&target, body.to_string().as_bytes()).await {
            tracing::debug!(error = %e, "OTLP export failed; spans dropped");
        }
    }
}

/// One export, through the node's HTTP client ([`crate::core::webhook::post_json`]).
async fn post(target: &url::Url, body: &[u8]) -> std::io::Result<()> {
    let exchange = crate::core::webhook::post_json(target, &[], body);
    match tokio::time::timeout(Duration::from_secs(10), exchange).await? {
        Ok(status) if (200..300).contains(&status) => Ok(()),
        Ok(status) => Err(std::io::Error::other(format!("collector answered {status}"))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_what_is_not_one() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(text).unwrap();
        assert!(context.sampled);
        assert_eq!(context.traceparent(), text);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn spans_encode_as_otlp_json() {
        let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let mut span = Span {
            context: TraceContext {
                span_id: [1; 8],
                ..parent
            },
            parent: Some(parent.span_id),
            name: "chat/SendMessage".into(),
            kind: Kind::Server,
            start: 5,
            attributes: vec![("rpc.system", "signalr".into()), ("n", 3.into())],
            error: None,
        };
        span.fail("boom");
        let otlp = span.to_otlp(9);
        assert_eq!(otlp["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(otlp["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(otlp["spanId"], "0101010101010101");
        assert_eq!(otlp["kind"], 2);
        assert_eq!(otlp["endTimeUnixNano"], "9");
        assert_eq!(otlp["attributes"][0]["value"]["stringValue"], "signalr");
        assert_eq!(otlp["attributes"][1]["value"]["intValue"], "3");
        assert_eq!(otlp["status"]["code"], 2);
    }

    #[test]
    fn only_http_endpoints_are_accepted() {
        let target = traces_url("http://collector:4318/").unwrap();
        assert_eq!(
            (
                target.host_str().unwrap(),
                target.port_or_known_default().unwrap(),
                target.path()
            ),
            ("collector", 4318, "/v1/traces")
        );
        assert!(traces_url("https://collector:4318").is_err());
        assert!(traces_url("collector:4318").is_err());
    }
}
