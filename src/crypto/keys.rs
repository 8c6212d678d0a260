//! Key material in ONDC's encodings: Ed25519 signing keys (raw 32-byte public key; private key as a
//! 32-byte seed or the 64-byte libsodium `seed || public` form) and X25519 encryption keys (public
//! as DER SubjectPublicKeyInfo, private as PKCS#8 v0; read also PKCS#8 v1, the 83-byte PKCS#8 form
//! with the public key appended, and raw 32-byte public keys).

use super::{b64_decode, b64_encode};
use std::sync::Arc;

use ed25519_dalek::hazmat::ExpandedSecretKey;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

/// Why a key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
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
    /// The bytes are not an X25519 PKCS#8 private key (wrong DER structure or algorithm).
    #[error("not an X25519 PKCS#8 private key")]
    NotX25519PrivateKey,
    /// The bytes are not an X25519 SubjectPublicKeyInfo (wrong DER structure or algorithm).
    #[error("not an X25519 SubjectPublicKeyInfo public key")]
    NotX25519PublicKey,
}

/// An Ed25519 signing key pair.
#[derive(Clone)]
pub struct SigningKeyPair {
    key: SigningKey,
    /// The key as signing uses it (RFC 8032 5.1.5: the clamped scalar and the nonce prefix, from
    /// the SHA-512 of the seed), derived once: `SigningKey::sign` derives it again for every
    /// signature. Zeroed when the last clone is dropped.
    expanded: Arc<ExpandedSecretKey>,
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
                Ok(Self::new(SigningKey::from_bytes(&seed)))
            }
            64 => {
                let pair: [u8; 64] = bytes.try_into().expect("length checked");
                let key = SigningKey::from_keypair_bytes(&pair)
                    .map_err(|_| KeyError::MismatchedKeypair)?;
                Ok(Self::new(key))
            }
            n => Err(KeyError::WrongLength(n, "32 (seed) or 64 (seed||public)")),
        }
    }

    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::new(SigningKey::from_bytes(&seed)))
    }

    fn new(key: SigningKey) -> Self {
        let expanded = Arc::new(ExpandedSecretKey::from(key.as_bytes()));
        Self { key, expanded }
    }

    /// The private key in the 64-byte libsodium form ONDC's SDKs and docs use, base64.
    pub fn private_key_base64(&self) -> String {
        b64_encode(self.key.to_keypair_bytes())
    }

    /// The raw 32-byte public key, base64: the registry's `signing_public_key`.
    pub fn public_key_base64(&self) -> String {
        b64_encode(self.key.verifying_key().to_bytes())
    }

    /// The secret scalar (tests that craft signatures by hand).
    #[cfg(test)]
    pub(crate) fn secret_scalar(&self) -> curve25519_dalek::scalar::Scalar {
        self.expanded.scalar
    }

    /// The verifying half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Pure Ed25519 (RFC 8032) signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let sig: Signature = ed25519_dalek::hazmat::raw_sign::<sha2::Sha512>(
            &self.expanded,
            message,
            &self.key.verifying_key(),
        );
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

/// The part of an X25519 PKCS#8 private key between the version number and the 32 key bytes:
/// AlgorithmIdentifier 1.3.101.110, then OCTET STRING { OCTET STRING (32) }.
const X25519_PKCS8_ALGORITHM_AND_KEY_HEADER: [u8; 11] = [
    0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];
/// `[1] IMPLICIT BIT STRING` (33 bytes, no unused bits) that precedes the public key in the
/// 83-byte PKCS#8 form (RFC 5958 OneAsymmetricKey with publicKey).
const X25519_PKCS8_PUBLIC_KEY_HEADER: [u8; 3] = [0x81, 0x21, 0x00];

