//! The ONDC `Authorization` header: making it, reading it, and checking it against a body.
//!
//! Format (one line, this order, no spaces after commas):
//! `Signature keyId="{sub}|{ukid}|ed25519",algorithm="ed25519",created="{c}",expires="{e}",headers="(created) (expires) digest",signature="{sig}"`
//!
//! The parser is tolerant where peers differ in the wild (parameter order, a space after commas,
//! the scheme word's case) and strict where it matters (decimal times, the keyId shape, the
//! algorithm, the covered headers).

use super::batch::Checked;
use super::keys::SigningKeyPair;
use super::{b64_decode, b64_encode};
use base64::Engine as _;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signature, VerifyingKey};

/// The only algorithm ONDC uses.
pub const ALGORITHM: &str = "ed25519";
/// The covered headers, in signing-string order.
pub const COVERED_HEADERS: &str = "(created) (expires) digest";

/// Base64 of unkeyed BLAKE2b-512 over the exact body bytes (88 characters).
///
/// ```
/// assert_eq!(
///     ondc_rating::crypto::body_digest(b"The quick brown fox jumps over the lazy dog"),
///     "qK3Uvd39k+SHfSdG5igXsRY2Sh+nvBSNlQkLxzM7NnP4JAHPeqLkyx7NkCluPxTLVBP47Xe+cwRbE5FM3NapGA=="
/// );
/// ```
pub fn body_digest(body: &[u8]) -> String {
    b64_encode(Blake2b512::digest(body))
}

/// The three-line signing string, LF-joined, no trailing newline.
pub fn signing_string(
    created: impl std::fmt::Display,
    expires: impl std::fmt::Display,
    digest: &str,
) -> String {
    use std::fmt::Write as _;
    // Written once into a buffer of its size: the fixed text is 42 bytes, the times at most 20
    // each.
    let mut out = String::with_capacity(82 + digest.len());
    write!(
        out,
        "(created): {created}\n(expires): {expires}\ndigest: BLAKE-512={digest}"
    )
    .expect("writing to a String cannot fail");
    out
}

/// The header value in ONDC's canonical form, written once into a buffer of its size;
/// `signature` appends the signature's base64.
fn header_value(
    subscriber_id: &str,
    unique_key_id: &str,
    created: impl std::fmt::Display,
    expires: impl std::fmt::Display,
    signature: impl FnOnce(&mut String),
) -> String {
    use std::fmt::Write as _;
    // The fixed text is 119 bytes, the times at most 20 each, the signature's base64 88.
    let mut out = String::with_capacity(256 + subscriber_id.len() + unique_key_id.len());
    write!(
        out,
        "Signature keyId=\"{subscriber_id}|{unique_key_id}|{ALGORITHM}\",algorithm=\"{ALGORITHM}\",created=\"{created}\",expires=\"{expires}\",headers=\"{COVERED_HEADERS}\",signature=\""
    )
    .expect("writing to a String cannot fail");
    signature(&mut out);
    out.push('"');
    out
}

/// Why a header could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum HeaderError {
    /// The header does not start with the `Signature` scheme.
    #[error("authorization scheme is not Signature")]
    NotSignatureScheme,
    /// The parameter list is not `name="value"` pairs separated by commas.
    #[error("malformed parameter list at byte {0}")]
    Malformed(usize),
    /// A parameter appears twice.
    #[error("parameter {0} appears more than once")]
    Duplicate(String),
    /// A required parameter is absent.
    #[error("parameter {0} is missing")]
    Missing(&'static str),
    /// keyId is not `subscriber_id|unique_key_id|algorithm`.
    #[error("keyId must be subscriber_id|unique_key_id|ed25519")]
    BadKeyId,
    /// The algorithm is not ed25519 or keyId and algorithm disagree.
    #[error("algorithm must be ed25519 in both keyId and algorithm")]
    UnsupportedAlgorithm,
    /// created or expires is not a plain decimal number.
    #[error("{0} must be decimal Unix seconds")]
    BadTime(&'static str),
    /// The covered headers are not `(created) (expires) digest`.
    #[error("headers must be \"(created) (expires) digest\"")]
    BadHeadersList,
}

/// Why a signed request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum VerifyError {
    /// The header could not be read.
    #[error("{0}")]
    Header(#[from] HeaderError),
    /// created lies in the future beyond the allowed clock skew.
    #[error("signature created in the future")]
    NotYetValid,
    /// The signature's validity window has passed.
    #[error("signature expired")]
    Expired,
    /// created is after expires.
    #[error("created is after expires")]
    CreatedAfterExpires,
    /// The signature does not verify over this body with this key.
    #[error("signature does not match the body")]
    BadSignature,
    /// No key is known for the keyId.
    #[error("no signing key known for {0}")]
    UnknownKey(String),
}

/// A parsed `Authorization: Signature ...` header. Times are kept as the exact strings received,
/// because the signing string must be rebuilt from them byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationHeader {
    /// The signer's subscriber id (first part of keyId).
    pub subscriber_id: String,
    /// The signer's unique key id (second part of keyId).
    pub unique_key_id: String,
    /// `created`, decimal Unix seconds as received.
    pub created: String,
    /// `expires`, decimal Unix seconds as received.
    pub expires: String,
    /// Standard base64 of the 64-byte signature.
    pub signature: String,
}

