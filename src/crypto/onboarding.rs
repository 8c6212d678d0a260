//! Registry onboarding: the `/on_subscribe` challenge and the site verification signature.
//!
//! Challenge: the registry encrypts a random string with AES-256-ECB and PKCS#7 padding under the
//! raw 32-byte X25519 shared secret of its encryption key and ours, and sends it base64. We
//! answer with the plaintext. Site verification: the base64 Ed25519 signature of the plain UTF-8
//! request_id (no digest, no signing string), published in a `<meta>` tag.

use aes::Aes256;
use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};

use super::keys::{EncryptionKeyPair, KeyError, SigningKeyPair, encryption_public_key_from_base64};
use super::{b64_decode, b64_encode};

/// The ONDC registries' X25519 encryption public keys (base64 SPKI), by environment name.
pub const REGISTRY_ENCRYPTION_PUBLIC_KEYS: [(&str, &str); 3] = [
    (
        "staging",
        "MCowBQYDK2VuAyEAduMuZgmtpjdCuxv+Nc49K0cB6tL/Dj3HZetvVN7ZekM=",
    ),
    (
        "preprod",
        "MCowBQYDK2VuAyEAa9Wbpvd9SsrpOZFcynyt/TO3x0Yrqyys4NUGIvyxX2Q=",
    ),
    (
        "prod",
        "MCowBQYDK2VuAyEAvVEyZY91O2yV8w8/CAwVDAnqIZDJJUPdLUUKwLo3K0M=",
    ),
];

/// Resolves a registry environment name (`staging`, `preprod`, `prod`) to that registry's
/// encryption public key; anything else is returned unchanged (a key given directly).
///
/// ```
/// use ondc_rating::crypto::registry_encryption_public_key;
/// assert!(registry_encryption_public_key("preprod").starts_with("MCowBQYDK2VuAyEA"));
/// assert_eq!(registry_encryption_public_key("MCowBQ..."), "MCowBQ...");
/// ```
pub fn registry_encryption_public_key(name_or_key: &str) -> &str {
    REGISTRY_ENCRYPTION_PUBLIC_KEYS
        .iter()
        .find(|(name, _)| *name == name_or_key.trim())
        .map_or(name_or_key, |(_, key)| key)
}

/// Why a challenge could not be solved or made.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ChallengeError {
    /// Our own X25519 private key is unusable.
    #[error("encryption private key: {0}")]
    PrivateKey(KeyError),
    /// The other side's X25519 public key is unusable.
    #[error("encryption public key: {0}")]
    PublicKey(KeyError),
    /// The other side's public key is a low-order point: the shared secret would be all zeros.
    #[error("encryption public key is a low-order point; no shared secret")]
    WeakPublicKey,
    /// The challenge is not standard base64.
    #[error("challenge is not valid base64")]
    NotBase64,
    /// The decoded challenge is not whole AES blocks.
    #[error("challenge has {0} bytes; expected a non-zero multiple of 16")]
    BadLength(usize),
    /// The decrypted bytes do not end in valid PKCS#7 padding (wrong keys, or not a challenge).
    #[error("challenge does not decrypt to valid PKCS#7 padding (wrong keys?)")]
    BadPadding,
    /// The decrypted plaintext is not UTF-8.
    #[error("decrypted challenge is not UTF-8")]
    NotUtf8,
}

const BLOCK: usize = 16;

/// The AES-256 key both sides derive from their X25519 keys.
#[derive(Clone)]
pub struct ChallengeKey {
    cipher: Aes256,
}

impl std::fmt::Debug for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeKey(..)")
    }
}

impl ChallengeKey {
    /// The key shared by `own` and the holder of `their_public`.
    pub fn new(
        own: &EncryptionKeyPair,
        their_public: &x25519_dalek::PublicKey,
    ) -> Result<Self, ChallengeError> {
        let shared = own
            .shared_secret(their_public)
            .ok_or(ChallengeError::WeakPublicKey)?;
        Ok(Self {
            cipher: Aes256::new(&Array::from(shared)),
        })
    }

    /// The key from base64 encodings: our PKCS#8 private key and their SPKI (or raw) public key.
    pub fn from_base64(own_private: &str, their_public: &str) -> Result<Self, ChallengeError> {
        let own = EncryptionKeyPair::from_pkcs8_base64(own_private)
            .map_err(ChallengeError::PrivateKey)?;
        let theirs =
            encryption_public_key_from_base64(their_public).map_err(ChallengeError::PublicKey)?;
        Self::new(&own, &theirs)
    }

