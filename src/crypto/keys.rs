//! Key material in ONDC's encodings: Ed25519 signing keys (raw 32-byte public key; private key as a
//! 32-byte seed or the 64-byte libsodium `seed || public` form) and X25519 encryption keys (public
//! as DER SubjectPublicKeyInfo, private as PKCS#8 v0).

use super::{b64_decode, b64_encode};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Why a key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The text is not standard base64.
    #[error("key is not valid base64")]
    NotBase64,
    /// The decoded key has a length this encoding does not allow.
    #[error("key has {0} bytes; expected {1}")]
    WrongLength(usize, &'static str),
    /// A 64-byte private key whose second half is not the public key of its first half.
    #[error("64-byte private key: second half is not the public key of the seed")]
    MismatchedKeypair,
    /// The public key bytes are not a valid Ed25519 point.
    #[error("public key is not a valid Ed25519 key")]
    InvalidPublicKey,
    /// The operating system's random source failed.
    #[error("random source unavailable: {0}")]
    Random(String),
}

/// An Ed25519 signing key pair.
#[derive(Clone)]
pub struct SigningKeyPair {
    key: SigningKey,
}

impl std::fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private half.
        f.debug_struct("SigningKeyPair")
            .field("public", &self.public_key_base64())
            .finish()
    }
}

impl SigningKeyPair {
    /// Reads a private key given as base64 of a 32-byte seed or of 64 bytes `seed || public`.
    pub fn from_base64(private_key: &str) -> Result<Self, KeyError> {
        let bytes = b64_decode(private_key).map_err(|_| KeyError::NotBase64)?;
        match bytes.len() {
            32 => {
                let seed: [u8; 32] = bytes.try_into().expect("length checked");
                Ok(Self {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            64 => {
                let pair: [u8; 64] = bytes.try_into().expect("length checked");
                let key = SigningKey::from_keypair_bytes(&pair)
                    .map_err(|_| KeyError::MismatchedKeypair)?;
                Ok(Self { key })
            }
            n => Err(KeyError::WrongLength(n, "32 (seed) or 64 (seed||public)")),
        }
    }

    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The private key in the 64-byte libsodium form ONDC's SDKs and docs use, base64.
    pub fn private_key_base64(&self) -> String {
        b64_encode(self.key.to_keypair_bytes())
    }

    /// The raw 32-byte public key, base64: the registry's `signing_public_key`.
    pub fn public_key_base64(&self) -> String {
        b64_encode(self.key.verifying_key().to_bytes())
    }

    /// The verifying half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Pure Ed25519 (RFC 8032) signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let sig: Signature = self.key.sign(message);
        sig.to_bytes()
    }
}

/// Reads a base64 raw 32-byte Ed25519 public key.
pub fn verifying_key_from_base64(public_key: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = b64_decode(public_key).map_err(|_| KeyError::NotBase64)?;
    let raw: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| KeyError::WrongLength(b.len(), "32"))?;
    VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::InvalidPublicKey)
}

/// DER prefix of an X25519 SubjectPublicKeyInfo (`MCowBQYDK2VuAyEA...` in base64).
const X25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];
/// DER prefix of an X25519 PKCS#8 v0 private key.
const X25519_PKCS8_V0_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];

/// An X25519 encryption key pair, used by the registry's onboarding challenge.
pub struct EncryptionKeyPair {
    secret: x25519_dalek::StaticSecret,
}

impl EncryptionKeyPair {
    /// A fresh pair from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self {
            secret: x25519_dalek::StaticSecret::from(seed),
        })
    }

    /// Public key as base64 DER SubjectPublicKeyInfo, the registry's `encr_public_key` form.
    pub fn public_key_der_base64(&self) -> String {
        let public = x25519_dalek::PublicKey::from(&self.secret);
        let mut der = X25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(public.as_bytes());
        b64_encode(der)
    }

    /// Private key as base64 PKCS#8 v0.
    pub fn private_key_pkcs8_base64(&self) -> String {
        let mut der = X25519_PKCS8_V0_PREFIX.to_vec();
        der.extend_from_slice(&self.secret.to_bytes());
        b64_encode(der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_PRIVATE: &str =
        "lP3sHA+9gileOkXYJXh4Jg8tK0gEEMbf9yCPnFpbldhrAY+NErqL9WD+Vav7TE5tyVXGXBle9ONZi2W7o144eQ==";
    const VECTOR_PUBLIC: &str = "awGPjRK6i/Vg/lWr+0xObclVxlwZXvTjWYtlu6NeOHk=";

    #[test]
    fn reads_the_64_byte_libsodium_form_and_derives_the_published_public_key() {
        let k = SigningKeyPair::from_base64(VECTOR_PRIVATE).unwrap();
        assert_eq!(k.public_key_base64(), VECTOR_PUBLIC);
        assert_eq!(k.private_key_base64(), VECTOR_PRIVATE);
    }

    #[test]
    fn a_32_byte_seed_is_the_same_key() {
        let full = b64_decode(VECTOR_PRIVATE).unwrap();
        let seed = b64_encode(&full[..32]);
        let k = SigningKeyPair::from_base64(&seed).unwrap();
        assert_eq!(k.public_key_base64(), VECTOR_PUBLIC);
    }

    #[test]
    fn rejects_mismatched_halves_wrong_lengths_and_garbage() {
        let mut full = b64_decode(VECTOR_PRIVATE).unwrap();
        full[40] ^= 1;
        assert_eq!(
            SigningKeyPair::from_base64(&b64_encode(&full)).unwrap_err(),
            KeyError::MismatchedKeypair
        );
        assert!(matches!(
            SigningKeyPair::from_base64(&b64_encode([1u8; 48])),
            Err(KeyError::WrongLength(48, _))
        ));
        assert_eq!(
            SigningKeyPair::from_base64("not base64!").unwrap_err(),
            KeyError::NotBase64
        );
        assert!(matches!(
            verifying_key_from_base64(&b64_encode([0u8; 31])),
            Err(KeyError::WrongLength(31, _))
        ));
    }

    #[test]
    fn generated_keys_round_trip_through_their_encodings() {
        let k = SigningKeyPair::generate().unwrap();
        let again = SigningKeyPair::from_base64(&k.private_key_base64()).unwrap();
        assert_eq!(again.public_key_base64(), k.public_key_base64());
        let vk = verifying_key_from_base64(&k.public_key_base64()).unwrap();
        assert_eq!(vk, k.verifying_key());
    }

    #[test]
    fn x25519_keys_use_the_der_forms_the_registry_expects() {
        let e = EncryptionKeyPair::generate().unwrap();
        assert!(e.public_key_der_base64().starts_with("MCowBQYDK2VuAyEA"));
        assert_eq!(b64_decode(&e.public_key_der_base64()).unwrap().len(), 44);
        assert!(
            e.private_key_pkcs8_base64()
                .starts_with("MC4CAQAwBQYDK2VuBCIEI")
        );
        assert_eq!(b64_decode(&e.private_key_pkcs8_base64()).unwrap().len(), 48);
    }
}
