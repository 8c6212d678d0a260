//! Bearer tokens for the buyer API: compact JWS with HS256 (shared secret) or EdDSA (Ed25519
//! public keys). The token's `sub` is the buyer app's user id; `exp` is required. A token naming
//! an audience (`aud`) is taken only when one of its audiences is this server's
//! (`buyer.jwt_audience`), as RFC 7519 section 4.1.3 requires; with an audience configured, every
//! token must name it. With `buyer.jwt_issuers` set, `iss` must be one of them. A header listing
//! critical extensions (`crit`, RFC 7515 section 4.1.11) is refused: this server knows none.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::crypto::verifying_key_from_base64;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Seconds of clock difference tolerated on exp/nbf.
const LEEWAY_SECS: i64 = 30;

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// Algorithm not accepted by this server.
    #[error("token algorithm {0} is not accepted")]
    Algorithm(String),
    /// Signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// Past `exp`.
    #[error("token expired")]
    Expired,
    /// Before `nbf`.
    #[error("token not yet valid")]
    NotYetValid,
    /// `sub` or `exp` absent.
    #[error("token lacks {0}")]
    MissingClaim(&'static str),
    /// `aud` names none of this server's audiences, or is absent while one is configured.
    #[error("token audience is not this server's")]
    Audience,
    /// `iss` is not one of the configured issuers.
    #[error("token issuer is not accepted")]
    Issuer,
    /// The header lists critical extensions (`crit`), which this server does not understand.
    #[error("token header names critical extensions this server does not understand")]
    Critical,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// `aud`: one audience or several (RFC 7519 section 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single string.
    One(String),
    /// An array of strings.
    Many(Vec<String>),
}

impl Audience {
    fn names(&self) -> &[String] {
        match self {
            Audience::One(a) => std::slice::from_ref(a),
            Audience::Many(a) => a,
        }
    }
}

/// The claims read from a token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: Option<i64>,
    /// Not before, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nbf: Option<i64>,
    /// Issued at.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iat: Option<i64>,
    /// Audience.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub aud: Option<Audience>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iss: Option<String>,
}

/// Checks buyer API tokens.
#[derive(Clone)]
pub struct TokenVerifier {
    hs256_secret: Vec<u8>,
    eddsa_keys: Vec<VerifyingKey>,
    audience: Vec<String>,
    issuers: Vec<String>,
}

impl TokenVerifier {
    /// From the configured secret and public keys (already validated), taking tokens of no
    /// audience and any issuer.
    pub fn new(hs256_secret: &str, eddsa_public_keys: &[String]) -> Self {
        Self {
            hs256_secret: hs256_secret.as_bytes().to_vec(),
            eddsa_keys: eddsa_public_keys
                .iter()
                .filter_map(|k| verifying_key_from_base64(k).ok())
                .collect(),
            audience: Vec::new(),
            issuers: Vec::new(),
        }
    }

    /// Takes tokens whose `aud` names one of `audience` (and, when it is not empty, only those),
    /// issued by one of `issuers` (any issuer when it is empty).
    pub fn with_audience_and_issuers(mut self, audience: &[String], issuers: &[String]) -> Self {
        self.audience = audience.to_vec();
        self.issuers = issuers.to_vec();
        self
    }

    /// Reads `Authorization: Bearer <token>` and returns the user id.
    pub fn user_from_header(&self, header: Option<&str>, now: i64) -> Result<String, TokenError> {
        let token = header
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Missing)?;
        self.verify(token, now)
    }

    /// Verifies a compact token and returns its `sub`.
    pub fn verify(&self, token: &str, now: i64) -> Result<String, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |x: &str| URL_SAFE_NO_PAD.decode(x).map_err(|_| TokenError::Malformed);
        let header: Header = json_object(&decode(h)?)?;
        if header.crit.is_some() {
            return Err(TokenError::Critical);
        }
        let sig = decode(s)?;
        let signed = &token[..h.len() + 1 + p.len()];
        match header.alg.as_str() {
            "HS256" if !self.hs256_secret.is_empty() => {
                let mut mac = HmacSha256::new_from_slice(&self.hs256_secret)
                    .map_err(|_| TokenError::BadSignature)?;
                mac.update(signed.as_bytes());
                mac.verify_slice(&sig)
                    .map_err(|_| TokenError::BadSignature)?;
            }
            "EdDSA" if !self.eddsa_keys.is_empty() => {
                let sig = Signature::from_slice(&sig).map_err(|_| TokenError::BadSignature)?;
                if !self
                    .eddsa_keys
                    .iter()
                    .any(|k| crate::crypto::verify_strict(k, signed.as_bytes(), &sig))
                {
                    return Err(TokenError::BadSignature);
                }
            }
            other => return Err(TokenError::Algorithm(other.to_owned())),
        }
        let claims: Claims = json_object(&decode(p)?)?;
        let exp = claims.exp.ok_or(TokenError::MissingClaim("exp"))?;
        if now > exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
        {
            return Err(TokenError::NotYetValid);
        }
        let ours = |aud: &Audience| aud.names().iter().any(|a| self.audience.contains(a));
        match &claims.aud {
            Some(aud) if !ours(aud) => return Err(TokenError::Audience),
            None if !self.audience.is_empty() => return Err(TokenError::Audience),
            _ => {}
        }
        if !self.issuers.is_empty()
            && !claims
                .iss
                .as_ref()
                .is_some_and(|i| self.issuers.contains(i))
        {
            return Err(TokenError::Issuer);
        }
        claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::MissingClaim("sub"))
    }
}

