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
//! The client is a minimal HTTP/1.1 POST over a tokio `TcpStream`: `http://`
//! only — a receiver outside the cluster's network sits behind a
//! TLS-terminating proxy. `docs/decisions.md` says why. [`post_json`] (these
//! deliveries, the OTLP exporter) reads the status line and closes the
//! connection; [`post`] (the upstream, the backend hooks: one request per
//! invocation or sign-in, so on their hot path) reads the whole answer and
//! keeps the connection alive for the next request to the same receiver
//! (a bounded pool of idle connections, dropped after 4 s idle).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// `extra` headers: the answer's status code (the rest of the answer is not
/// read). The node's one HTTP client (this hook, the OTLP exporter in
/// `core::telemetry`, [`post`] for the upstream of `core::upstream` and
/// [`post_json_answer`] for the backend hooks of `core::backend`).
pub(crate) async fn post_json(url: &url::Url, extra: &[(&str, &str)], body: &[u8]) -> std::io::Result<u16> {
    let mut stream = send(url, "application/json", extra, body).await?;
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

/// [`post`] of a JSON `body`: the answer's status code and body (the
/// backend hooks of `core::backend`).
pub(crate) async fn post_json_answer(
    url: &url::Url,
    extra: &[(&str, &str)],
    body: &[u8],
    max_body: usize,
) -> std::io::Result<(u16, Vec<u8>)> {
    let answer = post(url, "application/json", extra, body, max_body).await?;
    Ok((answer.status, answer.body))
}

/// A whole HTTP answer, as [`post`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

/// One HTTP/1.1 `POST` of `body` as `content_type` to the `http://` `url`
/// with the `extra` headers, and the whole answer: its status, content type
/// and body (by `Content-Length`, chunked, or up to the end of the
/// connection), at most `max_body` bytes of body (more is an error).
///
/// The connection is kept alive and reused ([`IDLE`]): a request goes out
/// on an idle connection to the same `host:port` when there is one, else on
/// a new one. An idle connection that the receiver closed under it — no
/// byte of an answer came — is replaced by a new connection once; the
/// receiver did not take that request, so it is not sent twice.
pub(crate) async fn post(
    url: &url::Url,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    max_body: usize,
) -> std::io::Result<Answer> {
    let key = authority(url)?;
    let request = request(url, content_type, extra, body, true)?;
    if let Some(mut stream) = IDLE.take(&key) {
        let mut answered = false;
        match exchange(&mut stream, &request, max_body, &mut answered).await {
            Ok((answer, reusable)) => {
                if reusable {
                    IDLE.put(key, stream);
                }
                return Ok(answer);
            }
            Err(e) if answered => return Err(e),
            Err(_) => {}
        }
    }
    let mut stream = connect(url).await?;
    let (answer, reusable) = exchange(&mut stream, &request, max_body, &mut false).await?;
    if reusable {
        IDLE.put(key, stream);
    }
    Ok(answer)
}

/// Idle connections kept per `host:port` at the most.
const IDLE_PER_HOST: usize = 32;
/// Receivers (`host:port`) whose idle connections are kept at the most.
const IDLE_HOSTS: usize = 64;
/// How long a connection stays idle before it is dropped: below the common
/// keep-alive timeouts of receivers (Node.js 5 s, nginx 75 s, Kestrel 130
/// s), so that the receiver rarely closes one just as it is reused.
const IDLE_FOR: Duration = Duration::from_secs(4);

/// The idle keep-alive connections of [`post`] (the upstream and the
/// backend hooks), per `host:port`; the only state of the node's HTTP
/// client, owned here.
static IDLE: std::sync::LazyLock<IdlePool> = std::sync::LazyLock::new(IdlePool::default);

/// An idle connection and when it went idle.
type Idle = (TcpStream, Instant);

/// Idle connections by `host:port`.
#[derive(Default)]
struct IdlePool(std::sync::Mutex<HashMap<String, Vec<Idle>>>);

impl IdlePool {
    /// The most recently idle connection to `key` that is still open (a
    /// connection the receiver closed, or that sent something unasked, is
    /// dropped), if any.
    fn take(&self, key: &str) -> Option<TcpStream> {
        let mut idle = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let streams = idle.get_mut(key)?;
        while let Some((stream, since)) = streams.pop() {
            let mut probe = [0u8; 1];
            let open = matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            if open && since.elapsed() < IDLE_FOR {
                return Some(stream);
            }
        }
        None
    }

    /// Keeps `stream` for a next request to `key`, within the bounds.
    fn put(&self, key: String, stream: TcpStream) {
        let mut idle = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        idle.retain(|_, streams| {
            streams.retain(|(_, since)| since.elapsed() < IDLE_FOR);
            !streams.is_empty()
        });
        if idle.len() >= IDLE_HOSTS && !idle.contains_key(&key) {
            return;
        }
        let streams = idle.entry(key).or_default();
        if streams.len() < IDLE_PER_HOST {
            streams.push((stream, Instant::now()));
        }
    }
}

/// Sends `request` on `stream` and reads the whole answer; whether the
/// connection may carry another request (an HTTP/1.1 answer delimited by
/// length or chunks, without `Connection: close`, nothing after it).
/// `answered` turns true with the first byte of the answer.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    max_body: usize,
    answered: &mut bool,
) -> std::io::Result<(Answer, bool)> {
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_STATUS_LINE * 4 {
            return Err(invalid("answer head too long"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(invalid("connection closed before the answer's head"));
        }
        *answered = true;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| invalid("answer head is not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_of(status_line.as_bytes()).ok_or_else(|| invalid("not an HTTP status line"))?;
    let mut reusable = status_line.starts_with("HTTP/1.1 ");
    let (mut length, mut chunked, mut content_type) = (None, false, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| invalid("bad Content-Length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("connection") && value.to_ascii_lowercase().contains("close") {
            reusable = false;
        }
    }
    let mut rest = buf.split_off(head_end + 4);
    let too_large = || invalid("answer body too large");
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    let body = if no_body {
        Vec::new()
    } else if chunked {
        let mut body = Vec::new();
        loop {
            // One chunk: its size line, its bytes, CRLF.
            let line_end = loop {
                if let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
                    break end;
                }
                read_more(stream, &mut rest, &mut chunk, max_body).await?;
            };
            let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| invalid("bad chunk size"))?;
            let size_text = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                rest.drain(..line_end + 2);
                break;
            }
            if body.len() + size > max_body {
                return Err(too_large());
            }
            while rest.len() < line_end + 2 + size + 2 {
                read_more(stream, &mut rest, &mut chunk, max_body + 64).await?;
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
        }
        // The trailer section, up to its empty line.
        loop {
            match rest.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    rest.drain(..2);
                    break body;
                }
                Some(end) => drop(rest.drain(..end + 2)),
                None => read_more(stream, &mut rest, &mut chunk, MAX_STATUS_LINE).await?,
            }
        }
    } else if let Some(length) = length {
        if length > max_body {
            return Err(too_large());
        }
        while rest.len() < length {
            read_more(stream, &mut rest, &mut chunk, max_body).await?;
        }
        let body = rest.drain(..length).collect();
        body
    } else {
        // Neither: the body ends with the connection (`Connection: close`).
        reusable = false;
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break std::mem::take(&mut rest);
            }
            rest.extend_from_slice(&chunk[..n]);
            if rest.len() > max_body {
                return Err(too_large());
            }
        }
    };
    // Bytes after the answer: not a connection to reuse.
    reusable &= rest.is_empty();
    let answer = Answer {
        status,
        content_type,
        body,
    };
    Ok((answer, reusable))
}

