//! Encryption of message content at rest: AES-256-GCM.
//!
//! The newest configured key encrypts; every configured key decrypts, chosen
//! by the key id stored with each message, so rotation is adding a key at
//! the end and keeping the old ones as long as their messages live. Stored
//! form: base64 of a random 96-bit nonce followed by the ciphertext and tag.
//! The associated data binds a ciphertext to its conversation and message
//! id, so a ciphertext copied onto another row does not decrypt.

use std::collections::HashMap;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rand::RngCore;

use crate::{MessageId, Result, StoreError};

const NONCE_LEN: usize = 12;

/// The configured keys; empty: content stays plain text.
#[derive(Clone, Default)]
pub struct Cipher {
    keys: HashMap<String, Aes256Gcm>,
    current: Option<String>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Cipher").field("current", &self.current).finish()
    }
}

impl Cipher {
    /// Reads `key_id:base64` entries, oldest first (see
    /// [`crate::StoreConfig::encryption_keys`]).
    pub fn from_config(entries: &[String]) -> Result<Self> {
        let mut cipher = Self::default();
        for entry in entries {
            let (id, key) = entry
                .split_once(':')
                .ok_or_else(|| StoreError::Config("an encryption key is not key_id:base64".into()))?;
            let id = id.trim();
            let bytes = BASE64
                .decode(key.trim())
                .map_err(|_| StoreError::Config(format!("encryption key {id:?} is not base64")))?;
            if id.is_empty() {
                return Err(StoreError::Config("an encryption key has an empty id".into()));
            }
            let Ok(bytes) = <[u8; 32]>::try_from(bytes) else {
                return Err(StoreError::Config(format!("encryption key {id:?} must have 32 bytes")));
            };
            cipher
                .keys
                .insert(id.to_owned(), Aes256Gcm::new(&Key::<Aes256Gcm>::from(bytes)));
            cipher.current = Some(id.to_owned());
        }
        Ok(cipher)
    }

    /// Encrypts `content` of message `id` with the newest key: (stored text,
    /// key id), or the content as it is when no key is configured.
    pub fn seal(&self, conversation: &str, id: MessageId, content: &str) -> Result<(String, Option<String>)> {
        let Some((key_id, key)) = self.current.as_ref().and_then(|k| Some((k, self.keys.get(k)?))) else {
            return Ok((content.to_owned(), None));
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(conversation, id);
        let payload = Payload {
            msg: content.as_bytes(),
            aad: &aad,
        };
        // Encryption fails only for inputs beyond GCM's length limit (64 GiB).
        let sealed = key
            .encrypt(&Nonce::from(nonce), payload)
            .map_err(|_| StoreError::Invalid("content too long to encrypt".into()))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok((BASE64.encode(stored), Some(key_id.clone())))
    }

    /// The plain content of a stored message.
    pub fn open(&self, conversation: &str, id: MessageId, stored: &str, key_id: Option<&str>) -> Result<String> {
        let Some(key_id) = key_id else {
            return Ok(stored.to_owned());
        };
        let key = self.keys.get(key_id).ok_or_else(|| StoreError::KeyMissing {
            key_id: key_id.to_owned(),
            message: id,
        })?;
        let bytes = BASE64.decode(stored).map_err(|_| StoreError::Decrypt(id))?;
        if bytes.len() < NONCE_LEN {
            return Err(StoreError::Decrypt(id));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| StoreError::Decrypt(id))?;
        let aad = associated_data(conversation, id);
        let plain = key
            .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| StoreError::Decrypt(id))?;
        String::from_utf8(plain).map_err(|_| StoreError::Decrypt(id))
    }
}

fn associated_data(conversation: &str, id: MessageId) -> Vec<u8> {
    format!("{conversation}\u{0}{id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        BASE64.encode([byte; 32])
    }

    #[test]
    fn round_trip_bound_to_its_row() {
        let cipher = Cipher::from_config(&[format!("k1:{}", key(1))]).expect("keys");
        let (stored, key_id) = cipher.seal("c", MessageId(7), "hello").expect("seal");
        assert_eq!(key_id.as_deref(), Some("k1"));
        assert_ne!(stored, "hello");
        assert_eq!(
            cipher.open("c", MessageId(7), &stored, Some("k1")).expect("open"),
            "hello"
        );
        assert!(matches!(
            cipher.open("c", MessageId(8), &stored, Some("k1")),
            Err(StoreError::Decrypt(_))
        ));
        assert!(matches!(
            cipher.open("d", MessageId(7), &stored, Some("k1")),
            Err(StoreError::Decrypt(_))
        ));
    }

    #[test]
    fn refuses_bad_keys() {
        for entry in ["nocolon", "k:notbase64!", &format!("k:{}", BASE64.encode([0u8; 16]))] {
            assert!(Cipher::from_config(&[entry.to_owned()]).is_err(), "{entry}");
        }
    }

    #[test]
    fn plain_without_keys() {
        let cipher = Cipher::default();
        assert_eq!(
            cipher.seal("c", MessageId(1), "x").expect("seal"),
            ("x".to_owned(), None)
        );
    }
}