impl AuthorizationHeader {
    /// Renders the header value in ONDC's canonical form.
    pub fn to_header_value(&self) -> String {
        header_value(
            &self.subscriber_id,
            &self.unique_key_id,
            &self.created,
            &self.expires,
            |out| out.push_str(&self.signature),
        )
    }

    /// Reads a header value, tolerating parameter order and optional whitespace after commas.
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let value = value.trim();
        let rest = match value.split_once(char::is_whitespace) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("Signature") => rest,
            _ => return Err(HeaderError::NotSignatureScheme),
        };
        let params = parse_params(rest)?;
        let get = |name: &'static str| -> Result<&str, HeaderError> {
            params
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
                .ok_or(HeaderError::Missing(name))
        };
        let key_id = get("keyId")?;
        let algorithm = get("algorithm")?;
        let created = get("created")?;
        let expires = get("expires")?;
        let headers = get("headers")?;
        let signature = get("signature")?;

        let mut parts = key_id.split('|');
        let (Some(subscriber_id), Some(unique_key_id), Some(key_alg), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HeaderError::BadKeyId);
        };
        if subscriber_id.is_empty() || unique_key_id.is_empty() {
            return Err(HeaderError::BadKeyId);
        }
        if key_alg != ALGORITHM || algorithm != ALGORITHM {
            return Err(HeaderError::UnsupportedAlgorithm);
        }
        if !is_decimal(created) {
            return Err(HeaderError::BadTime("created"));
        }
        if !is_decimal(expires) {
            return Err(HeaderError::BadTime("expires"));
        }
        if !headers
            .split_whitespace()
            .eq(["(created)", "(expires)", "digest"])
        {
            return Err(HeaderError::BadHeadersList);
        }
        Ok(Self {
            subscriber_id: subscriber_id.to_owned(),
            unique_key_id: unique_key_id.to_owned(),
            created: created.to_owned(),
            expires: expires.to_owned(),
            signature: signature.to_owned(),
        })
    }

    /// Checks the time window against `now` (Unix seconds) with `skew` seconds of tolerance for
    /// a signer whose clock runs ahead, then the signature over `body`.
    pub fn verify(
        &self,
        body: &[u8],
        key: &VerifyingKey,
        now: i64,
        skew: i64,
    ) -> Result<(), VerifyError> {
        match self.check(body, key, now, skew)?.valid {
            true => Ok(()),
            false => Err(VerifyError::BadSignature),
        }
    }

    /// As [`Self::verify`], telling how the signature was checked: Err for a header that fails
    /// before its signature is checked (the time window, an undecodable signature), Ok with the
    /// verdict otherwise.
    pub fn check(
        &self,
        body: &[u8],
        key: &VerifyingKey,
        now: i64,
        skew: i64,
    ) -> Result<Checked, VerifyError> {
        let (message, signature) = self.signed(body, now, skew)?;
        Ok(super::batch::alone(key, message.as_bytes(), &signature))
    }

    /// As [`Self::check`], the signature checked in a batch with the others being verified on
    /// this worker thread at the same moment ([`super::batch`]).
    pub async fn check_in_batch(
        &self,
        body: &[u8],
        key: &VerifyingKey,
        now: i64,
        skew: i64,
    ) -> Result<Checked, VerifyError> {
        let (message, signature) = self.signed(body, now, skew)?;
        Ok(super::batch::verify(key, message, signature).await)
    }

    /// The time window's checks, then the signing string over `body` and the signature to check
    /// against it.
    pub fn signed(
        &self,
        body: &[u8],
        now: i64,
        skew: i64,
    ) -> Result<(String, Signature), VerifyError> {
        // is_decimal() guaranteed digits; a number too large for i64 is simply expired/invalid.
        let created: i64 = self
            .created
            .parse()
            .map_err(|_| HeaderError::BadTime("created"))?;
        let expires: i64 = self
            .expires
            .parse()
            .map_err(|_| HeaderError::BadTime("expires"))?;
        if created > expires {
            return Err(VerifyError::CreatedAfterExpires);
        }
        if created > now.saturating_add(skew) {
            return Err(VerifyError::NotYetValid);
        }
        if now > expires {
            return Err(VerifyError::Expired);
        }
        let sig_bytes = b64_decode(&self.signature).map_err(|_| VerifyError::BadSignature)?;
        let signature = Signature::from_slice(&sig_bytes).map_err(|_| VerifyError::BadSignature)?;
        let message = signing_string(&self.created, &self.expires, &body_digest(body));
        Ok((message, signature))
    }
}

