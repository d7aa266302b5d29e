//! The node's log output: plain text (the default) or one JSON object per
//! line (`log_format = "json"`, or `"auto"`: JSON unless stderr is a
//! terminal), for log collectors.
//!
//! A JSON line holds `timestamp` (RFC 3339, UTC), `level`, `target`, `node`
//! (this node's id), `message`, the fields of every span the event is in —
//! the connection span of the WebSocket transport gives `connection`, `hub`
//! and `user` — and the event's own fields. The filter is `RUST_LOG`'s
//! (default `info`) in both formats.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How the node writes its logs (`log_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's default format).
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Resolves the configured value: `text`, `json`, or `auto` (JSON when
    /// stderr is not a terminal). Anything else is refused.
    pub fn resolve(value: &str) -> anyhow::Result<Self> {
        match value {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            "auto" if std::io::stderr().is_terminal() => Ok(Self::Text),
            "auto" => Ok(Self::Json),
            other => anyhow::bail!("log_format must be text, json or auto, not {other:?}"),
        }
    }
}

/// Installs the global subscriber writing to stderr in `format`; `node` is
/// the `node` field of every JSON line.
pub fn init(format: LogFormat, node: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(JsonLines::new(node, std::io::stderr))
            .init(),
    }
}

/// The fields recorded on a span, kept in its extensions.
struct SpanFields(Map<String, Value>);

/// A layer writing each event as one JSON line to what `make_writer` returns.
pub struct JsonLines<W> {
    node: String,
    make_writer: W,
}

impl<W> JsonLines<W> {
    /// Lines for node `node`, written to `make_writer()`.
    pub fn new(node: &str, make_writer: W) -> Self {
        Self {
            node: node.to_owned(),
            make_writer,
        }
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
}

impl<S, W, O> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: Fn() -> O + Send + Sync + 'static,
    O: std::io::Write,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut Fields(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut Fields(&mut fields.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(rfc3339(SystemTime::now())));
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("target".into(), Value::String(meta.target().to_owned()));
        line.insert("node".into(), Value::String(self.node.clone()));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    line.extend(fields.0.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        event.record(&mut Fields(&mut line));
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        // A log line that cannot be written has nowhere else to go.
        let _ = (self.make_writer)().write_all(text.as_bytes());
    }
}

/// `time` as `2026-12-03T10:22:00.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let (year, month, day) = hubwire_protocol::civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    );
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn json_lines_carry_the_node_span_and_event_fields() {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let writer = move || SinkWriter(sink.clone());
        let subscriber = tracing_subscriber::registry().with(JsonLines::new("node-7", writer));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("connection", connection = "c1", user = "alice");
            let _entered = span.enter();
            tracing::warn!(reason = "queue_bytes", "closing slow connection");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["node"], "node-7");
        assert_eq!(line["connection"], "c1");
        assert_eq!(line["user"], "alice");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["reason"], "queue_bytes");
        assert_eq!(line["message"], "closing slow connection");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_796_293_320_123);
        assert_eq!(rfc3339(t), "2026-12-03T10:22:00.123Z");
    }

    #[test]
    fn formats_resolve() {
        assert_eq!(LogFormat::resolve("json").unwrap(), LogFormat::Json);
        assert_eq!(LogFormat::resolve("text").unwrap(), LogFormat::Text);
        assert!(LogFormat::resolve("xml").is_err());
    }

    struct SinkWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SinkWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
