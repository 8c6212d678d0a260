//! The request-head limit: a request whose headers exceed `server.max_header_bytes` is answered
//! 431 before any handler runs, in the error shape of the endpoint it was sent to (a NACK on the
//! network endpoints, each buyer API's own error body elsewhere). The HTTP parser's own ceiling
//! (128 KiB for the whole head) stays above every allowed setting.

use actix_web::dev::ServiceRequest;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::error::{ApiCode, ApiError};
use super::network::{self, BUYER, RoleCodes, SELLER};
use crate::config::{Settings, uri_path};

/// The largest `server.max_header_bytes` allowed: below the HTTP parser's own limit, so every
/// request over ours gets our typed answer rather than the parser's empty one.
pub const MAX_HEADER_BYTES_CEILING: usize = 64 * 1024;

/// Bytes of the request line and header fields as they arrived (`name: value\r\n` each).
/// Counted from the parsed parts, without building any string: it runs on every request.
pub fn head_bytes(req: &ServiceRequest) -> usize {
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + line
}

/// Where an error for this path goes: which body shape its clients read.
enum Shape {
    Network(RoleCodes),
    Feedback,
    Listing,
    Api,
}

fn shape(path: &str, settings: &Settings) -> Shape {
    if settings.buyer.enabled && path == format!("{}/on_rating", uri_path(&settings.buyer.bap_uri))
    {
        Shape::Network(BUYER)
    } else if settings.seller.enabled
        && path == format!("{}/rating", uri_path(&settings.seller.bpp_uri))
    {
        Shape::Network(SELLER)
    } else if path.starts_with("/v2/feedback/") {
        Shape::Feedback
    } else if path.starts_with("/v2/listings/") {
        Shape::Listing
    } else {
        Shape::Api
    }
}

/// The 431 answer when the request's head is over the limit; None otherwise.
pub fn check_head(req: &ServiceRequest, settings: &Settings) -> Option<HttpResponse> {
    let limit = settings.server.max_header_bytes;
    let size = head_bytes(req);
    if size <= limit {
        return None;
    }
    tracing::info!(size, limit, path = req.path(), "request headers too large");
    let message = format!("request headers exceed {limit} bytes");
    let mut r = match shape(req.path(), settings) {
        Shape::Network(codes) => network::nack(codes.invalid, None, message),
        Shape::Feedback => {
            crate::bap::feedback::FeedbackError::from(too_large(message)).error_response()
        }
        Shape::Listing => {
            crate::bap::listing::ListingError::from(too_large(message)).error_response()
        }
        Shape::Api => too_large(message).error_response(),
    };
    *r.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    Some(r)
}

fn too_large(message: String) -> ApiError {
    ApiError::new(ApiCode::HeadersTooLarge, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    /// The count is the request line as sent plus `name: value\r\n` per header, for origin- and
    /// absolute-form targets alike.
    #[test]
    fn head_bytes_counts_the_line_and_every_header() {
        for target in ["/ret11/rating?x=1", "http://adapter.test:8080/ret11/rating"] {
            let req = TestRequest::post()
                .uri(target)
                .insert_header(("x-pad", "abc"))
                .to_srv_request();
            let line = "POST".len() + target.len() + 12;
            assert_eq!(head_bytes(&req), line + "x-pad".len() + 3 + 4, "{target}");
        }
    }
}
