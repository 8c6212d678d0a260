//! ONDC request signing: the BLAKE2b-512 body digest, the three-line signing string, the
//! `Authorization: Signature ...` header format and its tolerant parser, and key encodings.
//!
//! The rule everything here serves: sign the exact bytes that go on the wire and verify the exact
//! bytes that arrived, before any JSON parsing. Nothing in this module touches JSON.

mod header;
mod keys;

pub use header::{
    AuthorizationHeader, HeaderError, VerifyError, body_digest, sign_body, signing_string,
    verify_body,
};
pub use keys::{EncryptionKeyPair, KeyError, SigningKeyPair, verifying_key_from_base64};

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
