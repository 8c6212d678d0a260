//! A seller side's `POST /rating` body once its signature verified, through the same steps as
//! the server: one JSON parse, the tolerant schema and the context (`accept_inbound`), then what
//! the receiver reads (the context rules, ttl, timestamp, the ratings) and the business checks.
//!
//! Input: the raw body.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ondc_rating::bpp::checks::{BusinessCode, context_problem, first_problem, is_own_bpp_uri};
use ondc_rating::bpp::receiver::iso_duration_secs;
use ondc_rating::checker::rules;
use ondc_rating::clock::parse_timestamp;
use ondc_rating::config::SellerSettings;
use ondc_rating::http::network::check_inbound;
use ondc_rating::protocol::rating::parse_inbound;
use ondc_rating::protocol::schema::Schemas;
use ondc_rating::protocol::{Action, RatingCategory};
use serde_json::Value;

static SCHEMAS: LazyLock<Schemas> =
    LazyLock::new(|| Schemas::compile().expect("embedded schemas compile"));

/// The seller settings the checks run with: a seller on the network (the defaults otherwise),
/// decimals allowed, a seller taking Order ratings only, and one on loopback.
static SELLERS: LazyLock<[SellerSettings; 4]> = LazyLock::new(|| {
    [
        SellerSettings {
            bpp_uri: "https://seller.example/bpp".into(),
            ..SellerSettings::default()
        },
        SellerSettings {
            allow_decimal_values: true,
            ..SellerSettings::default()
        },
        SellerSettings {
            accepted_categories: vec!["order".into()],
            ..SellerSettings::default()
        },
        SellerSettings {
            bpp_uri: "http://127.0.0.1:8080/bpp".into(),
            ..SellerSettings::default()
        },
    ]
});

fuzz_target!(|data: &[u8]| {
    let Ok(mut json) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let context = match check_inbound(&mut json, &SCHEMAS.rating_inbound, Action::Rating) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.message.is_empty(), "a refusal says why");
            return;
        }
    };
    assert_eq!(context.action, "rating");
    // The receiver relies on these having been checked.
    let sent_at = parse_timestamp(&context.timestamp).expect("checked by Context::from_value");
    for field in [&context.bap_id, &context.bpp_id, &context.message_id] {
        assert!(!field.trim().is_empty());
    }
    // The context rules: a context a public seller answers is one ONDC's checks pass (its
    // /on_rating echoes it); a seller on loopback refuses no more than a public one (but the
    // public seller's own bpp_uri, which only it takes).
    let public = context_problem(&context, &SELLERS[0]);
    let development = context_problem(&context, &SELLERS[3]);
    match &public {
        None => {
            let Ok(Value::Object(mut ctx)) = serde_json::to_value(&context) else {
                panic!("a context serialises to an object");
            };
            // The seller's own bpp_uri is taken wherever it is (start-up warns of one off its
            // domain); any other bpp_uri is held to the rule.
            let own_bpp_uri = is_own_bpp_uri(&context.bpp_uri, &SELLERS[0]);
            if own_bpp_uri {
                ctx.remove("bpp_uri");
            }
            let mut findings = Vec::new();
            rules::domain_retail(&ctx, &mut findings);
            rules::country_ind(&ctx, &mut findings);
            rules::city_std(&ctx, &mut findings);
            rules::core_version(&ctx, &mut findings);
            rules::uri_on_id_domain(&ctx, &mut findings);
            assert!(findings.is_empty(), "{findings:?}");
            if !own_bpp_uri {
                assert_eq!(development, None);
            }
        }
        Some(e) => {
            assert!(e.path.starts_with("context.") && !e.message.is_empty());
            // The same field, or (the development seller taking a private uri the other one
            // refused) each a uri.
            if let Some(d) = &development {
                let uri = |path: &str| path.ends_with("_uri");
                assert!(
                    d.path == e.path || (uri(&d.path) && uri(&e.path)),
                    "{d} {e}"
                );
            }
        }
    }

    // The receiver's ttl and staleness arithmetic, at a few "now"s around the timestamp.
    let ttl = match context.ttl.as_deref().map(iso_duration_secs) {
        None => 30,
        Some(Some(t)) => {
            assert!(t >= 0);
            t
        }
        Some(None) => return,
    };
    for delta_ms in [-86_400_000, 0, 29_999, 86_400_000] {
        let now = sent_at + chrono::Duration::milliseconds(delta_ms);
        let _stale = (now - sent_at).num_seconds() > ttl;
        let _left_ms = ttl
            .saturating_mul(1000)
            .saturating_sub((now - sent_at).num_milliseconds())
            .max(0) as u64;
    }

    let ratings = match parse_inbound(json.get("message")) {
        Ok(r) => r,
        Err(e) => {
            assert!(e.path.starts_with("message"), "{e}");
            return;
        }
    };
    assert!(!ratings.is_empty());
    for r in &ratings {
        assert!(!r.id.is_empty() && !r.value.is_empty() && !r.rating_category.is_empty());
        // A known category in any case is kept in its canonical spelling.
        if let Some(c) = RatingCategory::parse(&r.rating_category) {
            assert_eq!(r.rating_category, c.as_str());
        }
    }
    let single =
        !matches!(json.get("message"), Some(Value::Object(m)) if m.contains_key("ratings"));
    for seller in SELLERS.iter() {
        let Some(error) = first_problem(&ratings, single, seller) else {
            continue;
        };
        // Only the seller-side business codes, with a path into the message.
        let code = BusinessCode::from_code(&error.code).expect("a business code");
        assert_ne!(
            code,
            BusinessCode::UnknownOrder,
            "only the platform says 30018"
        );
        assert!(error.kind.is_some() && error.message.is_some());
        let path = error.path.as_deref().expect("a path");
        if single {
            assert!(path.starts_with("message.") && !path.starts_with("message.ratings"));
        } else {
            assert!(path.starts_with("message.ratings["));
        }
    }

    // What the store keeps reads back the same (feedback_form aside: it is kept verbatim).
    let text = serde_json::to_string(&ratings).expect("ratings serialise");
    let back: Vec<ondc_rating::protocol::InboundRating> =
        serde_json::from_str(&text).expect("ratings read back");
    assert_eq!(back.len(), ratings.len());
    for (a, b) in back.iter().zip(&ratings) {
        assert_eq!(
            (&a.rating_category, &a.id, &a.value, &a.feedback_id),
            (&b.rating_category, &b.id, &b.value, &b.feedback_id)
        );
    }
});