    /// Decrypts a base64 challenge: AES-256-ECB, PKCS#7 padding checked, UTF-8.
    pub fn decrypt(&self, challenge: &str) -> Result<String, ChallengeError> {
        let mut buf = b64_decode(challenge).map_err(|_| ChallengeError::NotBase64)?;
        if buf.is_empty() || buf.len() % BLOCK != 0 {
            return Err(ChallengeError::BadLength(buf.len()));
        }
        let (blocks, _) = aes::Block::slice_as_chunks_mut(&mut buf);
        self.cipher.decrypt_blocks(blocks);
        let pad = usize::from(*buf.last().ok_or(ChallengeError::BadPadding)?);
        if !(1..=BLOCK).contains(&pad)
            || buf[buf.len() - pad..]
                .iter()
                .any(|&b| usize::from(b) != pad)
        {
            return Err(ChallengeError::BadPadding);
        }
        buf.truncate(buf.len() - pad);
        String::from_utf8(buf).map_err(|_| ChallengeError::NotUtf8)
    }

    /// Encrypts `plaintext` the way the registry does: PKCS#7 padding, AES-256-ECB, base64.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let mut buf = plaintext.as_bytes().to_vec();
        let pad = BLOCK - buf.len() % BLOCK;
        // pad is 1..=16, so it fits a byte.
        buf.resize(buf.len() + pad, pad as u8);
        let (blocks, _) = aes::Block::slice_as_chunks_mut(&mut buf);
        self.cipher.encrypt_blocks(blocks);
        b64_encode(buf)
    }
}

/// Answers the registry's `/on_subscribe` challenge: the plaintext of `challenge` (base64),
/// decrypted with the key shared by our X25519 private key (base64 PKCS#8) and the registry's
/// public key (base64 SPKI or raw).
pub fn solve_challenge(
    own_encryption_private: &str,
    registry_public: &str,
    challenge: &str,
) -> Result<String, ChallengeError> {
    ChallengeKey::from_base64(own_encryption_private, registry_public)?.decrypt(challenge)
}

/// The registry side of [`solve_challenge`]: encrypts `plaintext` for a subscriber.
pub fn encrypt_challenge(
    registry_private: &str,
    subscriber_public: &str,
    plaintext: &str,
) -> Result<String, ChallengeError> {
    Ok(ChallengeKey::from_base64(registry_private, subscriber_public)?.encrypt(plaintext))
}

/// SIGNED_UNIQUE_REQ_ID: base64 of the Ed25519 signature of the plain UTF-8 `request_id`.
pub fn site_verification_signature(keys: &SigningKeyPair, request_id: &str) -> String {
    b64_encode(keys.sign(request_id.as_bytes()))
}

