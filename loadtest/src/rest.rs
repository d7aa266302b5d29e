//! Just enough HTTP for a scenario's setup through hubwire's REST API: signed
//! tokens and one POST per connection (`Connection: close`), loopback only.

use anyhow::Context;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a setup token lives.
const TOKEN_SECS: u64 = 6 * 3600;

/// A user token signed with the node's HS256 secret (with a `tenant`
/// claim, if given).
pub fn user_token(secret: &str, user: &str, tenant: Option<&str>) -> anyhow::Result<String> {
    let mut claims = json!({ "sub": user, "exp": expiry() });
    if let Some(tenant) = tenant {
        claims["tenant"] = json!(tenant);
    }
    sign(secret, claims)
}

/// A token with the `admin` role, which the REST API accepts.
pub fn admin_token(secret: &str) -> anyhow::Result<String> {
    sign(
        secret,
        json!({ "sub": "loadtest", "roles": ["admin"], "exp": expiry() }),
    )
}

fn expiry() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    now + TOKEN_SECS
}

fn sign(secret: &str, claims: Value) -> anyhow::Result<String> {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).context("signing a token")
}

/// POSTs `body` as JSON to `base_url` + `path` with a bearer token; fails
/// unless the answer is 2xx.
pub async fn post(base_url: &str, path: &str, token: &str, body: &Value) -> anyhow::Result<()> {
    let url = url::Url::parse(base_url).context("the node URL")?;
    let host = url.host_str().context("the node URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let mut stream = TcpStream::connect((host, port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split(' ').nth(1).unwrap_or_default();
    if !status.starts_with('2') {
        anyhow::bail!("POST {path}: {}", answer.lines().next().unwrap_or_default());
    }
    Ok(())
}