/// Signs `body` and returns the complete header value.
pub fn sign_body(
    body: &[u8],
    keys: &SigningKeyPair,
    subscriber_id: &str,
    unique_key_id: &str,
    created: i64,
    expires: i64,
) -> String {
    // Three allocations: the digest's base64, the signing string, the header.
    let message = signing_string(created, expires, &body_digest(body));
    let signature = keys.sign(message.as_bytes());
    header_value(subscriber_id, unique_key_id, created, expires, |out| {
        super::b64().encode_string(signature, out)
    })
}

/// Parses `header` and verifies it over `body` with `key`.
pub fn verify_body(
    header: &str,
    body: &[u8],
    key: &VerifyingKey,
    now: i64,
    skew: i64,
) -> Result<AuthorizationHeader, VerifyError> {
    let parsed = AuthorizationHeader::parse(header)?;
    parsed.verify(body, key, now, skew)?;
    Ok(parsed)
}

fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Splits `name="value", name="value"` into pairs; names are unique.
fn parse_params(input: &str) -> Result<Vec<(&str, &str)>, HeaderError> {
    let bytes = input.as_bytes();
    let mut out: Vec<(&str, &str)> = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i] == b' ' || bytes[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        let name_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i == name_start || i >= bytes.len() || bytes[i] != b'=' {
            return Err(HeaderError::Malformed(i));
        }
        let name = &input[name_start..i];
        i += 1;
        if i >= bytes.len() || bytes[i] != b'"' {
            return Err(HeaderError::Malformed(i));
        }
        i += 1;
        let value_start = i;
        while i < bytes.len() && bytes[i] != b'"' {
            i += 1;
        }
        if i >= bytes.len() {
            return Err(HeaderError::Malformed(i));
        }
        let value = &input[value_start..i];
        i += 1;
        if out.iter().any(|(k, _)| *k == name) {
            return Err(HeaderError::Duplicate(name.to_owned()));
        }
        out.push((name, value));
        skip_ws(&mut i);
        if i == bytes.len() {
            return Ok(out);
        }
        if bytes[i] != b',' {
            return Err(HeaderError::Malformed(i));
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::verifying_key_from_base64;
    use proptest::prelude::*;

    const BODY: &str = r#"{"context":{"domain":"nic2004:60212","country":"IND","city":"Kochi","action":"search","core_version":"0.9.1","bap_id":"bap.stayhalo.in","bap_uri":"https://8f9f-49-207-209-131.ngrok.io/protocol/","transaction_id":"e6d9f908-1d26-4ff3-a6d1-3af3d3721054","message_id":"a2fe6d52-9fe4-4d1a-9d0b-dccb8b48522d","timestamp":"2022-01-04T09:17:55.971Z","ttl":"P1M"},"message":{"intent":{"fulfillment":{"start":{"location":{"gps":"10.108768, 76.347517"}},"end":{"location":{"gps":"10.102997, 76.353480"}}}}}}"#;
    const PRIVATE: &str =
        "lP3sHA+9gileOkXYJXh4Jg8tK0gEEMbf9yCPnFpbldhrAY+NErqL9WD+Vav7TE5tyVXGXBle9ONZi2W7o144eQ==";
    const PUBLIC: &str = "awGPjRK6i/Vg/lWr+0xObclVxlwZXvTjWYtlu6NeOHk=";
    const CREATED: i64 = 1641287875;
    const EXPIRES: i64 = 1641291475;

    fn vector_header() -> String {
        let keys = SigningKeyPair::from_base64(PRIVATE).unwrap();
        sign_body(
            BODY.as_bytes(),
            &keys,
            "example-bap.com",
            "bap1234",
            CREATED,
            EXPIRES,
        )
    }

    #[test]
    fn published_vector_digest_and_signature() {
        assert_eq!(BODY.len(), 496);
        assert_eq!(
            body_digest(BODY.as_bytes()),
            "b6lf6lRgOweajukcvcLsagQ2T60+85kRh/Rd2bdS+TG/5ALebOEgDJfyCrre/1+BMu5nA94o4DT3pTFXuUg7sw=="
        );
        let header = AuthorizationHeader::parse(&vector_header()).unwrap();
        assert_eq!(
            header.signature,
            "cjbhP0PFyrlSCNszJM1F/YmHDVAWsZqJUPzojnE/7TJU3fJ/rmIlgaUHEr5E0/2PIyf0tpSnWtT6cyNNlpmoAQ=="
        );
    }

    #[test]
    fn second_published_vector() {
        let keys = SigningKeyPair::from_base64(
            "G0Pme72u8Y1MwxHqvY4iBW+7VPtJ7dsX7SGs6zZ5yvVIzdRAyHR6YkwHG2ufOE+12lsbJRwBF4Hqd7dUEOZZkg==",
        )
        .unwrap();
        assert_eq!(
            keys.public_key_base64(),
            "SM3UQMh0emJMBxtrnzhPtdpbGyUcAReB6ne3VBDmWZI="
        );
        let h = sign_body(
            BODY.as_bytes(),
            &keys,
            "buyer-app.ondc.org",
            "207",
            CREATED,
            EXPIRES,
        );
        assert!(h.starts_with("Signature keyId=\"buyer-app.ondc.org|207|ed25519\""));
        assert!(h.ends_with("signature=\"fKQWvXhln4UdyZdL87ViXQObdBme0dHnsclD2LvvnHoNxIgcvAwUZOmwAnH5QKi9Upg5tRaxpoGhCFGHD+d+Bw==\""));
    }

    #[test]
    fn blake2b_512_of_the_quick_brown_fox() {
        assert_eq!(
            body_digest(b"The quick brown fox jumps over the lazy dog"),
            "qK3Uvd39k+SHfSdG5igXsRY2Sh+nvBSNlQkLxzM7NnP4JAHPeqLkyx7NkCluPxTLVBP47Xe+cwRbE5FM3NapGA=="
        );
    }

    #[test]
    fn canonical_header_text() {
        assert_eq!(
            vector_header(),
            "Signature keyId=\"example-bap.com|bap1234|ed25519\",algorithm=\"ed25519\",created=\"1641287875\",expires=\"1641291475\",headers=\"(created) (expires) digest\",signature=\"cjbhP0PFyrlSCNszJM1F/YmHDVAWsZqJUPzojnE/7TJU3fJ/rmIlgaUHEr5E0/2PIyf0tpSnWtT6cyNNlpmoAQ==\""
        );
    }

    #[test]
    fn verifies_within_the_window_and_refuses_outside_it() {
        let key = verifying_key_from_base64(PUBLIC).unwrap();
        let h = vector_header();
        let body = BODY.as_bytes();
        assert!(verify_body(&h, body, &key, CREATED + 10, 5).is_ok());
        assert!(verify_body(&h, body, &key, EXPIRES, 5).is_ok());
        assert_eq!(
            verify_body(&h, body, &key, EXPIRES + 1, 5).unwrap_err(),
            VerifyError::Expired
        );
        assert!(verify_body(&h, body, &key, CREATED - 5, 5).is_ok());
        assert_eq!(
            verify_body(&h, body, &key, CREATED - 6, 5).unwrap_err(),
            VerifyError::NotYetValid
        );
    }

    #[test]
    fn tampered_body_or_wrong_key_fails() {
        let key = verifying_key_from_base64(PUBLIC).unwrap();
        let h = vector_header();
        let mut body = BODY.as_bytes().to_vec();
        body[100] ^= 1;
        assert_eq!(
            verify_body(&h, &body, &key, CREATED, 5).unwrap_err(),
            VerifyError::BadSignature
        );
        let other = SigningKeyPair::generate().unwrap().verifying_key();
        assert_eq!(
            verify_body(&h, BODY.as_bytes(), &other, CREATED, 5).unwrap_err(),
            VerifyError::BadSignature
        );
    }

    #[test]
    fn created_after_expires_is_refused() {
        let keys = SigningKeyPair::from_base64(PRIVATE).unwrap();
        let h = sign_body(b"{}", &keys, "a.b", "k", 200, 100);
        assert_eq!(
            verify_body(&h, b"{}", &keys.verifying_key(), 150, 5).unwrap_err(),
            VerifyError::CreatedAfterExpires
        );
    }

    #[test]
    fn tolerates_order_and_spaces_after_commas() {
        let h = AuthorizationHeader::parse(&vector_header()).unwrap();
        let reordered = format!(
            "Signature signature=\"{}\", headers=\"(created) (expires) digest\", expires=\"{}\", created=\"{}\", algorithm=\"ed25519\", keyId=\"example-bap.com|bap1234|ed25519\"",
            h.signature, h.expires, h.created
        );
        assert_eq!(AuthorizationHeader::parse(&reordered).unwrap(), h);
        let key = verifying_key_from_base64(PUBLIC).unwrap();
        assert!(verify_body(&reordered, BODY.as_bytes(), &key, CREATED, 5).is_ok());
    }

    #[test]
    fn strict_where_it_matters() {
        let good = vector_header();
        let cases = [
            (
                good.replace("Signature ", "Bearer "),
                HeaderError::NotSignatureScheme,
            ),
            (
                good.replace("|bap1234|ed25519", "|ed25519"),
                HeaderError::BadKeyId,
            ),
            (
                good.replace("algorithm=\"ed25519\"", "algorithm=\"rsa\""),
                HeaderError::UnsupportedAlgorithm,
            ),
            (
                good.replace("|bap1234|ed25519", "|bap1234|rsa"),
                HeaderError::UnsupportedAlgorithm,
            ),
            (
                good.replace("created=\"1641287875\"", "created=\"1641287875.5\""),
                HeaderError::BadTime("created"),
            ),
            (
                good.replace("expires=\"1641291475\"", "expires=\"-1\""),
                HeaderError::BadTime("expires"),
            ),
            (
                good.replace("(created) (expires) digest", "(created) digest"),
                HeaderError::BadHeadersList,
            ),
            (
                good.replace(",signature=", ",created=\"1\",signature="),
                HeaderError::Duplicate("created".into()),
            ),
            (
                good.replace(",algorithm=\"ed25519\"", ""),
                HeaderError::Missing("algorithm"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                AuthorizationHeader::parse(&text).unwrap_err(),
                want,
                "{text}"
            );
        }
    }

    proptest! {
        /// A header renders and parses back to itself; and `sign_body`, which writes its header
        /// in one go, writes that canonical form, carrying the signature of the signing string
        /// over the body.
        #[test]
        fn format_then_parse_round_trips(
            sub in "[a-z0-9.-]{1,40}",
            ukid in "[A-Za-z0-9_.-]{1,20}",
            created in 0i64..4_000_000_000,
            ttl in 0i64..100_000,
            sig in proptest::collection::vec(any::<u8>(), 64),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let h = AuthorizationHeader {
                subscriber_id: sub.clone(),
                unique_key_id: ukid.clone(),
                created: created.to_string(),
                expires: (created + ttl).to_string(),
                signature: b64_encode(&sig),
            };
            prop_assert_eq!(AuthorizationHeader::parse(&h.to_header_value()).unwrap(), h);

            let keys = SigningKeyPair::from_base64(PRIVATE).unwrap();
            let signed = sign_body(&body, &keys, &sub, &ukid, created, created + ttl);
            let parsed = AuthorizationHeader::parse(&signed).unwrap();
            prop_assert_eq!(parsed.to_header_value(), signed.clone());
            prop_assert_eq!(
                (parsed.subscriber_id.as_str(), parsed.unique_key_id.as_str()),
                (sub.as_str(), ukid.as_str())
            );
            let message = signing_string(created, created + ttl, &body_digest(&body));
            prop_assert_eq!(parsed.signature, b64_encode(keys.sign(message.as_bytes())));
        }

        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = AuthorizationHeader::parse(&s);
        }

        #[test]
        fn signed_bodies_verify_and_any_flipped_byte_fails(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            flip in any::<proptest::sample::Index>(),
        ) {
            let keys = SigningKeyPair::from_base64(PRIVATE).unwrap();
            let h = sign_body(&body, &keys, "s.example", "k1", 1000, 2000);
            prop_assert!(verify_body(&h, &body, &keys.verifying_key(), 1500, 5).is_ok());
            if !body.is_empty() {
                let mut tampered = body.clone();
                tampered[flip.index(body.len())] ^= 0x80;
                prop_assert_eq!(
                    verify_body(&h, &tampered, &keys.verifying_key(), 1500, 5).unwrap_err(),
                    VerifyError::BadSignature
                );
            }
        }
    }
}
