//! What every inbound network endpoint does first: read the raw body (bounded), verify its
//! signature over those exact bytes, and only then parse it, once. Failures become ONDC NACKs with
//! the code the receiving role owes (PROTOCOL.md section 4).

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::AppState;
use super::body::BodyError;
use crate::crypto::batch::Checked;
use crate::crypto::{AuthorizationHeader, VerifyError};
use crate::protocol::{AckResponse, NackCode};
use crate::registry::KeySource;

/// The NACK codes a role answers with.
#[derive(Debug, Clone, Copy)]
pub struct RoleCodes {
    /// Bad or missing signature.
    pub signature: NackCode,
    /// Payload does not meet the contract.
    pub invalid: NackCode,
    /// Our own failure (store down).
    pub internal: NackCode,
}

/// The seller side's codes.
pub const SELLER: RoleCodes = RoleCodes {
    signature: NackCode::SellerInvalidSignature,
    invalid: NackCode::SellerInvalidRequest,
    internal: NackCode::SellerInternal,
};

/// The buyer side's codes.
pub const BUYER: RoleCodes = RoleCodes {
    signature: NackCode::BuyerInvalidSignature,
    invalid: NackCode::BuyerInvalidResponse,
    internal: NackCode::BuyerInternal,
};

/// A NACK response for `code`, marked so that the metrics middleware counts it, and logged (in
/// the handler's span, so with the request's ids once read) with its code, path and message: a
/// peer's request or callback refused leaves a line saying why. A refused signature is logged
/// where it is refused, with the reason its NACK does not carry.
pub fn nack(code: NackCode, path: Option<String>, message: impl Into<String>) -> HttpResponse {
    let body: AckResponse = code.nack(path, message);
    if !matches!(
        code,
        NackCode::BuyerInvalidSignature | NackCode::SellerInvalidSignature
    ) && let Some(e) = &body.error
    {
        tracing::info!(
            code = e.code.as_str(),
            path = e.path.as_deref().unwrap_or_default(),
            reason = e.message.as_deref().unwrap_or_default(),
            "NACK"
        );
    }
    let mut r = HttpResponse::build(
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
    )
    .json(body);
    r.extensions_mut().insert(super::metrics::NackSent(code));
    r
}

/// Records the context's ids on the current span, the one a network handler runs in (declared
/// with these fields empty), so that every line it logs from here on carries them.
pub fn record_ids(context: &crate::protocol::Context) {
    let span = tracing::Span::current();
    span.record("transaction_id", context.transaction_id.as_str());
    span.record("message_id", context.message_id.as_str());
    span.record("bap_id", context.bap_id.as_str());
    span.record("bpp_id", context.bpp_id.as_str());
}

/// The plain ACK.
pub fn ack() -> HttpResponse {
    HttpResponse::Ok().json(AckResponse::ack())
}

/// A verified inbound request: who signed it and its parsed JSON.
pub struct Verified {
    /// The signer, from keyId.
    pub signer: AuthorizationHeader,
    /// The body, parsed once after verification.
    pub json: Value,
    /// The exact bytes received.
    pub body: web::Bytes,
}

/// Reads, verifies and parses an inbound network request, or returns the NACK to send.
pub async fn verify_inbound(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    codes: RoleCodes,
) -> Result<Verified, HttpResponse> {
    let body =
        match super::body::collect(req.headers(), payload, state.settings.server.max_body_bytes)
            .await
        {
            Ok(b) => b,
            Err(BodyError::Read(e)) => {
                return Err(nack(codes.invalid, None, format!("cannot read body: {e}")));
            }
            Err(BodyError::TooLarge) => {
                let mut r = nack(codes.invalid, None, "body too large");
                *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                return Err(r);
            }
        };
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let signer = match header {
        None => Err(SignatureFailure::Refused(
            "missing Authorization header".into(),
        )),
        Some(h) => check_signature(state, h, &body).await,
    };
    let signer = signer.map_err(|failure| match failure {
        SignatureFailure::Refused(reason) => {
            tracing::info!(reason, path = req.path(), "refused signature");
            // The reason goes to our log only: the NACK message is the fixed text peers expect.
            signature_nack(state, codes, None)
        }
        SignatureFailure::Unavailable(reason) => {
            tracing::warn!(reason, path = req.path(), "cannot check signature now");
            nack(
                codes.internal,
                None,
                "cannot verify the signature right now; retry",
            )
        }
    })?;
    let json: Value = serde_json::from_slice(&body)
        .map_err(|e| nack(codes.invalid, None, format!("body is not JSON: {e}")))?;
    Ok(Verified { signer, json, body })
}

/// Why a signature was not accepted.
enum SignatureFailure {
    /// The request is refused (401).
    Refused(String),
    /// The registry could not be asked; the sender should retry (503).
    Unavailable(String),
}

