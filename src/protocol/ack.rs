//! The synchronous answer to every network POST, and ONDC's error-code table (RFC-001).

use serde::{Deserialize, Serialize};

/// ACK or NACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckStatus {
    /// Accepted for processing.
    #[serde(rename = "ACK")]
    Ack,
    /// Refused.
    #[serde(rename = "NACK")]
    Nack,
}

/// ONDC error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorType {
    /// Context is wrong.
    #[serde(rename = "CONTEXT-ERROR")]
    Context,
    /// Core protocol rule broken.
    #[serde(rename = "CORE-ERROR")]
    Core,
    /// Domain rule broken.
    #[serde(rename = "DOMAIN-ERROR")]
    Domain,
    /// Policy (signature, authorisation).
    #[serde(rename = "POLICY-ERROR")]
    Policy,
    /// Payload does not meet the schema.
    #[serde(rename = "JSON-SCHEMA-ERROR")]
    JsonSchema,
}

/// The error block of a NACK or of an /on_rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkError {
    /// Error type; some peers omit it.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<ErrorType>,
    /// Numeric code as a string.
    pub code: String,
    /// JSON path of the offending field.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<String>,
    /// Human-readable reason.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Ack {
    status: AckStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AckMessage {
    ack: Ack,
}

/// `{"message":{"ack":{"status":"ACK"}}}` or the NACK form with `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResponse {
    message: AckMessage,
    /// Present on a NACK.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<NetworkError>,
}

impl AckResponse {
    /// An ACK.
    pub fn ack() -> Self {
        Self {
            message: AckMessage {
                ack: Ack {
                    status: AckStatus::Ack,
                },
            },
            error: None,
        }
    }

    /// A NACK with the given error.
    pub fn nack(error: NetworkError) -> Self {
        Self {
            message: AckMessage {
                ack: Ack {
                    status: AckStatus::Nack,
                },
            },
            error: Some(error),
        }
    }

    /// ACK or NACK.
    pub fn status(&self) -> AckStatus {
        self.message.ack.status
    }
}

/// The NACK codes this adapter sends, each with its type and HTTP status: one table, so a code
/// never travels with the wrong type or status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackCode {
    /// 20001: buyer side, invalid signature on a callback.
    BuyerInvalidSignature,
    /// 20006: buyer side, callback does not meet the API contract.
    BuyerInvalidResponse,
    /// 20006 as a CONTEXT-ERROR: a callback whose context does not echo its /rating's (the
    /// transaction, the participants and their uris, domain, country, city, core version).
    BuyerInvalidContext,
    /// 20008: buyer side, no outstanding request for that message_id.
    BuyerOutOfSequence,
    /// 23001: buyer side, internal error; retry.
    BuyerInternal,
    /// 30000: seller side, request does not meet the API contract.
    SellerInvalidRequest,
    /// 30000 as a CONTEXT-ERROR: a context this seller cannot answer (another network, version
    /// or domain, a city that is no city code, a callback URI off its buyer's domain).
    SellerInvalidContext,
    /// 30016: seller side, invalid signature.
    SellerInvalidSignature,
    /// 30022: seller side, stale request.
    SellerStaleRequest,
    /// 31001: seller side, internal error; retry.
    SellerInternal,
}

impl NackCode {
    /// (code, type, HTTP status).
    pub fn spec(self) -> (&'static str, ErrorType, u16) {
        use ErrorType::*;
        match self {
            NackCode::BuyerInvalidSignature => ("20001", Policy, 401),
            NackCode::BuyerInvalidResponse => ("20006", JsonSchema, 400),
            NackCode::BuyerInvalidContext => ("20006", Context, 400),
            NackCode::BuyerOutOfSequence => ("20008", Core, 400),
            NackCode::BuyerInternal => ("23001", Core, 503),
            NackCode::SellerInvalidRequest => ("30000", JsonSchema, 400),
            NackCode::SellerInvalidContext => ("30000", Context, 400),
            NackCode::SellerInvalidSignature => ("30016", Policy, 401),
            NackCode::SellerStaleRequest => ("30022", Context, 400),
            NackCode::SellerInternal => ("31001", Core, 503),
        }
    }

    /// The NACK body for this code.
    pub fn nack(self, path: Option<String>, message: impl Into<String>) -> AckResponse {
        let (code, kind, _) = self.spec();
        AckResponse::nack(NetworkError {
            kind: Some(kind),
            code: code.to_owned(),
            path,
            message: Some(message.into()),
        })
    }

    /// The HTTP status that goes with it.
    pub fn http_status(self) -> u16 {
        self.spec().2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_and_signature_nack_bytes() {
        assert_eq!(
            serde_json::to_string(&AckResponse::ack()).unwrap(),
            r#"{"message":{"ack":{"status":"ACK"}}}"#
        );
        assert_eq!(
            serde_json::to_string(
                &NackCode::SellerInvalidSignature.nack(None, "Invalid Signature")
            )
            .unwrap(),
            r#"{"message":{"ack":{"status":"NACK"}},"error":{"type":"POLICY-ERROR","code":"30016","message":"Invalid Signature"}}"#
        );
    }

    #[test]
    fn reads_a_peer_nack_without_type() {
        let r: AckResponse = serde_json::from_str(
            r#"{"message":{"ack":{"status":"NACK"}},"error":{"code":"30018","message":"no order"}}"#,
        )
        .unwrap();
        assert_eq!(r.status(), AckStatus::Nack);
        assert_eq!(r.error.unwrap().code, "30018");
    }
}
