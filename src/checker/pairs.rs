//! Pairing each `/rating` with the `/on_rating` that answers it, and the rules on a pair.
//!
//! An `/on_rating` pairs with the `/rating` carrying the same message_id (retried deliveries
//! pair with it too). One that matches none pairs with a still unanswered `/rating` of the same
//! transaction_id, and then breaks `pair.message_id_echo`; one that matches neither is a
//! `pair.orphan`. A `/rating` nothing answers is `pair.unanswered`.

use serde_json::{Map, Value};

use super::rules::text;
use super::*;
use crate::clock::parse_timestamp;

/// What the pairing needs of one payload.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// `rating`, `on_rating` or unknown (then it takes no part).
    pub action: Option<Action>,
    /// The context, when it is an object.
    pub context: Option<&'a Map<String, Value>>,
}

/// The pairs, and the findings on single payloads (`pair.orphan`, `pair.unanswered`) by index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairing {
    /// Every pair found, with its findings.
    pub pairs: Vec<PairReport>,
    /// `(payload index, finding)`.
    pub single: Vec<(usize, Finding)>,
}

/// Fast callbacks arrive within this many milliseconds.
pub const FAST_MILLIS: i64 = 5_000;

/// Pairs the entries and checks every pair.
pub fn pair_up(entries: &[Entry<'_>]) -> Pairing {
    let field = |i: usize, key: &str| entries[i].context.and_then(|c| text(c, key));
    let of = |action: Action| -> Vec<usize> {
        (0..entries.len())
            .filter(|&i| entries[i].action == Some(action))
            .collect()
    };
    let (ratings, on_ratings) = (of(Action::Rating), of(Action::OnRating));
    let mut answered = vec![false; entries.len()];
    let mut matched: Vec<(usize, usize, bool)> = Vec::new();
    let mut unmatched = Vec::new();
    for &o in &on_ratings {
        let by_id = field(o, "message_id").and_then(|id| {
            ratings
                .iter()
                .find(|&&r| field(r, "message_id") == Some(id))
        });
        match by_id {
            Some(&r) => {
                answered[r] = true;
                matched.push((r, o, true));
            }
            None => unmatched.push(o),
        }
    }
    // Mark every /rating sharing a matched message_id (a retried /rating) as answered.
    for &r in &ratings {
        if let Some(id) = field(r, "message_id")
            && matched
                .iter()
                .any(|&(m, _, _)| field(m, "message_id") == Some(id))
        {
            answered[r] = true;
        }
    }
    let mut single = Vec::new();
    for o in unmatched {
        let by_txn = field(o, "transaction_id").and_then(|t| {
            ratings
                .iter()
                .find(|&&r| !answered[r] && field(r, "transaction_id") == Some(t))
        });
        match by_txn {
            Some(&r) => {
                answered[r] = true;
                matched.push((r, o, false));
            }
            None => single.push((
                o,
                Finding::new(
                    &PAIR_ORPHAN,
                    "context.message_id",
                    match field(o, "message_id") {
                        Some(id) => format!("no /rating in the input has message_id {id:?}"),
                        None => "no /rating in the input answers it".to_owned(),
                    },
                ),
            )),
        }
    }
    for &r in &ratings {
        if !answered[r] {
            single.push((
                r,
                Finding::new(
                    &PAIR_UNANSWERED,
                    "context.message_id",
                    "no /on_rating in the input answers it",
                ),
            ));
        }
    }
    matched.sort_unstable();
    let pairs = matched
        .into_iter()
        .map(|(r, o, by_id)| {
            let empty = Map::new();
            let rc = entries[r].context.unwrap_or(&empty);
            let oc = entries[o].context.unwrap_or(&empty);
            PairReport {
                rating: r,
                on_rating: o,
                message_id: text(rc, "message_id").unwrap_or("-").to_owned(),
                findings: check_pair(rc, oc, by_id),
            }
        })
        .collect();
    single.sort_by_key(|(i, _)| *i);
    Pairing { pairs, single }
}

/// The pair rules for a `/rating` context and its `/on_rating` context. `by_message_id` says
/// how they were paired (by transaction_id otherwise).
pub fn check_pair(
    rating: &Map<String, Value>,
    on_rating: &Map<String, Value>,
    by_message_id: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let differs = |key: &str| match (text(rating, key), text(on_rating, key)) {
        (Some(a), Some(b)) if a != b => Some((a, b)),
        _ => None,
    };
    let echo = |rule: &Rule, key: &str, out: &mut Vec<Finding>| {
        if let Some((want, got)) = differs(key) {
            out.push(Finding::new(
                rule,
                format!("context.{key}"),
                format!("is {got:?}; the /rating has {want:?}"),
            ));
        }
    };
    if !by_message_id {
        echo(&PAIR_MESSAGE_ID_ECHO, "message_id", &mut out);
    }
    echo(&PAIR_TRANSACTION_SAME, "transaction_id", &mut out);
    let stamp = |c| text(c, "timestamp").and_then(parse_timestamp);
    if let (Some(sent), Some(back)) = (stamp(rating), stamp(on_rating)) {
        let millis = (back - sent).num_milliseconds();
        if millis <= 0 {
            out.push(Finding::new(
                &PAIR_TIMESTAMP_LATER,
                "context.timestamp",
                format!(
                    "{} is not later than the /rating's {}; a callback is stamped strictly later",
                    text(on_rating, "timestamp").unwrap_or_default(),
                    text(rating, "timestamp").unwrap_or_default()
                ),
            ));
        } else if millis > FAST_MILLIS {
            out.push(Finding::new(
                &PAIR_FAST,
                "context.timestamp",
                format!(
                    "stamped {}.{:03} s after the /rating; aim under 5 s",
                    millis / 1000,
                    millis % 1000
                ),
            ));
        }
    }
    for key in ["domain", "city"] {
        echo(&PAIR_SAME_DOMAIN_CITY, key, &mut out);
    }
    for key in ["bap_id", "bap_uri", "bpp_id", "bpp_uri"] {
        echo(&PAIR_SAME_PARTICIPANTS, key, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(action: &str, message_id: &str, timestamp: &str) -> Value {
        json!({
            "domain": "ONDC:RET11", "country": "IND", "city": "std:080", "action": action,
            "core_version": "1.2.0", "bap_id": "buyer.example.com",
            "bap_uri": "https://buyer.example.com/bap", "bpp_id": "seller.example.com",
            "bpp_uri": "https://seller.example.com/bpp", "transaction_id": "t-1",
            "message_id": message_id, "timestamp": timestamp, "ttl": "PT30S"
        })
    }

    const T0: &str = "2026-01-01T10:00:00.000Z";
    const T1: &str = "2026-01-01T10:00:01.000Z";

    fn run(contexts: &[Value]) -> Pairing {
        let entries: Vec<Entry<'_>> = contexts
            .iter()
            .map(|c| Entry {
                action: c["action"]
                    .as_str()
                    .and_then(super::super::rules::parse_action),
                context: c.as_object(),
            })
            .collect();
        pair_up(&entries)
    }

    fn pair_rules(p: &Pairing) -> Vec<&'static str> {
        p.pairs
            .iter()
            .flat_map(|p| &p.findings)
            .map(|f| f.rule)
            .collect()
    }

    fn on_rating_with(key: &str, value: &str) -> Pairing {
        let mut o = ctx("on_rating", "m-1", T1);
        o[key] = json!(value);
        run(&[ctx("rating", "m-1", T0), o])
    }

    #[test]
    fn a_clean_pair() {
        let p = run(&[ctx("rating", "m-1", T0), ctx("on_rating", "m-1", T1)]);
        assert_eq!(p.pairs.len(), 1);
        assert_eq!((p.pairs[0].rating, p.pairs[0].on_rating), (0, 1));
        assert_eq!(p.pairs[0].message_id, "m-1");
        assert!(
            p.pairs[0].findings.is_empty() && p.single.is_empty(),
            "{p:?}"
        );
    }

    #[test]
    fn message_id_echo_when_paired_by_transaction() {
        let p = run(&[ctx("rating", "m-1", T0), ctx("on_rating", "m-2", T1)]);
        assert_eq!(pair_rules(&p), ["pair.message_id_echo"]);
        assert!(p.single.is_empty());
        assert_eq!(p.pairs[0].findings[0].path, "context.message_id");
    }

    #[test]
    fn transaction_same() {
        let p = on_rating_with("transaction_id", "t-2");
        assert_eq!(pair_rules(&p), ["pair.transaction_same"]);
    }

    #[test]
    fn timestamp_later_and_fast() {
        assert_eq!(
            pair_rules(&on_rating_with("timestamp", T0)),
            ["pair.timestamp_later"]
        );
        assert_eq!(
            pair_rules(&on_rating_with("timestamp", "2026-01-01T09:59:59.000Z")),
            ["pair.timestamp_later"]
        );
        assert!(pair_rules(&on_rating_with("timestamp", "2026-01-01T10:00:00.001Z")).is_empty());
        assert!(pair_rules(&on_rating_with("timestamp", "2026-01-01T10:00:05.000Z")).is_empty());
        let p = on_rating_with("timestamp", "2026-01-01T10:00:05.001Z");
        assert_eq!(pair_rules(&p), ["pair.fast"]);
        assert_eq!(p.pairs[0].findings[0].severity, Severity::Warning);
        assert!(p.pairs[0].findings[0].message.contains("5.001 s"));
        // Unparseable timestamps are timestamp.format's business.
        assert!(pair_rules(&on_rating_with("timestamp", "soon")).is_empty());
    }

    #[test]
    fn same_domain_city_and_participants() {
        assert_eq!(
            pair_rules(&on_rating_with("city", "std:011")),
            ["pair.same_domain_city"]
        );
        assert_eq!(
            pair_rules(&on_rating_with("domain", "ONDC:RET10")),
            ["pair.same_domain_city"]
        );
        for key in ["bap_id", "bap_uri", "bpp_id", "bpp_uri"] {
            let p = on_rating_with(key, "other.example.com");
            assert_eq!(pair_rules(&p), ["pair.same_participants"], "{key}");
            assert_eq!(p.pairs[0].findings[0].path, format!("context.{key}"));
        }
    }

    #[test]
    fn orphans_and_unanswered() {
        let mut other = ctx("on_rating", "m-9", T1);
        other["transaction_id"] = json!("t-9");
        let p = run(&[ctx("rating", "m-1", T0), other]);
        assert!(p.pairs.is_empty());
        let got: Vec<_> = p.single.iter().map(|(i, f)| (*i, f.rule)).collect();
        assert_eq!(got, [(0, "pair.unanswered"), (1, "pair.orphan")]);
        assert!(
            p.single
                .iter()
                .all(|(_, f)| f.severity == Severity::Warning)
        );
    }

    #[test]
    fn retries_pair_with_the_same_rating_and_unknown_actions_take_no_part() {
        let p = run(&[
            ctx("rating", "m-1", T0),
            ctx("rating", "m-1", T0),
            ctx("on_rating", "m-1", T1),
            ctx("on_rating", "m-1", T1),
            ctx("search", "m-1", T1),
        ]);
        let got: Vec<_> = p.pairs.iter().map(|p| (p.rating, p.on_rating)).collect();
        assert_eq!(got, [(0, 2), (0, 3)]);
        assert!(p.single.is_empty(), "{p:?}");
    }

    #[test]
    fn a_transaction_fallback_takes_an_unanswered_rating_only() {
        let p = run(&[
            ctx("rating", "m-1", T0),
            ctx("on_rating", "m-1", T1),
            ctx("on_rating", "m-2", T1),
        ]);
        assert_eq!(p.pairs.len(), 1);
        assert_eq!(p.single.len(), 1);
        assert_eq!((p.single[0].0, p.single[0].1.rule), (2, "pair.orphan"));
    }

    #[test]
    fn missing_contexts_do_not_panic() {
        let entries = [
            Entry {
                action: Some(Action::Rating),
                context: None,
            },
            Entry {
                action: Some(Action::OnRating),
                context: None,
            },
        ];
        let p = pair_up(&entries);
        assert!(p.pairs.is_empty());
        assert_eq!(p.single.len(), 2);
    }
}
