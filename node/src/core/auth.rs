//! User authentication: JWTs from `Authorization: Bearer` or `access_token`.
//!
//! Tokens are HS256 with the configured secret, or RS256 / ES256 with a
//! configured public key. The claims hubwire reads: `sub` (the user id), `name`,
//! `tenant`, `roles`, `channels` (a string or a list each), `exp`, which is
//! required, and `nbf`, both enforced with a small leeway for clock skew. An
//! empty `sub` is refused, and so is any `crit` header parameter (RFC 7515
//! 4.1.11: hubwire understands no extension, so it must reject them). With a
//! public key configured, `jwt_allow_hs256 = false` refuses HS256 tokens.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::core::config::Config;
use hubwire_backplane::UserId;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

/// The role a user token needs to call the REST API and the hub methods that
/// reach other users.
pub const ADMIN_ROLE: &str = "admin";

/// Who is behind a connection or a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The `sub` claim.
    pub user: UserId,
    /// The `name` claim.
    pub name: Option<String>,
    /// The `picture` claim (OpenID Connect's profile picture URL), or the
    /// backend hook's `picture`.
    pub picture: Option<String>,
    /// The `tenant` claim.
    pub tenant: Option<String>,
    /// The `roles` claim.
    pub roles: Vec<String>,
    /// The `channels` claim: patterns of channels the user may subscribe to.
    pub channels: Vec<String>,
    /// The `exp` claim, seconds since the Unix epoch.
    pub expires: u64,
    /// Groups the connection joins as it connects: an Azure client token's
    /// `asrs.s.gp` claim (`web::azure`; `:generateToken`'s `group`). Empty
    /// for every other sign-in.
    pub groups: Vec<String>,
}

impl Principal {
    /// Whether the `roles` claim holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the `channels` claim lets this principal join `group`: without
    /// the claim (or with an empty one) every group; otherwise a group one of
    /// its patterns matches, `*` standing for any run of characters.
    pub fn may_join(&self, group: &str) -> bool {
        self.channels.is_empty()
            || self
                .channels
                .iter()
                .any(|p| glob_matches(p.as_bytes(), group.as_bytes()))
    }
}

/// Whether `text` matches `pattern`, whose `*` matches any run of bytes.
/// Byte-wise is exact for UTF-8: a literal after a `*` starts with a lead
/// byte, which never matches inside a character. Greedy with one backtrack
/// point (the last `*`), so it takes at most `pattern × text` steps.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern after it, text it took up to).
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                resume = Some((p, t));
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                Some((after_star, taken)) => {
                    p = after_star;
                    t = taken + 1;
                    resume = Some((after_star, t));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A claim that may be one string or a list of strings.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The claims of a user token.
#[derive(Debug, Deserialize, Serialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Profile picture URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "is_none")]
    roles: OneOrMany,
    #[serde(default, skip_serializing_if = "is_none")]
    channels: OneOrMany,
}

fn is_none(v: &OneOrMany) -> bool {
    matches!(v, OneOrMany::None)
}