/// Reads the raw 32-byte X25519 private key out of PKCS#8 DER: the 48-byte form (version 0 or 1)
/// or the 83-byte form with the public key appended, which must match the private key.
fn x25519_private_from_pkcs8(der: &[u8]) -> Result<[u8; 32], KeyError> {
    let sequence_len = match der.len() {
        48 => 0x2e,
        83 => 0x51,
        n => {
            return Err(KeyError::WrongLength(
                n,
                "48 (PKCS#8) or 83 (PKCS#8 with public key)",
            ));
        }
    };
    let header_ok = der[0] == 0x30
        && der[1] == sequence_len
        && der[2..4] == [0x02, 0x01]
        && matches!(der[4], 0 | 1)
        && der[5..16] == X25519_PKCS8_ALGORITHM_AND_KEY_HEADER;
    if !header_ok {
        return Err(KeyError::NotX25519PrivateKey);
    }
    let mut raw = [0u8; 32];
    raw.copy_from_slice(&der[16..48]);
    if der.len() == 83 {
        if der[48..51] != X25519_PKCS8_PUBLIC_KEY_HEADER {
            return Err(KeyError::NotX25519PrivateKey);
        }
        let derived = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(raw));
        if derived.as_bytes()[..] != der[51..83] {
            return Err(KeyError::MismatchedKeypair);
        }
    }
    Ok(raw)
}

/// Reads an X25519 public key given as base64 of DER SubjectPublicKeyInfo (44 bytes, the
/// registry's `encr_public_key` form) or of the raw 32 bytes.
pub fn encryption_public_key_from_base64(
    public_key: &str,
) -> Result<x25519_dalek::PublicKey, KeyError> {
    let bytes = b64_decode(public_key).map_err(|_| KeyError::NotBase64)?;
    let raw: [u8; 32] = match bytes.len() {
        32 => bytes.try_into().map_err(|_| KeyError::NotX25519PublicKey)?,
        44 if bytes[..12] == X25519_SPKI_PREFIX => bytes[12..]
            .try_into()
            .map_err(|_| KeyError::NotX25519PublicKey)?,
        44 => return Err(KeyError::NotX25519PublicKey),
        n => return Err(KeyError::WrongLength(n, "44 (SPKI DER) or 32 (raw)")),
    };
    Ok(x25519_dalek::PublicKey::from(raw))
}

/// An X25519 public key as base64 DER SubjectPublicKeyInfo.
pub fn encryption_public_key_der_base64(public: &x25519_dalek::PublicKey) -> String {
    let mut der = X25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(public.as_bytes());
    b64_encode(der)
}

/// An X25519 encryption key pair, used by the registry's onboarding challenge.
#[derive(Clone)]
pub struct EncryptionKeyPair {
    secret: x25519_dalek::StaticSecret,
}

impl std::fmt::Debug for EncryptionKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private half.
        f.debug_struct("EncryptionKeyPair")
            .field("public", &self.public_key_der_base64())
            .finish()
    }
}

impl EncryptionKeyPair {
    /// Reads a private key given as base64 PKCS#8: the 48-byte form (version 0 or 1) or the
    /// 83-byte form with the public key appended.
    pub fn from_pkcs8_base64(private_key: &str) -> Result<Self, KeyError> {
        let der = b64_decode(private_key).map_err(|_| KeyError::NotBase64)?;
        let raw = x25519_private_from_pkcs8(&der)?;
        Ok(Self {
            secret: x25519_dalek::StaticSecret::from(raw),
        })
    }

    /// The public half.
    pub fn public_key(&self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(&self.secret)
    }

    /// The raw X25519 shared secret with `their_public`, or `None` when their key is a
    /// low-order point (the result would be all zeros and known to anyone).
    pub fn shared_secret(&self, their_public: &x25519_dalek::PublicKey) -> Option<[u8; 32]> {
        let shared = self.secret.diffie_hellman(their_public);
        shared.was_contributory().then(|| shared.to_bytes())
    }

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
        encryption_public_key_der_base64(&self.public_key())
    }

    /// Private key as base64 PKCS#8 v0.
    pub fn private_key_pkcs8_base64(&self) -> String {
        let mut der = X25519_PKCS8_V0_PREFIX.to_vec();
        der.extend_from_slice(&self.secret.to_bytes());
        b64_encode(der)
    }
}

