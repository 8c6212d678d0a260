//! Business checks on a received `/rating`. The request was well formed and has been ACKed; what
//! is wrong with its content travels back in the `/on_rating`'s `error` block (PROTOCOL.md
//! section 3), with `rating_ack: false`.
//!
//! Order: the ratings are looked at in message order and the first problem is reported. Within
//! one rating the category comes first (50003: a category this seller does not take at all, or
//! does not accept), then the value (30015). The seller platform's verdict (30018, from the
//! webhook) comes after all of these: a rating refused here is not handed to the platform.

use crate::checker::rules::{is_peer_uri_acceptable, is_retail_domain, is_std_city};
use crate::config::SellerSettings;
use crate::protocol::{
    Context, ContextError, ErrorType, InboundRating, NetworkError, RatingCategory,
};

/// The first field of a received `/rating`'s context that makes it one this seller cannot
/// answer, or None. Its `/on_rating` echoes the domain and city, carries ONDC's country and core
/// version (PROTOCOL.md sections 3 and 5) and goes to the context's `bap_uri`: a retail domain,
/// `IND`, a `std:` city code, `1.2.0`, a `bap_uri` on the `bap_id`'s domain and a `bpp_uri` on
/// the `bpp_id`'s (ONDC's `uri.on_id_domain`). A seller whose own `bpp_uri` is off the public
/// network (a development set-up, see [`is_peer_uri_acceptable`]) also takes uris off it, and one with
/// `allow_uris_off_domain` (a test set-up) any uri.
pub fn context_problem(c: &Context, seller: &SellerSettings) -> Option<ContextError> {
    use crate::protocol::{CORE_VERSION, COUNTRY};
    let refuse = |field: &str, want: &dyn std::fmt::Display, found: &str| {
        Some(ContextError {
            path: format!("context.{field}"),
            message: format!("must be {want}, found {found:?}"),
        })
    };
    if !is_retail_domain(&c.domain) {
        let want = "a retail domain ONDC:RET10..ONDC:RET19 or ONDC:RET1A";
        return refuse("domain", &want, &c.domain);
    }
    if c.country != COUNTRY {
        return refuse("country", &format_args!("{COUNTRY:?}"), &c.country);
    }
    if !is_std_city(&c.city) {
        return refuse("city", &"a city code std:<digits>", &c.city);
    }
    if c.core_version != CORE_VERSION {
        return refuse(
            "core_version",
            &format_args!("{CORE_VERSION:?}"),
            &c.core_version,
        );
    }
    // The uris the /on_rating goes to and names: each on its id's domain (the bpp_id is this
    // seller's, checked before), so that no signed request directs the callback to another host.
    // A bpp_uri that is this seller's own configured one is taken wherever it is: refusing it
    // would refuse every /rating (start-up warns of such a bpp_uri).
    for (uri_field, uri, id) in [
        ("bap_uri", &c.bap_uri, &c.bap_id),
        ("bpp_uri", &c.bpp_uri, &c.bpp_id),
    ] {
        let taken = seller.allow_uris_off_domain
            || is_peer_uri_acceptable(uri, id, &seller.bpp_uri)
            || (uri_field == "bpp_uri" && is_own_bpp_uri(uri, seller));
        if !taken {
            let want = format_args!("an http(s) URL on the domain of {id:?}");
            return refuse(uri_field, &want, uri);
        }
    }
    None
}

/// Whether `uri` is this seller's own configured `bpp_uri` (a trailing slash aside), which its
/// context rules take wherever it is.
pub fn is_own_bpp_uri(uri: &str, seller: &SellerSettings) -> bool {
    uri.trim_end_matches('/') == seller.bpp_uri.trim_end_matches('/')
}

/// The business errors a seller side reports in `/on_rating`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusinessCode {
    /// 30015: the value is not a rating this seller takes.
    InvalidRatingValue,
    /// 30018: the seller platform does not know the order.
    UnknownOrder,
    /// 50003: the category is not one of ONDC's, or not one this seller accepts.
    UnsupportedCategory,
}

impl BusinessCode {
    /// Every business code, in code order.
    pub const ALL: [BusinessCode; 3] = [
        BusinessCode::InvalidRatingValue,
        BusinessCode::UnknownOrder,
        BusinessCode::UnsupportedCategory,
    ];

    /// (code, type).
    pub fn spec(self) -> (&'static str, ErrorType) {
        match self {
            BusinessCode::InvalidRatingValue => ("30015", ErrorType::Domain),
            BusinessCode::UnknownOrder => ("30018", ErrorType::Domain),
            BusinessCode::UnsupportedCategory => ("50003", ErrorType::Policy),
        }
    }

