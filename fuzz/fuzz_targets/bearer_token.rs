//! The buyer API's `Authorization: Bearer <JWT>` as every buyer endpoint reads it, and the claims
//! of a token this verifier's own key signed, whatever they say.
//!
//! Input: the header value; it is also taken as the claims of a properly signed token.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ondc_rating::bap::auth::{TokenError, TokenVerifier};
use ondc_rating::crypto::{SigningKeyPair, b64_encode};

const SECRET: &str = "a-fuzzing-secret-of-some-length";
const PRIVATE: &str =
    "lP3sHA+9gileOkXYJXh4Jg8tK0gEEMbf9yCPnFpbldhrAY+NErqL9WD+Vav7TE5tyVXGXBle9ONZi2W7o144eQ==";
const NOW: i64 = 1_700_000_100;

static KEYS: LazyLock<SigningKeyPair> =
    LazyLock::new(|| SigningKeyPair::from_base64(PRIVATE).expect("fixed key"));
static VERIFIER: LazyLock<TokenVerifier> =
    LazyLock::new(|| TokenVerifier::new(SECRET, &[KEYS.public_key_base64()]));

/// base64url without padding, as JWS uses it.
fn b64url(bytes: &[u8]) -> String {
    b64_encode(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

fuzz_target!(|data: &[u8]| {
    // The server reads header values as text; other bytes never reach the verifier.
    if let Ok(header) = std::str::from_utf8(data)
        && let Ok(sub) = VERIFIER.user_from_header(Some(header), NOW)
    {
        assert!(!sub.is_empty());
    }

    // A token signed with the configured EdDSA key, the input as its claims: only the claims
    // can be wrong.
    let signed = format!("{}.{}", b64url(br#"{"alg":"EdDSA"}"#), b64url(data));
    let token = format!("{signed}.{}", b64url(&KEYS.sign(signed.as_bytes())));
    match VERIFIER.verify(&token, NOW) {
        Ok(sub) => {
            let claims: serde_json::Value =
                serde_json::from_slice(data).expect("accepted claims are JSON");
            assert_eq!(claims["sub"].as_str(), Some(sub.as_str()));
            assert!(claims["exp"].is_i64() || claims["exp"].is_u64());
        }
        Err(TokenError::Malformed | TokenError::Expired | TokenError::NotYetValid) => {}
        Err(TokenError::MissingClaim(_)) => {}
        // The verifier is of no audience: claims naming one are for another service.
        Err(TokenError::Audience) => {
            let claims: serde_json::Value =
                serde_json::from_slice(data).expect("claims read far enough for aud are JSON");
            assert!(!claims["aud"].is_null(), "refused for an audience it lacks");
        }
        Err(e) => panic!("a token this key signed was refused for {e:?}"),
    }
});