/// The page served at `/ondc-site-verification.html`.
pub fn site_verification_html(keys: &SigningKeyPair, request_id: &str) -> String {
    format!(
        "<html>\n  <head>\n    <meta name='ondc-site-verification' content='{}' />\n  </head>\n  <body>ONDC site verification</body>\n</html>\n",
        site_verification_signature(keys, request_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SITE_PRIVATE: &str =
        "8pPXr0Y4iwG590D9h2XJ+LAk2vXiOAVS0If7ep1FAqd9AK2I1RKLvAju6cr4g2HLfkU9yee/AAsXX1/UmsuScg==";
    const SITE_REQUEST_ID: &str = "27baa06d-f90a-486c-85e5-cc621b787f04";
    const SITE_SIGNATURE: &str =
        "BcJeNC7OWGvLKsmdSKmn43O1WNrmT4zDsH3nkAsRTCEs6C7RQ9FVEEqC+dmhUYlCiRsjGKkybQ6N5j7O0mPkBw==";

    const OWN_PRIVATE: &str = "MC4CAQAwBQYDK2VuBCIEIKh1Dq7Fu82lqQdBQJTHTvBTxtD6hLconopqvVLVy81s";
    const PREPROD_PUBLIC: &str = "MCowBQYDK2VuAyEAa9Wbpvd9SsrpOZFcynyt/TO3x0Yrqyys4NUGIvyxX2Q=";
    const CHALLENGE: &str = "TaaRFx6fxSbFJO2Lp9Kbap1rZTjAAveAeASr19G7iXI8Meaz6Ok6B4C709pC3GpR";
    const ANSWER: &str = "BCA53D77-A9F5-4C6B-829E-B5A93CC9BF43";

    #[test]
    fn site_verification_reproduces_the_published_vector() {
        let keys = SigningKeyPair::from_base64(SITE_PRIVATE).unwrap();
        assert_eq!(
            site_verification_signature(&keys, SITE_REQUEST_ID),
            SITE_SIGNATURE
        );
        let page = site_verification_html(&keys, SITE_REQUEST_ID);
        assert!(page.contains(&format!(
            "<meta name='ondc-site-verification' content='{SITE_SIGNATURE}' />"
        )));
    }

    #[test]
    fn challenge_reproduces_the_published_vector() {
        assert_eq!(
            solve_challenge(OWN_PRIVATE, PREPROD_PUBLIC, CHALLENGE).unwrap(),
            ANSWER
        );
        // By environment name, with surrounding whitespace, and with the raw public key.
        assert_eq!(
            solve_challenge(
                OWN_PRIVATE,
                registry_encryption_public_key("preprod"),
                &format!(" {CHALLENGE}\n")
            )
            .unwrap(),
            ANSWER
        );
        let raw = b64_encode(&b64_decode(PREPROD_PUBLIC).unwrap()[12..]);
        assert_eq!(
            solve_challenge(OWN_PRIVATE, &raw, CHALLENGE).unwrap(),
            ANSWER
        );
    }

    #[test]
    fn the_vector_key_in_its_other_pkcs8_forms_gives_the_same_answer() {
        let v0 = b64_decode(OWN_PRIVATE).unwrap();
        let mut v1 = v0.clone();
        v1[4] = 1;
        assert_eq!(
            solve_challenge(&b64_encode(&v1), PREPROD_PUBLIC, CHALLENGE).unwrap(),
            ANSWER
        );
        let own = EncryptionKeyPair::from_pkcs8_base64(OWN_PRIVATE).unwrap();
        let mut long = v1.clone();
        long[1] = 0x51;
        long.extend_from_slice(&[0x81, 0x21, 0x00]);
        long.extend_from_slice(own.public_key().as_bytes());
        assert_eq!(long.len(), 83);
        assert_eq!(
            solve_challenge(&b64_encode(&long), PREPROD_PUBLIC, CHALLENGE).unwrap(),
            ANSWER
        );
    }

    #[test]
    fn generated_keys_round_trip() {
        let registry = EncryptionKeyPair::generate().unwrap();
        let subscriber = EncryptionKeyPair::generate().unwrap();
        for plaintext in ["", "x", "0123456789abcdef", "ünïcødé challenge ✓", ANSWER] {
            let challenge = encrypt_challenge(
                &registry.private_key_pkcs8_base64(),
                &subscriber.public_key_der_base64(),
                plaintext,
            )
            .unwrap();
            let answer = solve_challenge(
                &subscriber.private_key_pkcs8_base64(),
                &registry.public_key_der_base64(),
                &challenge,
            )
            .unwrap();
            assert_eq!(answer, plaintext);
        }
        // A third party's key does not decrypt it (padding fails, or garbage that is rejected).
        let other = EncryptionKeyPair::generate().unwrap();
        let challenge = encrypt_challenge(
            &registry.private_key_pkcs8_base64(),
            &subscriber.public_key_der_base64(),
            ANSWER,
        )
        .unwrap();
        assert_ne!(
            solve_challenge(
                &other.private_key_pkcs8_base64(),
                &registry.public_key_der_base64(),
                &challenge
            ),
            Ok(ANSWER.to_owned())
        );
    }

    #[test]
    fn bad_padding_is_a_typed_error() {
        let key = ChallengeKey::from_base64(OWN_PRIVATE, PREPROD_PUBLIC).unwrap();
        // Encrypt a block whose last byte is not valid padding (0, then 17).
        for last in [0u8, 17] {
            let mut block = aes::Block::from([b'a'; 16]);
            block[15] = last;
            key.cipher.encrypt_block(&mut block);
            assert_eq!(
                key.decrypt(&b64_encode(block)),
                Err(ChallengeError::BadPadding)
            );
        }
        // Padding length 3 but the bytes before the last are not all 3.
        let mut block = aes::Block::from([b'a'; 16]);
        block[13] = 2;
        block[14] = 3;
        block[15] = 3;
        key.cipher.encrypt_block(&mut block);
        assert_eq!(
            key.decrypt(&b64_encode(block)),
            Err(ChallengeError::BadPadding)
        );
        // Valid padding around bytes that are not UTF-8.
        let mut block = aes::Block::from([4u8; 16]);
        block[0] = 0xff;
        key.cipher.encrypt_block(&mut block);
        assert_eq!(
            key.decrypt(&b64_encode(block)),
            Err(ChallengeError::NotUtf8)
        );
    }

    #[test]
    fn wrong_lengths_and_garbage_are_typed_errors() {
        let key = ChallengeKey::from_base64(OWN_PRIVATE, PREPROD_PUBLIC).unwrap();
        assert_eq!(key.decrypt("not base64!"), Err(ChallengeError::NotBase64));
        assert_eq!(key.decrypt(""), Err(ChallengeError::BadLength(0)));
        assert_eq!(
            key.decrypt(&b64_encode([0u8; 15])),
            Err(ChallengeError::BadLength(15))
        );
        assert_eq!(
            key.decrypt(&b64_encode([0u8; 33])),
            Err(ChallengeError::BadLength(33))
        );

        assert_eq!(
            solve_challenge("###", PREPROD_PUBLIC, CHALLENGE),
            Err(ChallengeError::PrivateKey(KeyError::NotBase64))
        );
        assert!(matches!(
            solve_challenge(&b64_encode([0u8; 32]), PREPROD_PUBLIC, CHALLENGE),
            Err(ChallengeError::PrivateKey(KeyError::WrongLength(32, _)))
        ));
        // Right length, wrong algorithm (Ed25519's OID 1.3.101.112 instead of X25519's).
        let mut ed = b64_decode(OWN_PRIVATE).unwrap();
        ed[11] = 0x70;
        assert_eq!(
            solve_challenge(&b64_encode(&ed), PREPROD_PUBLIC, CHALLENGE),
            Err(ChallengeError::PrivateKey(KeyError::NotX25519PrivateKey))
        );
        // 83-byte form whose public key does not belong to the private key.
        let mut long = b64_decode(OWN_PRIVATE).unwrap();
        long[1] = 0x51;
        long.extend_from_slice(&[0x81, 0x21, 0x00]);
        long.extend_from_slice(&[7u8; 32]);
        assert_eq!(
            solve_challenge(&b64_encode(&long), PREPROD_PUBLIC, CHALLENGE),
            Err(ChallengeError::PrivateKey(KeyError::MismatchedKeypair))
        );

        assert_eq!(
            solve_challenge(OWN_PRIVATE, "%%%", CHALLENGE),
            Err(ChallengeError::PublicKey(KeyError::NotBase64))
        );
        assert!(matches!(
            solve_challenge(OWN_PRIVATE, &b64_encode([1u8; 31]), CHALLENGE),
            Err(ChallengeError::PublicKey(KeyError::WrongLength(31, _)))
        ));
        let mut spki = b64_decode(PREPROD_PUBLIC).unwrap();
        spki[8] = 0x70;
        assert_eq!(
            solve_challenge(OWN_PRIVATE, &b64_encode(&spki), CHALLENGE),
            Err(ChallengeError::PublicKey(KeyError::NotX25519PublicKey))
        );
        // The all-zero point gives an all-zero shared secret: refused.
        assert_eq!(
            solve_challenge(OWN_PRIVATE, &b64_encode([0u8; 32]), CHALLENGE),
            Err(ChallengeError::WeakPublicKey)
        );
    }

    #[test]
    fn environment_names_resolve_and_keys_pass_through() {
        for (name, key) in REGISTRY_ENCRYPTION_PUBLIC_KEYS {
            assert_eq!(registry_encryption_public_key(name), key);
            assert!(encryption_public_key_from_base64(key).is_ok());
        }
        assert_eq!(registry_encryption_public_key("qa"), "qa");
    }

    proptest! {
        #[test]
        fn arbitrary_challenges_never_panic(challenge in ".{0,200}") {
            let key = ChallengeKey::from_base64(OWN_PRIVATE, PREPROD_PUBLIC).unwrap();
            let _ = key.decrypt(&challenge);
        }

        #[test]
        fn arbitrary_base64_challenges_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let key = ChallengeKey::from_base64(OWN_PRIVATE, PREPROD_PUBLIC).unwrap();
            let _ = key.decrypt(&b64_encode(&bytes));
        }

        #[test]
        fn arbitrary_keys_never_panic(private in ".{0,120}", public in ".{0,80}") {
            let _ = solve_challenge(&private, &public, CHALLENGE);
        }

        #[test]
        fn arbitrary_key_bytes_never_panic(
            private in proptest::collection::vec(any::<u8>(), 0..90),
            public in proptest::collection::vec(any::<u8>(), 0..50),
        ) {
            let _ = solve_challenge(&b64_encode(&private), &b64_encode(&public), CHALLENGE);
        }
    }
}
