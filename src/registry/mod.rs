//! Finding a network participant's signing key by (subscriber_id, unique_key_id).
//!
//! Today the keys come from config (`[[peers]]`) plus this process's own key, so one process can
//! play both roles against itself. Lookups are async so that an ONDC registry client can sit
//! behind the same call.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;

use crate::config::Settings;
use crate::crypto::{SigningKeyPair, verifying_key_from_base64};

/// Known signing keys.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    keys: HashMap<(String, String), VerifyingKey>,
}

impl Registry {
    /// The peers from settings plus our own key.
    pub fn from_settings(settings: &Settings, own: &SigningKeyPair) -> Self {
        let mut keys = HashMap::new();
        for p in &settings.peers {
            // validate() already checked every key decodes.
            if let Ok(k) = verifying_key_from_base64(&p.signing_public_key) {
                keys.insert((p.subscriber_id.clone(), p.unique_key_id.clone()), k);
            }
        }
        keys.insert(
            (
                settings.identity.subscriber_id.clone(),
                settings.identity.unique_key_id.clone(),
            ),
            own.verifying_key(),
        );
        Self { keys }
    }

    /// The signing key for `(subscriber_id, unique_key_id)`, if known.
    pub async fn lookup(&self, subscriber_id: &str, unique_key_id: &str) -> Option<VerifyingKey> {
        self.keys
            .get(&(subscriber_id.to_owned(), unique_key_id.to_owned()))
            .copied()
    }
}
