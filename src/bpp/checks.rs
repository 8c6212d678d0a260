//! Business checks on a received `/rating`. The request was well formed and has been ACKed; what
//! is wrong with its content travels back in the `/on_rating`'s `error` block (PROTOCOL.md
//! section 3), with `rating_ack: false`.
//!
//! Order: the ratings are looked at in message order and the first problem is reported. Within
//! one rating the category comes first (50003: a category this seller does not take at all, or
//! does not accept), then the value (30015). The seller platform's verdict (30018, from the
//! webhook) comes after all of these: a rating refused here is not handed to the platform.

use crate::config::SellerSettings;
use crate::protocol::{ErrorType, InboundRating, NetworkError, RatingCategory};

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