    /// The code for `code` when it is one of the business codes.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.spec().0 == code.trim())
    }

    /// The error block for this code.
    pub fn error(self, path: Option<String>, message: impl Into<String>) -> NetworkError {
        let (code, kind) = self.spec();
        NetworkError {
            kind: Some(kind),
            code: code.to_owned(),
            path,
            message: Some(message.into()),
        }
    }
}

/// The JSON path of `field` of the `i`-th rating: `message.ratings[i].field`, or `message.field`
/// when the message was a single rating object.
pub fn rating_path(single: bool, i: usize, field: &str) -> String {
    if single {
        format!("message.{field}")
    } else {
        format!("message.ratings[{i}].{field}")
    }
}

/// The first business problem of `ratings` (see the module docs for the order), or None.
pub fn first_problem(
    ratings: &[InboundRating],
    single: bool,
    settings: &SellerSettings,
) -> Option<NetworkError> {
    let accepted = settings.accepted();
    for (i, r) in ratings.iter().enumerate() {
        match RatingCategory::parse(&r.rating_category) {
            None => {
                return Some(BusinessCode::UnsupportedCategory.error(
                    Some(rating_path(single, i, "rating_category")),
                    format!(
                        "rating category {:?} is not one of Order, Provider, Item, Fulfillment, Agent",
                        r.rating_category
                    ),
                ));
            }
            Some(c) if !accepted.contains(&c) => {
                return Some(BusinessCode::UnsupportedCategory.error(
                    Some(rating_path(single, i, "rating_category")),
                    format!("this seller does not take {} ratings", c.as_str()),
                ));
            }
            Some(_) => {}
        }
        if !value_ok(&r.value, settings.allow_decimal_values) {
            let want = if settings.allow_decimal_values {
                "a number from 1 to 5"
            } else {
                "a whole number from 1 to 5"
            };
            return Some(BusinessCode::InvalidRatingValue.error(
                Some(rating_path(single, i, "value")),
                format!("rating value must be {want}, got {:?}", r.value),
            ));
        }
    }
    None
}