impl Claims {
    /// Claims for a development token valid for `ttl_secs`.
    pub fn new(sub: &str, ttl_secs: u64) -> Self {
        Self {
            sub: sub.into(),
            exp: unix_now() + ttl_secs,
            nbf: None,
            name: None,
            picture: None,
            tenant: None,
            roles: OneOrMany::None,
            channels: OneOrMany::None,
        }
    }
    /// Sets the roles.
    pub fn with_roles(mut self, roles: Vec<String>) -> Self {
        self.roles = if roles.is_empty() {
            OneOrMany::None
        } else {
            OneOrMany::Many(roles)
        };
        self
    }
    /// Sets the channel patterns.
    pub fn with_channels(mut self, channels: Vec<String>) -> Self {
        self.channels = if channels.is_empty() {
            OneOrMany::None
        } else {
            OneOrMany::Many(channels)
        };
        self
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Why a token or a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token in the request.
    #[error("no access token")]
    Missing,
    /// The token is malformed, badly signed or expired.
    #[error("invalid access token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The token verifies but is not acceptable (empty `sub`, `crit` header,
    /// an algorithm turned off).
    #[error("refused access token: {0}")]
    Refused(&'static str),
    /// The configured key cannot be used.
    #[error("unusable key {path}: {reason}")]
    Key {
        /// Where the key came from.
        path: String,
        /// Why it is unusable.
        reason: String,
    },
}

/// Verifies user tokens (and issues development ones).
pub struct Authenticator {
    hs256: (EncodingKey, DecodingKey),
    public: Option<(DecodingKey, Algorithm)>,
    issuer: Option<String>,
    audience: Option<String>,
    /// Whether HS256 tokens are accepted (always, without a public key).
    allow_hs256: bool,
}

impl Authenticator {
    /// Builds the verifier from the configuration, creating the development
    /// secret under `data_dir` when no secret is configured.
    pub fn from_config(config: &Config) -> Result<Self, AuthError> {
        let secret = match &config.jwt_secret {
            Some(s) => s.clone(),
            None => dev_secret(&config.data_dir)?,
        };
        let public = match &config.jwt_public_key_file {
            Some(path) => Some(load_public_key(path)?),
            None => None,
        };
        let allow_hs256 = config.jwt_allow_hs256 || public.is_none();
        Ok(Self {
            allow_hs256,
            hs256: (
                EncodingKey::from_secret(secret.as_bytes()),
                DecodingKey::from_secret(secret.as_bytes()),
            ),
            public,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        match &self.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
        }
        v
    }

    /// Verifies a token and returns who it stands for.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)?;
        if header.crit.is_some() {
            return Err(AuthError::Refused("critical header parameters are not supported"));
        }
        let key = match (header.alg, &self.public) {
            (Algorithm::HS256, _) if !self.allow_hs256 => {
                return Err(AuthError::Refused("HS256 tokens are turned off"))
            }
            (Algorithm::HS256, _) => &self.hs256.1,
            (alg, Some((key, expected))) if alg == *expected => key,
            _ => {
                return Err(jsonwebtoken::errors::Error::from(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm).into())
            }
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation(header.alg))?;
        let c = data.claims;
        if c.sub.trim().is_empty() {
            return Err(AuthError::Refused("the sub claim is empty"));
        }
        Ok(Principal {
            expires: c.exp,
            groups: Vec::new(),
            user: UserId::from(c.sub),
            name: c.name,
            picture: c.picture,
            tenant: c.tenant,
            roles: c.roles.into_vec(),
            channels: c.channels.into_vec(),
        })
    }

    /// Signs claims with the HS256 secret (the `token` subcommand, tests).
    pub fn issue(&self, claims: &Claims) -> Result<String, AuthError> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.hs256.0,
        )?)
    }
}

