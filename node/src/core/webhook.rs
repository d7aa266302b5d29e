//! Signed webhook deliveries: JSON bodies POSTed to a configured `http://`
//! URL from a bounded queue, with a timeout per attempt and retries with
//! exponential back-off. The chat kind's offline-delivery hook sends
//! through it (`crate::hubs::chat::offline`); it knows nothing of chat.
//!
//! - [`Webhook::offer`] never waits: a body goes into the queue, or, when
//!   the queue is full, is dropped and counted. The caller's path (a send)
//!   is never held up by a slow or dead receiver.
//! - One task takes bodies from the queue and runs up to [`IN_FLIGHT`]
//!   deliveries at once; each is one POST per attempt, with a fresh
//!   connection (`Connection: close`), bounded by `timeout`. A 2xx answer is
//!   a success; anything else (another status, a refused connection, a
//!   timeout) is retried after `backoff`, `2 × backoff`, `4 × backoff`, ...
//!   up to `retries` times, then counted as failed.
//! - Every attempt carries `X-Hubwire-Signature: sha256=<hex HMAC-SHA256 of
//!   the body with the secret>`, `X-Hubwire-Delivery` (one id for every
//!   attempt of a body, so the receiver can drop repeats) and
//!   `X-Hubwire-Attempt` (1, 2, ...).
//!
//! The client is a minimal HTTP/1.1 POST over a tokio `TcpStream` (a
//! request, then the status line of the answer; the rest is read and
//! ignored): `http://` only — a receiver outside the cluster's network sits
//! behind a TLS-terminating proxy. `docs/decisions.md` says why.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use prometheus::IntCounter;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

/// Deliveries one webhook runs at once (the rest wait in its queue).
pub const IN_FLIGHT: usize = 4;

/// The most bytes of an answer read before its status line must be there.
const MAX_STATUS_LINE: usize = 8192;

/// Where and how a webhook delivers.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// The receiver: an `http://host[:port]/path` URL.
    pub url: url::Url,
    /// The HMAC-SHA256 key of the signature header.
    pub secret: String,
    /// The longest one attempt may take (connect, send, status line).
    pub timeout: Duration,
    /// Attempts after the first that fails.
    pub retries: u32,
    /// The wait before the first retry; doubled before each next one.
    pub backoff: Duration,
    /// Bodies that may wait for delivery; more are dropped.
    pub queue: usize,
}

/// Checks that `url` is one a webhook can POST to: `http://`, a host.
pub fn check_url(url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if parsed.scheme() != "http" {
        return Err(format!(
            "{url:?}: only http:// URLs are supported (put a TLS-terminating proxy in front of an https receiver)"
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(parsed)
}

/// What a webhook counts (`hubwire_webhook_total{hub, hook, outcome}`).
#[derive(Clone)]
pub struct WebhookCounters {
    /// Bodies accepted into the queue.
    pub queued: IntCounter,
    /// Bodies the receiver accepted (2xx).
    pub delivered: IntCounter,
    /// Attempts that failed and were retried.
    pub retried: IntCounter,
    /// Bodies given up on after the last retry.
    pub failed: IntCounter,
    /// Bodies dropped because the queue was full.
    pub dropped: IntCounter,
}

/// One body waiting for delivery.
struct Job {
    body: Arc<Vec<u8>>,
    delivery: String,
}

/// A running webhook: its queue, drained by its task.
pub struct Webhook {
    queue: mpsc::Sender<Job>,
    counters: WebhookCounters,
}

impl Webhook {
    /// Starts the delivery task (on the current tokio runtime) and returns
    /// the queue's end.
    pub fn start(config: WebhookConfig, counters: WebhookCounters) -> Self {
        let (queue, jobs) = mpsc::channel(config.queue.max(1));
        tokio::spawn(run(Arc::new(config), counters.clone(), jobs));
        Self { queue, counters }
    }

    /// Counts a body dropped before it reached [`Webhook::offer`] (its
    /// caller's own bound was full).
    pub fn count_dropped(&self) {
        self.counters.dropped.inc();
    }

    /// Queues `body` for delivery: `false` (and counted as dropped) when
    /// the queue is full or the task is gone. Never waits.
    pub fn offer(&self, body: Vec<u8>) -> bool {
        let job = Job {
            body: Arc::new(body),
            delivery: format!("{:032x}", rand::random::<u128>()),
        };
        match self.queue.try_send(job) {
            Ok(()) => {
                self.counters.queued.inc();
                true
            }
            Err(_) => {
                self.counters.dropped.inc();
                false
            }
        }
    }
}

/// The delivery task: takes jobs as permits free up.
async fn run(config: Arc<WebhookConfig>, counters: WebhookCounters, mut jobs: mpsc::Receiver<Job>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(job) = jobs.recv().await else {
            return;
        };
        let (config, counters) = (config.clone(), counters.clone());
        tokio::spawn(async move {
            deliver(&config, &counters, &job).await;
            drop(permit);
        });
    }
}

/// Every attempt of one job, until one succeeds or the retries are spent.
async fn deliver(config: &WebhookConfig, counters: &WebhookCounters, job: &Job) {
    let signature = signature(config.secret.as_bytes(), &job.body);
    let mut backoff = config.backoff;
    for attempt in 1..=config.retries.saturating_add(1) {
        let outcome = tokio::time::timeout(
            config.timeout,
            post_json(
                &config.url,
                &[
                    ("X-Hubwire-Signature", &signature),
                    ("X-Hubwire-Delivery", &job.delivery),
                    ("X-Hubwire-Attempt", &attempt.to_string()),
                ],
                &job.body,
            ),
        )
        .await;
        let error = match outcome {
            Ok(Ok(status)) if (200..300).contains(&status) => {
                counters.delivered.inc();
                return;
            }
            Ok(Ok(status)) => format!("answered {status}"),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", config.timeout.as_millis()),
        };
        if attempt > config.retries {
            tracing::warn!(url = %config.url, delivery = %job.delivery, attempt, %error, "webhook delivery failed; giving up");
            counters.failed.inc();
            return;
        }
        tracing::info!(url = %config.url, delivery = %job.delivery, attempt, %error, "webhook delivery failed; retrying");
        counters.retried.inc();
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2);
    }
}

/// `sha256=<hex>` of HMAC-SHA256(`key`, `body`).
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + digest.len() * 2);
    hex.push_str("sha256=");
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    hex
}