/// The canonical encodings of the eight Ed25519 points of small order (the torsion subgroup:
/// the identity, the point of order 2, two of order 4, four of order 8). Their list is a fact of
/// the curve; the tests check each decompresses, is of small order and encodes back to itself.
pub(super) const SMALL_ORDER: [[u8; 32]; 8] = {
    [
        hex("0100000000000000000000000000000000000000000000000000000000000000"),
        hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        hex("0000000000000000000000000000000000000000000000000000000000000000"),
        hex("0000000000000000000000000000000000000000000000000000000000000080"),
        hex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
        hex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
        hex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
        hex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    ]
};

/// 32 bytes from 64 lowercase hex digits, at compile time.
const fn hex(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not lowercase hex"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// Ed25519 verification that accepts exactly what `VerifyingKey::verify_strict` accepts (the
/// equation `R = [s]B - [k]A` with R compared as bytes, s canonical, and neither R nor A of small
/// order; libsodium's rule too), without decompressing R. The equation holds only when R's bytes
/// are the canonical encoding of a point, so R is of small order exactly when its bytes are one
/// of [`SMALL_ORDER`]: a comparison of bytes instead of the field square root `verify_strict`
/// spends on R (about a tenth of a verification, docs/BENCHMARKS.md).
pub fn verify_strict(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    use ed25519_dalek::Verifier as _;
    !SMALL_ORDER.contains(signature.r_bytes())
        && !key.is_weak()
        && key.verify(message, signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;
    use proptest::prelude::*;

    #[test]
    fn the_small_order_encodings_are_the_eight_canonical_points_of_small_order() {
        let mut seen = std::collections::HashSet::new();
        for enc in SMALL_ORDER {
            let key = VerifyingKey::from_bytes(&enc).expect("a point");
            assert!(key.is_weak(), "{enc:02x?} is of small order");
            // Canonical: the point encodes back to these bytes.
            assert_eq!(VerifyingKey::from(key.to_edwards()).to_bytes(), enc);
            assert!(seen.insert(enc));
        }
        // The torsion subgroup has eight points, each with one canonical encoding.
        assert_eq!(seen.len(), 8);
    }

    /// A signature made with `s = 1` against the weak key `A` (the identity): `R = [1]B - [k]A`
    /// is the base point whatever k is, so the cofactorless equation holds; strict rules refuse.
    #[test]
    fn a_weak_key_or_a_small_order_r_is_refused_though_the_equation_holds() {
        use ed25519_dalek::Verifier as _;
        let identity = VerifyingKey::from_bytes(&SMALL_ORDER[0]).unwrap();
        let base = hex("5866666666666666666666666666666666666666666666666666666666666666");
        let mut one = [0u8; 32];
        one[0] = 1;
        let sig = Signature::from_components(base, one);
        assert!(identity.verify(b"m", &sig).is_ok(), "the equation holds");
        assert!(identity.verify_strict(b"m", &sig).is_err());
        assert!(!verify_strict(&identity, b"m", &sig));
        // R the identity and s = 0: [0]B - [k]O is the identity.
        let sig = Signature::from_components(SMALL_ORDER[0], [0u8; 32]);
        assert!(identity.verify(b"m", &sig).is_ok(), "the equation holds");
        assert!(identity.verify_strict(b"m", &sig).is_err());
        assert!(!verify_strict(&identity, b"m", &sig));
    }

    proptest! {
        /// The signing key derived once signs exactly as the library's `SigningKey::sign`
        /// (Ed25519 signatures are deterministic), read from the seed form and from the 64-byte
        /// form, and through a clone.
        #[test]
        fn the_key_derived_once_signs_as_the_library_does(
            seed in any::<[u8; 32]>(),
            message in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let library = SigningKey::from_bytes(&seed);
            let want = library.sign(&message).to_bytes();
            let from_seed = SigningKeyPair::from_base64(&b64_encode(seed)).unwrap();
            prop_assert_eq!(from_seed.sign(&message), want);
            let from_pair =
                SigningKeyPair::from_base64(&b64_encode(library.to_keypair_bytes())).unwrap();
            prop_assert_eq!(from_pair.clone().sign(&message), want);
        }

        /// Against `verify_strict` itself: genuine signatures, signatures with bytes changed,
        /// R replaced by each point of small order, other messages.
        #[test]
        fn verify_strict_agrees_with_the_librarys(
            seed in any::<[u8; 32]>(),
            message in proptest::collection::vec(any::<u8>(), 0..200),
            flip in proptest::option::of((0usize..64, 0u8..8)),
            small_r in proptest::option::of(0usize..8),
            other in any::<bool>(),
        ) {
            let signing = SigningKey::from_bytes(&seed);
            let key = signing.verifying_key();
            let mut bytes = signing.sign(&message).to_bytes();
            if let Some((i, bit)) = flip {
                bytes[i] ^= 1 << bit;
            }
            if let Some(i) = small_r {
                bytes[..32].copy_from_slice(&SMALL_ORDER[i]);
            }
            let sig = Signature::from_bytes(&bytes);
            let checked: &[u8] = if other { b"another message" } else { &message };
            prop_assert_eq!(
                verify_strict(&key, checked, &sig),
                key.verify_strict(checked, &sig).is_ok()
            );
        }
    }

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

    #[test]
    fn x25519_keys_read_back_from_every_accepted_form() {
        let e = EncryptionKeyPair::generate().unwrap();
        let again = EncryptionKeyPair::from_pkcs8_base64(&e.private_key_pkcs8_base64()).unwrap();
        assert_eq!(again.public_key_der_base64(), e.public_key_der_base64());

        let v0 = b64_decode(&e.private_key_pkcs8_base64()).unwrap();
        let mut v1 = v0.clone();
        v1[4] = 1;
        let k = EncryptionKeyPair::from_pkcs8_base64(&b64_encode(&v1)).unwrap();
        assert_eq!(k.public_key(), e.public_key());
        let mut long = v1;
        long[1] = 0x51;
        long.extend_from_slice(&X25519_PKCS8_PUBLIC_KEY_HEADER);
        long.extend_from_slice(e.public_key().as_bytes());
        let k = EncryptionKeyPair::from_pkcs8_base64(&b64_encode(&long)).unwrap();
        assert_eq!(k.public_key(), e.public_key());

        let spki = encryption_public_key_from_base64(&e.public_key_der_base64()).unwrap();
        let raw =
            encryption_public_key_from_base64(&b64_encode(e.public_key().as_bytes())).unwrap();
        assert_eq!(spki, e.public_key());
        assert_eq!(raw, e.public_key());
        assert!(format!("{e:?}").contains(&e.public_key_der_base64()));
        assert!(!format!("{e:?}").contains(&e.private_key_pkcs8_base64()));
    }

    #[test]
    fn x25519_keys_refuse_other_shapes() {
        let e = EncryptionKeyPair::generate().unwrap();
        let v0 = b64_decode(&e.private_key_pkcs8_base64()).unwrap();
        assert_eq!(
            EncryptionKeyPair::from_pkcs8_base64("*").unwrap_err(),
            KeyError::NotBase64
        );
        assert!(matches!(
            EncryptionKeyPair::from_pkcs8_base64(&b64_encode(&v0[..47])),
            Err(KeyError::WrongLength(47, _))
        ));
        for (i, v) in [(0, 0x31), (1, 0x2f), (4, 2), (11, 0x70), (15, 0x21)] {
            let mut bad = v0.clone();
            bad[i] = v;
            assert_eq!(
                EncryptionKeyPair::from_pkcs8_base64(&b64_encode(&bad)).unwrap_err(),
                KeyError::NotX25519PrivateKey,
                "byte {i}"
            );
        }
        let mut long = v0.clone();
        long[1] = 0x51;
        long.extend_from_slice(&[0x82, 0x21, 0x00]);
        long.extend_from_slice(e.public_key().as_bytes());
        assert_eq!(
            EncryptionKeyPair::from_pkcs8_base64(&b64_encode(&long)).unwrap_err(),
            KeyError::NotX25519PrivateKey
        );
        let spki = b64_decode(&e.public_key_der_base64()).unwrap();
        let mut bad = spki.clone();
        bad[0] = 0x31;
        assert_eq!(
            encryption_public_key_from_base64(&b64_encode(&bad)).unwrap_err(),
            KeyError::NotX25519PublicKey
        );
        assert!(matches!(
            encryption_public_key_from_base64(&b64_encode(&spki[..43])),
            Err(KeyError::WrongLength(43, _))
        ));
    }
}
