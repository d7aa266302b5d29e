//! Prometheus metrics, served as text at `/metrics`.
//!
//! Per-hub series are resolved once per connection ([`HubMetrics`]) so the hot
//! path increments a counter it already holds instead of looking a label up.
//! All names start with `hubwire_`.

use std::fmt::Write;

use hubwire_backplane::{AnyBackplane, Backplane};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric of a node.
pub struct Metrics {
    registry: Registry,
    connections: IntGaugeVec,
    connections_opened: IntCounterVec,
    messages_in: IntCounterVec,
    messages_out: IntCounterVec,
    slow_closed: IntCounterVec,
    delivery: HistogramVec,
    websocket_closes: IntCounterVec,
}

/// The series of one hub, held by each of its connections.
#[derive(Clone)]
pub struct HubMetrics {
    /// Open connections.
    pub connections: IntGauge,
    /// Connections opened since start.
    pub connections_opened: IntCounter,
    /// Hub messages received from clients.
    pub messages_in: IntCounter,
    /// Records queued to clients.
    pub messages_out: IntCounter,
    /// Connections closed because their outbound queue was full.
    pub slow_closed: IntCounter,
    /// Seconds a record waited in its connection queue before the writer took it.
    pub delivery: Histogram,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    // Names are constants of this module and unique; a clash is a programming error caught by the tests.
    registry
        .register(Box::new(collector.clone()))
        .unwrap_or_else(|e| panic!("metric registration: {e}"));
    collector
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let hub = &["hub"];
        let gauge = |name, help| IntGaugeVec::new(opts(name, help), hub).map(|g| register(&registry, g));
        let counter = |name, help| IntCounterVec::new(opts(name, help), hub).map(|c| register(&registry, c));
        let built = (|| -> prometheus::Result<Self> {
            Ok(Self {
                connections: gauge("hubwire_connections", "Open connections")?,
                connections_opened: counter("hubwire_connections_opened_total", "Connections opened")?,
                messages_in: counter("hubwire_messages_in_total", "Hub messages received from clients")?,
                messages_out: counter("hubwire_messages_out_total", "Records queued to clients")?,
                slow_closed: counter(
                    "hubwire_slow_connections_closed_total",
                    "Connections closed because their outbound queue was full",
                )?,
                delivery: HistogramVec::new(
                    HistogramOpts::new(
                        "hubwire_delivery_seconds",
                        "Seconds a record waited in its connection queue before the writer took it",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    ]),
                    hub,
                )
                .map(|h| register(&registry, h))?,
                websocket_closes: IntCounterVec::new(
                    opts(
                        "hubwire_websocket_closes_total",
                        "WebSocket Close frames sent, by status code (1002 protocol error, 1007 invalid UTF-8, 1009 too big)",
                    ),
                    &["code"],
                )
                .map(|c| register(&registry, c))?,
                registry: registry.clone(),
            })
        })();
        built.unwrap_or_else(|e| panic!("metric definition: {e}"))
    }

    /// The series of one hub.
    pub fn hub(&self, hub: &str) -> HubMetrics {
        HubMetrics {
            connections: self.connections.with_label_values(&[hub]),
            connections_opened: self.connections_opened.with_label_values(&[hub]),
            messages_in: self.messages_in.with_label_values(&[hub]),
            messages_out: self.messages_out.with_label_values(&[hub]),
            slow_closed: self.slow_closed.with_label_values(&[hub]),
            delivery: self.delivery.with_label_values(&[hub]),
        }
    }

    /// Counts a WebSocket Close frame sent with status `code`.
    pub fn websocket_closed(&self, code: u16) {
        self.websocket_closes
            .with_label_values(&[code.to_string().as_str()])
            .inc();
    }

    /// The Prometheus text exposition of every metric, plus the backplane's
    /// own counters (kept by the backplane crate, rendered here).
    pub fn render(&self, backplane: &AnyBackplane) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        let mut text = String::from_utf8_lossy(&out).into_owned();
        let ready = u64::from(backplane.is_ready());
        let _ = writeln!(text, "# HELP hubwire_backplane_ready Whether the backplane is connected and in sync\n# TYPE hubwire_backplane_ready gauge\nhubwire_backplane_ready {ready}");
        if let AnyBackplane::Redis(redis) = backplane {
            let s = redis.stats();
            let counters = [
                ("published", "Messages published to other nodes", s.published),
                ("received", "Messages and events received from other nodes", s.received),
                ("errors", "Redis calls that failed", s.redis_errors),
                ("reconnects", "Times a lost Redis connection came back", s.reconnects),
                (
                    "decode_errors",
                    "Received frames that could not be decoded",
                    s.decode_errors,
                ),
                (
                    "dropped",
                    "Received messages lost because the receiver lagged",
                    s.dropped,
                ),
                (
                    "resyncs",
                    "Times this node wrote its connections back into Redis",
                    s.resyncs,
                ),
                ("nodes_swept", "Dead nodes this node swept", s.nodes_swept),
            ];
            for (name, help, value) in counters {
                let _ = writeln!(text, "# HELP hubwire_redis_{name}_total {help}\n# TYPE hubwire_redis_{name}_total counter\nhubwire_redis_{name}_total {value}");
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubwire_backplane::{LocalBackplane, NodeId};

    #[test]
    fn hub_series_appear_in_the_text_output() {
        let metrics = Metrics::new();
        let chat = metrics.hub("chat");
        chat.connections.inc();
        chat.messages_in.inc_by(3);
        let (local, _inbox) = LocalBackplane::single(NodeId::from("n"));
        let text = metrics.render(&AnyBackplane::Local(local));
        assert!(text.contains("hubwire_connections{hub=\"chat\"} 1"), "{text}");
        assert!(text.contains("hubwire_messages_in_total{hub=\"chat\"} 3"), "{text}");
        assert!(text.contains("hubwire_backplane_ready 1"), "{text}");
    }

    #[test]
    fn websocket_closes_are_counted_by_code() {
        let metrics = Metrics::new();
        metrics.websocket_closed(1002);
        metrics.websocket_closed(1002);
        metrics.websocket_closed(1007);
        let (local, _inbox) = LocalBackplane::single(NodeId::from("n"));
        let text = metrics.render(&AnyBackplane::Local(local));
        assert!(
            text.contains("hubwire_websocket_closes_total{code=\"1002\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("hubwire_websocket_closes_total{code=\"1007\"} 1"),
            "{text}"
        );
    }
}