/// One HTTP/1.1 `POST` of the JSON `body` to the `http://` `url`, with the
/// `extra` headers: the answer's status code. The node's one HTTP client
/// (this hook, the OTLP exporter in `core::telemetry`, and with
/// [`post_json_answer`] the backend hooks of `core::backend`).
pub(crate) async fn post_json(url: &url::Url, extra: &[(&str, &str)], body: &[u8]) -> std::io::Result<u16> {
    let mut stream = send_post(url, extra, body).await?;
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = answer.windows(2).position(|w| w == b"\r\n") {
            return status_of(&answer[..end]).ok_or_else(|| invalid("not an HTTP status line"));
        }
        if answer.len() > MAX_STATUS_LINE {
            return Err(invalid("status line too long"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(invalid("connection closed before a status line"));
        }
        answer.extend_from_slice(&chunk[..n]);
    }
}

/// [`post_json`], reading the whole answer: its status code and body (by
/// `Content-Length`, chunked, or up to the end of the connection), which
/// may not exceed `max_body` bytes.
pub(crate) async fn post_json_answer(
    url: &url::Url,
    extra: &[(&str, &str)],
    body: &[u8],
    max_body: usize,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = send_post(url, extra, body).await?;
    let mut answer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        let done = n == 0;
        answer.extend_from_slice(&chunk[..n]);
        if answer.len() > MAX_STATUS_LINE + max_body {
            return Err(invalid("answer too long"));
        }
        if let Some(parsed) = parse_answer(&answer, done)? {
            return Ok(parsed);
        }
        if done {
            return Err(invalid("connection closed before the answer was complete"));
        }
    }
}

