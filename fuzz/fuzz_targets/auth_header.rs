//! The ONDC `Authorization` header as an inbound endpoint reads it: parse, then verify over the
//! body with a known key (the server does the same once it has found the signer's key).
//!
//! Input: the header value, a newline, then the body bytes.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ondc_rating::crypto::{
    AuthorizationHeader, HeaderError, SigningKeyPair, VerifyError, b64_decode, body_digest,
    sign_body, signing_string, verify_body,
};

/// A fixed test key; the seeds in fuzz/corpus/auth_header are signed with it.
const PRIVATE: &str =
    "lP3sHA+9gileOkXYJXh4Jg8tK0gEEMbf9yCPnFpbldhrAY+NErqL9WD+Vav7TE5tyVXGXBle9ONZi2W7o144eQ==";
/// "Now" for every verification; the signed seeds are valid at this time.
const NOW: i64 = 1_700_000_100;
/// The default `identity.clock_skew_secs`.
const SKEW: i64 = 5;

static KEYS: LazyLock<SigningKeyPair> =
    LazyLock::new(|| SigningKeyPair::from_base64(PRIVATE).expect("fixed key"));

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    // The server reads header values as text (actix's to_str); other bytes never reach the parser.
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    let key = KEYS.verifying_key();
    let parsed = AuthorizationHeader::parse(header);
    let verified = verify_body(header, body, &key, NOW, SKEW);

    let h = match parsed {
        Err(e) => {
            // A header that does not parse is refused for that reason, whatever the body.
            assert_eq!(verified, Err(VerifyError::Header(e)));
            return;
        }
        Ok(h) => h,
    };

    // What was read is what the canonical form says: rendering and reading again is lossless.
    assert!(!h.subscriber_id.is_empty() && !h.unique_key_id.is_empty());
    assert!(!h.subscriber_id.contains('|') && !h.unique_key_id.contains('|'));
    assert_eq!(
        AuthorizationHeader::parse(&h.to_header_value()).as_ref(),
        Ok(&h),
        "canonical form of {header:?} does not read back"
    );
    // verify_body is parse then verify, nothing more.
    assert_eq!(
        verified.clone().map(|_| ()),
        h.verify(body, &key, NOW, SKEW)
    );
    assert!(!matches!(
        verified,
        Err(VerifyError::Header(
            HeaderError::NotSignatureScheme | HeaderError::Malformed(_)
        ))
    ));

    let created: i64 = h.created.parse().expect("parse checked decimal digits");
    let expires: i64 = h.expires.parse().expect("parse checked decimal digits");
    match &verified {
        Ok(v) => {
            assert_eq!(v, &h);
            assert!(created <= expires && created <= NOW + SKEW && NOW <= expires);
            // Ed25519 is deterministic and verify_strict takes only canonical signatures: the one
            // that verified is the one this key makes over that signing string.
            let message = signing_string(&h.created, &h.expires, &body_digest(body));
            let sig = b64_decode(&h.signature).expect("a verified signature decodes");
            assert_eq!(sig, KEYS.sign(message.as_bytes()));
        }
        Err(VerifyError::CreatedAfterExpires) => assert!(created > expires),
        Err(VerifyError::NotYetValid) => assert!(created > NOW + SKEW),
        Err(VerifyError::Expired) => assert!(NOW > expires),
        Err(VerifyError::BadSignature) => {}
        Err(e) => panic!("unexpected error after a successful parse: {e:?}"),
    }

    // What we sign for these ids and times, we verify (at a time inside the window).
    if created <= expires {
        let ours = sign_body(
            body,
            &KEYS,
            &h.subscriber_id,
            &h.unique_key_id,
            created,
            expires,
        );
        let at = created.max(expires.min(NOW));
        let back = verify_body(&ours, body, &key, at, SKEW).expect("our own signature verifies");
        assert_eq!(back.subscriber_id, h.subscriber_id);
        assert_eq!(back.unique_key_id, h.unique_key_id);
    }
});