/// Whether `value` is a rating from 1 to 5: ASCII digits, or with `allow_decimal` also digits, a
/// point and digits ("4.5"). Signs, exponents and a decimal written for a whole number ("5.0"
/// when decimals are refused) are not ratings.
pub fn value_ok(value: &str, allow_decimal: bool) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match value.split_once('.') {
        None if digits(value) => value.parse::<u8>().is_ok_and(|v| (1..=5).contains(&v)),
        Some((whole, frac)) if allow_decimal && digits(whole) && digits(frac) => {
            value.parse::<f64>().is_ok_and(|v| (1.0..=5.0).contains(&v))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rating(category: &str, value: &str) -> InboundRating {
        InboundRating {
            rating_category: category.into(),
            id: "X".into(),
            value: value.into(),
            feedback_form: None,
            feedback_id: None,
        }
    }

    #[test]
    fn contexts_a_seller_cannot_answer() {
        let ok: Context = serde_json::from_value(serde_json::json!({
            "domain": "ONDC:RET1A", "country": "IND", "city": "std:0522", "action": "rating",
            "core_version": "1.2.0", "bap_id": "buyer.example/ondc",
            "bap_uri": "https://API.Buyer.Example./bap", "bpp_id": "seller.example",
            "bpp_uri": "https://seller.example/bpp", "transaction_id": "t", "message_id": "m",
            "timestamp": "2026-12-07T10:00:00.000Z"
        }))
        .unwrap();
        let seller = |bpp_uri: &str| SellerSettings {
            bpp_uri: bpp_uri.into(),
            ..SellerSettings::default()
        };
        let public = &seller("https://seller.example/bpp");
        assert_eq!(context_problem(&ok, public), None);
        let with = |field: &str, value: &str| {
            let mut v = serde_json::to_value(&ok).unwrap();
            v[field] = value.into();
            serde_json::from_value::<Context>(v).unwrap()
        };
        for (field, value) in [
            ("domain", "ONDC:RET1"),
            ("domain", "ONDC:RET20"),
            ("domain", "ondc:ret11"),
            ("country", "ind"),
            ("city", "std:"),
            ("city", "std:08a"),
            ("city", "*"),
            ("core_version", "1.2"),
            ("bap_uri", "https://buyer.example.evil.test/bap"),
            ("bap_uri", "https://notbuyer.example/bap"),
            ("bap_uri", "buyer.example/bap"),
            ("bap_uri", "http://127.0.0.1:8080/bap"),
            ("bap_uri", "http://localhost/bap"),
            ("bpp_uri", "https://elsewhere.example/bpp"),
            ("bpp_uri", "http://127.0.0.1/bpp"),
        ] {
            let e = context_problem(&with(field, value), public).expect(value);
            assert_eq!(e.path, format!("context.{field}"), "{value}");
        }
        // A seller off the public network (development) also calls back buyers off it (loopback,
        // a container name, a private address), and only them.
        let dev = &seller("http://127.0.0.1:9000/bpp");
        assert_eq!(
            context_problem(&with("bap_uri", "http://[::1]:1/bap"), dev),
            None
        );
        assert_eq!(
            context_problem(&with("bap_uri", "http://localhost/bap"), dev),
            None
        );
        assert_eq!(
            context_problem(&with("bpp_uri", "http://127.0.0.1/bpp"), dev),
            None
        );
        let e = context_problem(&with("bap_uri", "https://elsewhere.test/bap"), dev).unwrap();
        assert_eq!(e.path, "context.bap_uri");
        let e = context_problem(&with("bpp_uri", "https://elsewhere.test/bpp"), dev).unwrap();
        assert_eq!(e.path, "context.bpp_uri");
        // A test set-up takes any uri, and still refuses the rest.
        let anywhere = &SellerSettings {
            allow_uris_off_domain: true,
            ..seller("https://mock.example/bpp")
        };
        for (field, value) in [
            ("bap_uri", "http://192.168.1.5:3000/bap"),
            ("bpp_uri", "http://mock-seller:8081/bpp"),
        ] {
            assert_eq!(
                context_problem(&with(field, value), anywhere),
                None,
                "{value}"
            );
        }
        let e = context_problem(&with("country", "USA"), anywhere).unwrap();
        assert_eq!(e.path, "context.country");
        // A seller whose own bpp_uri is off its domain (start-up warns of it) still takes the
        // /rating that names that uri, and only that one.
        let off = &seller("https://ratings.elsewhere.example/ondc/bpp");
        for own in [
            "https://ratings.elsewhere.example/ondc/bpp",
            "https://ratings.elsewhere.example/ondc/bpp/",
        ] {
            assert_eq!(context_problem(&with("bpp_uri", own), off), None, "{own}");
        }
        for other in [
            "https://ratings.elsewhere.example/other/bpp",
            "https://ratings.elsewhere.example.evil.test/ondc/bpp",
        ] {
            let e = context_problem(&with("bpp_uri", other), off).unwrap();
            assert_eq!(e.path, "context.bpp_uri", "{other}");
        }
        let e = context_problem(&with("bap_uri", &off.bpp_uri), off).unwrap();
        assert_eq!(
            e.path, "context.bap_uri",
            "only the bpp_uri may be the seller's own"
        );
    }

    #[test]
    fn values() {
        for ok in ["1", "3", "5", "05"] {
            assert!(value_ok(ok, false), "{ok}");
        }
        for bad in [
            "0",
            "6",
            "x",
            "4.4",
            "5.0",
            "-1",
            "+3",
            "",
            "1e0",
            "99999999999999999999",
        ] {
            assert!(!value_ok(bad, false), "{bad}");
        }
        for ok in ["4.4", "1.0", "5.0", "3", "1.25"] {
            assert!(value_ok(ok, true), "{ok}");
        }
        for bad in ["0.5", "5.01", "4.", ".5", "4.4.4", "NaN", "inf", "6"] {
            assert!(!value_ok(bad, true), "{bad}");
        }
    }

    #[test]
    fn the_first_problem_in_message_order_category_before_value() {
        let s = SellerSettings::default();
        assert_eq!(first_problem(&[rating("Order", "5")], false, &s), None);

        let e = first_problem(&[rating("Order", "5"), rating("Item", "6")], false, &s).unwrap();
        assert_eq!(
            (e.code.as_str(), e.path.as_deref()),
            ("30015", Some("message.ratings[1].value"))
        );
        assert_eq!(e.kind, Some(ErrorType::Domain));

        let e = first_problem(&[rating("Packaging", "9"), rating("Item", "6")], false, &s).unwrap();
        assert_eq!(
            (e.code.as_str(), e.path.as_deref()),
            ("50003", Some("message.ratings[0].rating_category"))
        );
        assert_eq!(e.kind, Some(ErrorType::Policy));

        let e = first_problem(&[rating("Order", "0"), rating("Packaging", "5")], false, &s);
        assert_eq!(e.unwrap().code, "30015");

        let e = first_problem(&[rating("Order", "x")], true, &s).unwrap();
        assert_eq!(e.path.as_deref(), Some("message.value"));

        let only_orders = SellerSettings {
            accepted_categories: vec!["order".into()],
            ..SellerSettings::default()
        };
        let e = first_problem(&[rating("Agent", "5")], false, &only_orders).unwrap();
        assert_eq!(e.code, "50003");
        assert_eq!(
            first_problem(&[rating("Order", "5")], false, &only_orders),
            None
        );
    }

    #[test]
    fn business_codes() {
        assert_eq!(
            BusinessCode::from_code("30018"),
            Some(BusinessCode::UnknownOrder)
        );
        assert_eq!(BusinessCode::from_code("30016"), None);
        assert_eq!(BusinessCode::from_code("31001"), None);
    }
}