/// The status and body of a complete HTTP/1.1 answer in `bytes`; `None`
/// while more is needed (`ended`: the connection closed, so a body without
/// a length ends here).
fn parse_answer(bytes: &[u8], ended: bool) -> std::io::Result<Option<(u16, Vec<u8>)>> {
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        if bytes.len() > MAX_STATUS_LINE {
            return Err(invalid("answer head too long"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&bytes[..head_end]).map_err(|_| invalid("answer head is not text"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| status_of(l.as_bytes()))
        .ok_or_else(|| invalid("not an HTTP status line"))?;
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| invalid("bad Content-Length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &bytes[head_end + 4..];
    if chunked {
        return Ok(dechunk(rest)?.map(|body| (status, body)));
    }
    match length {
        Some(length) if rest.len() >= length => Ok(Some((status, rest[..length].to_vec()))),
        Some(_) if ended => Err(invalid("connection closed inside the body")),
        Some(_) => Ok(None),
        None if ended || status == 204 || status == 304 => Ok(Some((status, rest.to_vec()))),
        None => Ok(None),
    }
}

/// A chunked body decoded, `None` until its last chunk is in.
fn dechunk(mut rest: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| invalid("bad chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
        let data = &rest[line_end + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        rest = &data[size + 2..];
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Connects to `url` and writes the `POST` (`Connection: close`).
async fn send_post(url: &url::Url, extra: &[(&str, &str)], body: &[u8]) -> std::io::Result<TcpStream> {
    let host = url.host_str().ok_or_else(|| invalid("no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let mut stream = TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
    stream.set_nodelay(true)?;
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let mut head = format!(
        "POST {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: hubwire\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    Ok(stream)
}

/// The code of a status line `HTTP/1.x NNN reason`.
fn status_of(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    let code = parts.next()?;
    (code.len() == 3).then_some(())?;
    code.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_http_urls_with_a_host_are_accepted() {
        assert!(check_url("http://127.0.0.1:9000/push").is_ok());
        assert!(check_url("https://push.example.com/").unwrap_err().contains("http://"));
        assert!(check_url("push").is_err());
        assert!(status_of(b"HTTP/1.1 204 No Content") == Some(204));
        assert!(status_of(b"HTTP/1.0 500").is_some());
        assert!(status_of(b"SSH-2.0").is_none());
    }

    #[test]
    fn answers_are_read_by_length_chunked_or_to_the_end() {
        let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}{}extra";
        assert_eq!(parse_answer(sized, false).unwrap(), Some((200, b"{}{}".to_vec())));
        assert_eq!(parse_answer(&sized[..30], false).unwrap(), None);
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{\"\r\n3;x=y\r\na\":\r\n2\r\n1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_answer(chunked, false).unwrap(),
            Some((200, br#"{"a":1}"#.to_vec()))
        );
        assert_eq!(parse_answer(&chunked[..60], false).unwrap(), None);
        let no_length = b"HTTP/1.1 403 Forbidden\r\n\r\nno";
        assert_eq!(parse_answer(no_length, false).unwrap(), None);
        assert_eq!(parse_answer(no_length, true).unwrap(), Some((403, b"no".to_vec())));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab", true).is_err());
        assert!(parse_answer(b"SSH-2.0\r\n\r\n", true).is_err());
    }

    fn counters() -> WebhookCounters {
        let c = |n: &str| IntCounter::new(n, n).unwrap();
        WebhookCounters {
            queued: c("q"),
            delivered: c("d"),
            retried: c("r"),
            failed: c("f"),
            dropped: c("x"),
        }
    }

    /// Accepts `answers.len()` requests, answering each with its status;
    /// sends each request's text back.
    async fn receiver(answers: Vec<u16>) -> (u16, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for status in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .parse()
                            .unwrap();
                        if request.len() >= head_end + 4 + length {
                            tx.send(text).unwrap();
                            break;
                        }
                    }
                }
                let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (port, rx)
    }

    #[tokio::test]
    async fn a_failed_attempt_is_retried_with_the_same_delivery_id_and_signed() {
        let (port, mut requests) = receiver(vec![500, 200]).await;
        let counters = counters();
        let config = WebhookConfig {
            url: check_url(&format!("http://127.0.0.1:{port}/push?x=1")).unwrap(),
            secret: "key".into(),
            timeout: Duration::from_secs(30),
            retries: 2,
            backoff: Duration::from_millis(1),
            queue: 4,
        };
        let hook = Webhook::start(config, counters.clone());
        assert!(hook.offer(br#"{"a":1}"#.to_vec()));
        let first = requests.recv().await.unwrap();
        let second = requests.recv().await.unwrap();
        assert!(first.starts_with("POST /push?x=1 HTTP/1.1\r\n"), "{first}");
        assert!(first.contains(&format!(
            "X-Hubwire-Signature: {}\r\n",
            signature(b"key", br#"{"a":1}"#)
        )));
        assert!(first.contains("X-Hubwire-Attempt: 1\r\n") && second.contains("X-Hubwire-Attempt: 2\r\n"));
        let delivery = |t: &str| {
            t.lines()
                .find(|l| l.starts_with("X-Hubwire-Delivery"))
                .unwrap()
                .to_owned()
        };
        assert_eq!(delivery(&first), delivery(&second));
        assert!(second.ends_with(r#"{"a":1}"#));
        while counters.delivered.get() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            (counters.queued.get(), counters.retried.get(), counters.failed.get()),
            (1, 1, 0)
        );
    }

    #[tokio::test]
    async fn a_receiver_that_never_accepts_is_given_up_on_and_a_full_queue_drops() {
        // A port nobody listens on: every attempt is refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let counters = counters();
        let config = WebhookConfig {
            url: check_url(&format!("http://127.0.0.1:{port}/")).unwrap(),
            secret: "k".into(),
            timeout: Duration::from_secs(5),
            retries: 1,
            backoff: Duration::from_millis(1),
            queue: 1,
        };
        let hook = Webhook::start(config, counters.clone());
        let offered: Vec<bool> = (0..20).map(|_| hook.offer(b"{}".to_vec())).collect();
        // The queue holds one and the task had no chance to run yet (no
        // await since start): the other 19 are dropped.
        assert_eq!(offered.iter().filter(|o| **o).count(), 1);
        assert_eq!(counters.dropped.get(), 19);
        while counters.failed.get() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!((counters.retried.get(), counters.delivered.get()), (1, 0));
    }
}