/// Reads, or creates once, the development HS256 secret kept in `data_dir`.
fn dev_secret(data_dir: &Path) -> Result<String, AuthError> {
    let path = data_dir.join("dev-jwt-secret");
    let key_error = |e: std::io::Error| AuthError::Key {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
    std::fs::create_dir_all(data_dir).map_err(key_error)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::STANDARD.encode(bytes);
    std::fs::write(&path, &secret).map_err(key_error)?;
    tracing::warn!(path = %path.display(), "no HUBWIRE_JWT_SECRET configured: using a generated development secret");
    Ok(secret)
}

fn load_public_key(path: &Path) -> Result<(DecodingKey, Algorithm), AuthError> {
    let key_error = |reason: String| AuthError::Key {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| key_error(e.to_string()))?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    DecodingKey::from_ec_pem(&pem)
        .map(|key| (key, Algorithm::ES256))
        .map_err(|e| key_error(format!("neither an RSA nor an EC public key: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: &str = "auth-unit-test-secret-of-32-bytes";

    fn authenticator() -> Authenticator {
        let config = Config {
            jwt_secret: Some(SECRET.into()),
            ..Config::default()
        };
        Authenticator::from_config(&config).unwrap()
    }

    #[test]
    fn issued_tokens_verify_with_their_claims() {
        let auth = authenticator();
        let mut claims = Claims::new("alice", 60).with_roles(vec!["admin".into()]);
        claims.tenant = Some("t1".into());
        let principal = auth.verify(&auth.issue(&claims).unwrap()).unwrap();
        assert_eq!(principal.user.as_str(), "alice");
        assert_eq!(principal.tenant.as_deref(), Some("t1"));
        assert_eq!(principal.roles, vec!["admin"]);
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let auth = authenticator();
        let mut claims = Claims::new("alice", 0);
        claims.exp = unix_now() - 60;
        assert!(auth.verify(&auth.issue(&claims).unwrap()).is_err());
        let other = Authenticator::from_config(&Config {
            jwt_secret: Some("another-secret-of-thirty-two-bytes".into()),
            ..Config::default()
        })
        .unwrap();
        let token = other.issue(&Claims::new("alice", 60)).unwrap();
        assert!(auth.verify(&token).is_err());
        assert!(auth.verify("not a token").is_err());
    }

    #[test]
    fn channel_patterns_match_with_stars_and_no_claim_allows_everything() {
        let mut principal = Principal {
            user: UserId::from("u"),
            name: None,
            picture: None,
            tenant: None,
            roles: vec![],
            channels: vec![],
            expires: 0,
            groups: Vec::new(),
        };
        assert!(principal.may_join("anything"), "no claim: unrestricted");
        principal.channels = vec!["room-*".into(), "lobby".into(), "a*b*c".into(), "*-ü".into()];
        for allowed in ["room-1", "room-", "lobby", "abc", "aXbYc", "abbbcc", "grüße-ü"] {
            assert!(principal.may_join(allowed), "{allowed}");
        }
        for refused in ["room", "lobby2", "xroom-1", "ab", "acb", "-u", ""] {
            assert!(!principal.may_join(refused), "{refused}");
        }
        principal.channels = vec!["*".into()];
        assert!(principal.may_join(""));
    }

    #[test]
    fn a_single_role_string_is_accepted() {
        let auth = authenticator();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let body = format!(
            r#"{{"sub":"bob","exp":{},"roles":"admin","channels":"task-*"}}"#,
            unix_now() + 60
        );
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body);
        let signed = jsonwebtoken::crypto::sign(
            format!("{header}.{body}").as_bytes(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        let principal = auth.verify(&format!("{header}.{body}.{signed}")).unwrap();
        assert_eq!(principal.roles, vec!["admin"]);
        assert_eq!(principal.channels, vec!["task-*"]);
    }

    /// A token with this header and body JSON, signed with [`SECRET`].
    fn signed(header: &str, body: &str) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!("{}.{}", engine.encode(header), engine.encode(body));
        let signature = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{input}.{signature}")
    }

    #[test]
    fn not_yet_valid_tokens_empty_subjects_and_critical_headers_are_refused() {
        let auth = authenticator();
        let plain = r#"{"alg":"HS256","typ":"JWT"}"#;
        let exp = unix_now() + 3600;
        let good = signed(plain, &format!(r#"{{"sub":"alice","exp":{exp},"nbf":{}}}"#, unix_now()));
        assert_eq!(auth.verify(&good).unwrap().expires, exp);
        let early = signed(
            plain,
            &format!(r#"{{"sub":"alice","exp":{exp},"nbf":{}}}"#, unix_now() + 600),
        );
        assert!(
            matches!(auth.verify(&early), Err(AuthError::Invalid(_))),
            "nbf in the future"
        );
        let empty = signed(plain, &format!(r#"{{"sub":"","exp":{exp}}}"#));
        assert!(matches!(auth.verify(&empty), Err(AuthError::Refused(_))), "empty sub");
        let blank = signed(plain, &format!(r#"{{"sub":"  ","exp":{exp}}}"#));
        assert!(matches!(auth.verify(&blank), Err(AuthError::Refused(_))), "blank sub");
        let crit = signed(
            r#"{"alg":"HS256","typ":"JWT","crit":["exp-ext"],"exp-ext":1}"#,
            &format!(r#"{{"sub":"alice","exp":{exp}}}"#),
        );
        assert!(auth.verify(&crit).is_err(), "crit header");
    }
}