/// Reads a JOSE header or a claims set, which are JSON objects (RFC 7519 section 7.2). serde would
/// also read a struct from a JSON array (`["user-1", 2000000000]` as sub and exp): refused.
fn json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, TokenError> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(TokenError::Malformed);
    }
    serde_json::from_slice(bytes).map_err(|_| TokenError::Malformed)
}

/// Mints an HS256 token for `user` valid for `ttl_secs` from `now`, of no audience or issuer.
pub fn mint_hs256(secret: &str, user: &str, now: i64, ttl_secs: i64) -> String {
    mint_hs256_claims(
        secret,
        &Claims {
            sub: Some(user.to_owned()),
            exp: Some(now + ttl_secs),
            nbf: None,
            iat: Some(now),
            aud: None,
            iss: None,
        },
    )
}

/// Mints an HS256 token of `claims` (the `token` command names the configured audience and
/// issuer in them).
pub fn mint_hs256_claims(secret: &str, claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
    let signed = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SigningKeyPair;

    const SECRET: &str = "a-test-secret-of-some-length";

    #[test]
    fn minted_tokens_verify_until_they_expire() {
        let v = TokenVerifier::new(SECRET, &[]);
        let t = mint_hs256(SECRET, "user-1", 1000, 60);
        assert_eq!(v.verify(&t, 1000).unwrap(), "user-1");
        assert_eq!(
            v.user_from_header(Some(&format!("Bearer {t}")), 1050)
                .unwrap(),
            "user-1"
        );
        assert_eq!(
            v.verify(&t, 1000 + 60 + LEEWAY_SECS + 1),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn refuses_other_secrets_tampering_and_garbage() {
        let v = TokenVerifier::new(SECRET, &[]);
        let other = mint_hs256("another-secret-entirely", "user-1", 1000, 60);
        assert_eq!(v.verify(&other, 1000), Err(TokenError::BadSignature));
        let t = mint_hs256(SECRET, "user-1", 1000, 60);
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin","exp":99999999999}"#);
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(v.verify(&forged, 1000), Err(TokenError::BadSignature));
        assert_eq!(v.verify("a.b", 1000), Err(TokenError::Malformed));
        assert_eq!(v.user_from_header(None, 1000), Err(TokenError::Missing));
        assert_eq!(
            v.user_from_header(Some("Basic abc"), 1000),
            Err(TokenError::Missing)
        );
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(
            v.verify(&none_alg, 1000),
            Err(TokenError::Algorithm("none".into()))
        );
    }

    /// A token signed with `keys` over the given header and claims JSON.
    fn eddsa_token(keys: &SigningKeyPair, header: &[u8], claims: &[u8]) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(keys.sign(signed.as_bytes()))
        )
    }

    /// Found by the bearer_token fuzz target (fuzz/corpus/bearer_token/regress-claims-array):
    /// a properly signed token whose claims were the array `["2", 33333333333]` was read as
    /// sub "2", exp 33333333333 and accepted. Header and claims must be JSON objects.
    #[test]
    fn array_claims_or_header_are_malformed_even_when_signed() {
        let keys = SigningKeyPair::generate().unwrap();
        let v = TokenVerifier::new(SECRET, &[keys.public_key_base64()]);
        let claims = include_bytes!("../../fuzz/corpus/bearer_token/regress-claims-array");
        let token = eddsa_token(&keys, br#"{"alg":"EdDSA"}"#, claims);
        assert_eq!(v.verify(&token, 1000), Err(TokenError::Malformed));
        let token = eddsa_token(&keys, br#"["EdDSA"]"#, br#"{"sub":"2","exp":2000}"#);
        assert_eq!(v.verify(&token, 1000), Err(TokenError::Malformed));
        // The same claims as an object, with JSON's leading whitespace, are fine.
        let token = eddsa_token(
            &keys,
            b" \n{\"alg\":\"EdDSA\"}",
            b"\t{\"sub\":\"2\",\"exp\":33333333333}",
        );
        assert_eq!(v.verify(&token, 1000).unwrap(), "2");
    }

    #[test]
    fn a_token_naming_an_audience_is_taken_only_by_a_server_of_that_audience() {
        let keys = SigningKeyPair::generate().unwrap();
        let open = TokenVerifier::new("", &[keys.public_key_base64()]);
        let ours = TokenVerifier::new("", &[keys.public_key_base64()])
            .with_audience_and_issuers(&["ratings.example".into(), "api.example".into()], &[]);
        let token = |claims: &str| eddsa_token(&keys, br#"{"alg":"EdDSA"}"#, claims.as_bytes());
        let none = token(r#"{"sub":"u","exp":2000}"#);
        let one = token(r#"{"sub":"u","exp":2000,"aud":"api.example"}"#);
        let many = token(r#"{"sub":"u","exp":2000,"aud":["other.example","ratings.example"]}"#);
        let other = token(r#"{"sub":"u","exp":2000,"aud":["other.example"]}"#);
        let empty = token(r#"{"sub":"u","exp":2000,"aud":[]}"#);
        // No audience configured: tokens naming one are for someone else (RFC 7519 4.1.3).
        assert_eq!(open.verify(&none, 1000).unwrap(), "u");
        for t in [&one, &many, &other, &empty] {
            assert_eq!(open.verify(t, 1000), Err(TokenError::Audience));
        }
        // An audience configured: a token must name it.
        assert_eq!(ours.verify(&one, 1000).unwrap(), "u");
        assert_eq!(ours.verify(&many, 1000).unwrap(), "u");
        for t in [&none, &other, &empty] {
            assert_eq!(ours.verify(t, 1000), Err(TokenError::Audience));
        }
        // An audience that is neither a string nor strings is no token.
        let number = token(r#"{"sub":"u","exp":2000,"aud":7}"#);
        assert_eq!(ours.verify(&number, 1000), Err(TokenError::Malformed));
    }

    #[test]
    fn issuers_when_configured_and_critical_headers_always() {
        let v = TokenVerifier::new(SECRET, &[])
            .with_audience_and_issuers(&[], &["https://id.example".into()]);
        let claims = |iss: Option<&str>| Claims {
            sub: Some("u".into()),
            exp: Some(2000),
            nbf: None,
            iat: None,
            aud: None,
            iss: iss.map(str::to_owned),
        };
        let good = mint_hs256_claims(SECRET, &claims(Some("https://id.example")));
        assert_eq!(v.verify(&good, 1000).unwrap(), "u");
        let bad = mint_hs256_claims(SECRET, &claims(Some("https://other.example")));
        assert_eq!(v.verify(&bad, 1000), Err(TokenError::Issuer));
        let none = mint_hs256_claims(SECRET, &claims(None));
        assert_eq!(v.verify(&none, 1000), Err(TokenError::Issuer));
        // Any issuer when none is configured.
        assert_eq!(
            TokenVerifier::new(SECRET, &[]).verify(&bad, 1000).unwrap(),
            "u"
        );
        let keys = SigningKeyPair::generate().unwrap();
        let v = TokenVerifier::new("", &[keys.public_key_base64()]);
        let critical = eddsa_token(
            &keys,
            br#"{"alg":"EdDSA","crit":["exp"]}"#,
            br#"{"sub":"u","exp":2000}"#,
        );
        assert_eq!(v.verify(&critical, 1000), Err(TokenError::Critical));
    }

    #[test]
    fn eddsa_tokens_verify_with_a_configured_key() {
        let keys = SigningKeyPair::generate().unwrap();
        let v = TokenVerifier::new("", &[keys.public_key_base64()]);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"u9","exp":2000}"#);
        let signed = format!("{header}.{payload}");
        let token = format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(keys.sign(signed.as_bytes()))
        );
        assert_eq!(v.verify(&token, 1000).unwrap(), "u9");
        // HS256 is off when no secret is configured.
        let hs = mint_hs256(SECRET, "u9", 1000, 60);
        assert_eq!(
            v.verify(&hs, 1000),
            Err(TokenError::Algorithm("HS256".into()))
        );
    }
}