/// Reads more of the answer into `buf`: an error at the end of the
/// connection or beyond `max` bytes.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, chunk: &mut [u8], max: usize) -> std::io::Result<()> {
    let n = stream.read(chunk).await?;
    if n == 0 {
        return Err(invalid("connection closed inside the answer's body"));
    }
    buf.extend_from_slice(&chunk[..n]);
    if buf.len() > max.saturating_add(MAX_STATUS_LINE) {
        return Err(invalid("answer body too large"));
    }
    Ok(())
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Connects to `url` and sends the request (`Connection: close`); the
/// stream to read the answer from.
async fn send(url: &url::Url, content_type: &str, extra: &[(&str, &str)], body: &[u8]) -> std::io::Result<TcpStream> {
    let request = request(url, content_type, extra, body, false)?;
    let mut stream = connect(url).await?;
    stream.write_all(&request).await?;
    stream.flush().await?;
    Ok(stream)
}

/// A new connection to `url`'s host and port.
async fn connect(url: &url::Url) -> std::io::Result<TcpStream> {
    let host = url.host_str().ok_or_else(|| invalid("no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let stream = TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `host[:port]` of `url`, as its `Host` header says it.
fn authority(url: &url::Url) -> std::io::Result<String> {
    let host = url.host_str().ok_or_else(|| invalid("no host"))?;
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// The bytes of a `POST` of `body` to `url`: head and body in one buffer
/// (one write, one segment where it fits).
fn request(
    url: &url::Url,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) -> std::io::Result<Vec<u8>> {
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let mut head = format!(
        "POST {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hubwire\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        authority(url)?,
        body.len()
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    Ok(request)
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

    /// Answers one request with `answer` (raw bytes), then closes.
    async fn answering(answer: &'static [u8]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await.unwrap();
            socket.write_all(answer).await.unwrap();
        });
        port
    }

    #[tokio::test]
    async fn post_reads_the_whole_answer_by_length_chunks_or_close() {
        let cases: [(&'static [u8], u16, &[u8]); 3] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n[1,2]extra",
                200,
                b"[1,2]",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
                200,
                b"abcde",
            ),
            (b"HTTP/1.0 500 Oops\r\n\r\nuntil close", 500, b"until close"),
        ];
        for (answer, status, body) in cases {
            let port = answering(answer).await;
            let url = check_url(&format!("http://127.0.0.1:{port}/x")).unwrap();
            let got = post(&url, "application/x-msgpack", &[("X-A", "1")], b"\x01", 1024)
                .await
                .unwrap();
            assert_eq!((got.status, got.body.as_slice()), (status, body));
        }
        let port = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n").await;
        let url = check_url(&format!("http://127.0.0.1:{port}/x")).unwrap();
        assert!(post(&url, "application/json", &[], b"{}", 1024).await.is_err());
    }

    /// A receiver answering `answer` to each request, at most `per_connection`
    /// requests on one connection (then it closes it); counts connections.
    async fn keep_alive_receiver(
        answer: &'static [u8],
        per_connection: usize,
    ) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    for _ in 0..per_connection {
                        // One request: its head, then Content-Length bytes.
                        loop {
                            let text = String::from_utf8_lossy(&pending).into_owned();
                            if let Some(head_end) = text.find("\r\n\r\n") {
                                let length: usize = text[..head_end]
                                    .lines()
                                    .find_map(|l| l.strip_prefix("Content-Length: "))
                                    .map_or(0, |v| v.trim().parse().unwrap());
                                if pending.len() >= head_end + 4 + length {
                                    pending.drain(..head_end + 4 + length);
                                    break;
                                }
                            }
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => pending.extend_from_slice(&buf[..n]),
                            }
                        }
                        socket.write_all(answer).await.unwrap();
                    }
                });
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn post_keeps_the_connection_alive_and_replaces_one_the_receiver_closed() {
        use std::sync::atomic::Ordering;
        let url_of = |port: u16| check_url(&format!("http://127.0.0.1:{port}/api")).unwrap();
        let status_of_post = |port: u16| async move {
            let answer = post(&url_of(port), "application/json", &[], b"{}", 64).await.unwrap();
            answer.status
        };
        // By length, and chunked with a trailer: five requests, one connection.
        for answer in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n"[..],
        ] {
            let (port, accepted) = keep_alive_receiver(answer, usize::MAX).await;
            for _ in 0..5 {
                let got = post(&url_of(port), "application/json", &[], b"{}", 64).await.unwrap();
                assert_eq!((got.status, got.body.as_slice()), (200, &b"ok"[..]));
            }
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                1,
                "{}",
                String::from_utf8_lossy(answer)
            );
        }
        // The receiver closes each connection after one answer: the next
        // request finds it closed and goes out on a new one, and succeeds.
        let (port, accepted) = keep_alive_receiver(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1).await;
        for _ in 0..3 {
            assert_eq!(status_of_post(port).await, 200);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        // Without the pause the close may come after the idle check (the
        // request goes out on the closed connection, no answer comes): the
        // request is sent again on a new connection.
        let (port, accepted) = keep_alive_receiver(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1).await;
        for _ in 0..20 {
            assert_eq!(status_of_post(port).await, 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 20);
        // `Connection: close` and HTTP/1.0 answers are not reused.
        for answer in [
            &b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"[..],
            &b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
        ] {
            let (port, accepted) = keep_alive_receiver(answer, usize::MAX).await;
            for _ in 0..2 {
                assert_eq!(status_of_post(port).await, 200);
            }
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                2,
                "{}",
                String::from_utf8_lossy(answer)
            );
        }
    }
}