async fn check_signature(
    state: &AppState,
    header: &str,
    body: &[u8],
) -> Result<AuthorizationHeader, SignatureFailure> {
    use SignatureFailure::*;
    let parsed = AuthorizationHeader::parse(header).map_err(|e| Refused(e.to_string()))?;
    let (sub, ukid) = (&parsed.subscriber_id, &parsed.unique_key_id);
    let unavailable = |e: crate::registry::LookupError| Unavailable(e.to_string());
    let found = state
        .registry
        .lookup(sub, ukid)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| Refused(VerifyError::UnknownKey(format!("{sub}|{ukid}")).to_string()))?;
    let (now, skew) = (state.clock.unix(), state.settings.identity.clock_skew_secs);
    let checked = if state.settings.identity.batch_verification {
        parsed.check_in_batch(body, &found.key, now, skew).await
    } else {
        parsed.check(body, &found.key, now, skew)
    };
    // Every check of the equation is counted, the one under a rotated key included.
    let counted = |checked: Result<Checked, VerifyError>| {
        checked.and_then(|c| {
            state.metrics.signature_checked(c.how);
            c.valid.then_some(()).ok_or(VerifyError::BadSignature)
        })
    };
    match counted(checked) {
        Ok(()) => Ok(parsed),
        // A cached key that no longer verifies may have been rotated: ask once more.
        Err(VerifyError::BadSignature) if found.source == KeySource::Cache => {
            let fresh = state
                .registry
                .refresh(sub, ukid)
                .await
                .map_err(unavailable)?;
            match fresh {
                Some(f) if f.key != found.key => counted(parsed.check(body, &f.key, now, skew))
                    .map(|()| parsed.clone())
                    .map_err(|e| Refused(e.to_string())),
                _ => Err(Refused(VerifyError::BadSignature.to_string())),
            }
        }
        Err(e) => Err(Refused(e.to_string())),
    }
}

/// The 401 NACK to send when the signer is not the participant the context names (checked when
/// `registry.check_signer_matches_context` is on); None when the signer is acceptable.
pub fn signer_mismatch(
    state: &AppState,
    codes: RoleCodes,
    signer: &AuthorizationHeader,
    expected_field: &str,
    expected: &str,
) -> Option<HttpResponse> {
    (state.settings.registry.check_signer_matches_context && signer.subscriber_id != expected)
        .then(|| wrong_signer(state, codes, expected_field))
}

/// The 401 NACK for a signer that is not the party the context names.
fn wrong_signer(state: &AppState, codes: RoleCodes, expected_field: &str) -> HttpResponse {
    tracing::info!(expected_field, "signer does not match context");
    signature_nack(state, codes, Some(format!("context.{expected_field}")))
}

/// 401, `WWW-Authenticate: Signature realm=...`, and the signature NACK.
fn signature_nack(state: &AppState, codes: RoleCodes, path: Option<String>) -> HttpResponse {
    let mut r = nack(codes.signature, path, "Invalid Signature");
    let realm = format!(
        "Signature realm=\"{}\",headers=\"(created) (expires) digest\"",
        state.settings.identity.subscriber_id
    );
    if let Ok(v) = realm.parse() {
        r.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    r
}

/// The common front of both network endpoints, in protocol order: read and verify the raw body,
/// record it, check it against `schema`, read its context for `action`, tag the request span with
/// its ids, and check the signer is the participant the context names in `signer_field`
/// (`bap_id` on /rating, `bpp_id` on /on_rating). Returns what the handler continues with, or the
/// NACK to send.
pub async fn accept_inbound(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    codes: RoleCodes,
    action: crate::protocol::Action,
    schema: &crate::protocol::schema::Schema,
) -> Result<(Verified, crate::protocol::Context), HttpResponse> {
    use crate::protocol::Action;
    let mut v = verify_inbound(state, req, payload, codes).await?;
    state.record(
        super::record::Direction::Received,
        action,
        req.path(),
        &v.body,
    );
    let context = check_inbound(&mut v.json, schema, action)
        .map_err(|e| nack(codes.invalid, Some(e.path), e.message))?;
    record_ids(&context);
    let (field, expected) = match action {
        Action::Rating => ("bap_id", &context.bap_id),
        Action::OnRating => ("bpp_id", &context.bpp_id),
    };
    if let Some(r) = signer_mismatch(state, codes, &v.signer, field, expected) {
        return Err(r);
    }
    Ok((v, context))
}

/// What [`accept_inbound`] checks of a verified body once it is parsed, with no I/O: the body
/// against `schema`, then its context read for `action` (taken out of `json`, whose `context`
/// is left null). The first problem comes back as the path and message the NACK carries.
pub fn check_inbound(
    json: &mut Value,
    schema: &crate::protocol::schema::Schema,
    action: crate::protocol::Action,
) -> Result<crate::protocol::Context, crate::protocol::ContextError> {
    schema
        .check(json)
        .map_err(|violation| crate::protocol::ContextError {
            path: violation.path,
            message: violation.message,
        })?;
    crate::protocol::Context::take(json.get_mut("context").map(Value::take), action)
}
