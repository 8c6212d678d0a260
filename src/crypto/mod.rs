//! ONDC request signing: the BLAKE2b-512 body digest, the three-line signing string, the
//! `Authorization: Signature ...` header format and its tolerant parser, key encodings, and the
//! registry onboarding crypto (the `/on_subscribe` challenge, the site verification signature).
//!
//! The rule everything here serves: sign the exact bytes that go on the wire and verify the exact
//! bytes that arrived, before any JSON parsing. Nothing in this module touches JSON.

pub mod batch;
mod header;
mod keys;
mod onboarding;

pub use header::{
    AuthorizationHeader, HeaderError, VerifyError, body_digest, sign_body, signing_string,
    verify_body,
};
pub use keys::{
    EncryptionKeyPair, KeyError, SigningKeyPair, encryption_public_key_der_base64,
    encryption_public_key_from_base64, verify_strict, verifying_key_from_base64,
};
pub use onboarding::{
    ChallengeError, ChallengeKey, REGISTRY_ENCRYPTION_PUBLIC_KEYS, encrypt_challenge,
    registry_encryption_public_key, site_verification_html, site_verification_signature,
    solve_challenge,
};

use base64::Engine as _;

/// Standard base64 with padding, the only encoding ONDC uses for keys, digests and signatures.
pub(crate) fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

/// Encodes bytes as standard padded base64.
pub fn b64_encode(bytes: impl AsRef<[u8]>) -> String {
    b64().encode(bytes)
}

/// Decodes standard base64, tolerating surrounding whitespace.
pub fn b64_decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    b64().decode(s.trim())
}
