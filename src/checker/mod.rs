//! `ondc-rating check`: conformance checks for captured `/rating` and `/on_rating` traffic.
//!
//! ONDC's log-validation utility has no rules for the rating exchange. This module applies the
//! checks of PROTOCOL.md section 5 and the rating rules of section 3 to captured payloads: each
//! payload on its own ([`rules`]), then each `/rating` with the `/on_rating` that answers it
//! ([`pairs`]). [`input`] reads what was captured: one payload per file, a JSON array of payloads,
//! NDJSON, or traffic records (see [`input`] for the record format).
//!
//! Every rule has a stable id and a severity ([`RULES`]). Everything here is pure (no clock, no
//! network, no files outside [`input`]) and no JSON value makes it panic.

pub mod input;
pub mod pairs;
pub mod rules;

use serde::Serialize;
use serde_json::{Value, json};

use crate::protocol::Action;

/// How bad a finding is: errors fail the check (exit 1), warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Breaks a rule ONDC's checks apply.
    Error,
    /// Worth a look, allowed.
    Warning,
}

impl Severity {
    /// `ERROR` or `WARNING`, as printed.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
        }
    }
}

/// One rule: a stable id, its severity and what it requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, e.g. `ttl.pt30s`.
    pub id: &'static str,
    /// Severity of every finding under this rule.
    pub severity: Severity,
    /// What the rule requires, one line.
    pub summary: &'static str,
}

const fn error(id: &'static str, summary: &'static str) -> Rule {
    Rule {
        id,
        severity: Severity::Error,
        summary,
    }
}

const fn warning(id: &'static str, summary: &'static str) -> Rule {
    Rule {
        id,
        severity: Severity::Warning,
        summary,
    }
}

/// `context.present`.
pub const CONTEXT_PRESENT: Rule = error("context.present", "context is a non-empty object");
/// `context.fields`.
pub const CONTEXT_FIELDS: Rule = error(
    "context.fields",
    "every context field (domain, country, city, action, core_version, bap_id, bap_uri, bpp_id, \
     bpp_uri, transaction_id, message_id, timestamp) is a non-empty string",
);
/// `context.action`.
pub const CONTEXT_ACTION: Rule = error(
    "context.action",
    "action is rating or on_rating, and the endpoint's action when the record names one",
);
/// `country.ind`.
pub const COUNTRY_IND: Rule = error("country.ind", "country is IND");
/// `core_version`.
pub const CORE_VERSION: Rule = error("core_version", "core_version is 1.2.0");
/// `timestamp.format`.
pub const TIMESTAMP_FORMAT: Rule = error(
    "timestamp.format",
    "timestamp is exactly YYYY-MM-DDTHH:MM:SS.sssZ and a real instant",
);
/// `ttl.pt30s`.
pub const TTL_PT30S: Rule = error("ttl.pt30s", "ttl is present and exactly PT30S");
/// `ids.distinct`.
pub const IDS_DISTINCT: Rule = error("ids.distinct", "transaction_id differs from message_id");
/// `ids.not_url`.
pub const IDS_NOT_URL: Rule = error(
    "ids.not_url",
    "bap_id and bpp_id are subscriber ids, not URLs",
);
/// `uri.on_id_domain`.
pub const URI_ON_ID_DOMAIN: Rule = error(
    "uri.on_id_domain",
    "bap_uri and bpp_uri are http(s) URLs whose host is the domain part of bap_id / bpp_id or a \
     subdomain of it",
);
/// `domain.retail`.
pub const DOMAIN_RETAIL: Rule = error(
    "domain.retail",
    "domain is ONDC:RET10..ONDC:RET19 or ONDC:RET1A",
);
/// `city.std`.
pub const CITY_STD: Rule = error("city.std", "city is std:<digits>, never *");
/// `message.present`.
pub const MESSAGE_PRESENT: Rule = error("message.present", "message is a non-empty object");
/// `message_id.uuid`.
pub const MESSAGE_ID_UUID: Rule = error(
    "message_id.uuid",
    "a /rating's message_id is a hyphenated UUID version 4",
);
/// `no_nulls`.
pub const NO_NULLS: Rule = error(
    "no_nulls",
    "no JSON null anywhere: absent fields are omitted",
);
/// `rating.shape`.
pub const RATING_SHAPE: Rule = error(
    "rating.shape",
    "a /rating message is {\"ratings\":[...]}, a non-empty array of objects",
);
/// `rating.categories`.
pub const RATING_CATEGORIES: Rule = error(
    "rating.categories",
    "rating_category is Order, Provider, Item, Fulfillment or Agent, PascalCase",
);
/// `rating.value`.
pub const RATING_VALUE: Rule = error("rating.value", "value is one of the strings \"1\"..\"5\"");
/// `rating.ids`.
pub const RATING_IDS: Rule = error("rating.ids", "every rating has a non-empty string id");
/// `rating.order_once`.
pub const RATING_ORDER_ONCE: Rule =
    error("rating.order_once", "at most one Order rating per /rating");
/// `on_rating.form`.
pub const ON_RATING_FORM: Rule = error(
    "on_rating.form",
    "a feedback_form has form.url (http(s)), form.mime_type (text/html or application/xml) and \
     form.data",
);
/// `on_rating.refusal`.
pub const ON_RATING_REFUSAL: Rule = warning(
    "on_rating.refusal",
    "a refusal says so both ways: rating_ack false comes with an error block saying why, and an \
     error block with rating_ack false",
);
/// `pair.message_id_echo`.
pub const PAIR_MESSAGE_ID_ECHO: Rule = error(
    "pair.message_id_echo",
    "the /on_rating echoes the /rating's message_id",
);
/// `pair.transaction_same`.
pub const PAIR_TRANSACTION_SAME: Rule = error(
    "pair.transaction_same",
    "the /on_rating carries the /rating's transaction_id",
);
/// `pair.timestamp_later`.
pub const PAIR_TIMESTAMP_LATER: Rule = error(
    "pair.timestamp_later",
    "the /on_rating's timestamp is strictly later than the /rating's",
);
/// `pair.fast`.
pub const PAIR_FAST: Rule = warning(
    "pair.fast",
    "the /on_rating is stamped within 5 s of the /rating",
);
/// `pair.same_domain_city`.
pub const PAIR_SAME_DOMAIN_CITY: Rule = error(
    "pair.same_domain_city",
    "domain and city are the same on both",
);
/// `pair.same_participants`.
pub const PAIR_SAME_PARTICIPANTS: Rule = error(
    "pair.same_participants",
    "bap_id, bap_uri, bpp_id and bpp_uri are the same on both",
);
/// `pair.orphan`.
pub const PAIR_ORPHAN: Rule = warning(
    "pair.orphan",
    "an /on_rating answers a /rating present in the input",
);
/// `pair.unanswered`.
pub const PAIR_UNANSWERED: Rule = warning(
    "pair.unanswered",
    "a /rating has its /on_rating in the input",
);

/// Every rule the checker applies, in report order.
pub const RULES: &[Rule] = &[
    CONTEXT_PRESENT,
    CONTEXT_FIELDS,
    CONTEXT_ACTION,
    COUNTRY_IND,
    CORE_VERSION,
    TIMESTAMP_FORMAT,
    TTL_PT30S,
    IDS_DISTINCT,
    IDS_NOT_URL,
    URI_ON_ID_DOMAIN,
    DOMAIN_RETAIL,
    CITY_STD,
    MESSAGE_PRESENT,
    MESSAGE_ID_UUID,
    NO_NULLS,
    RATING_SHAPE,
    RATING_CATEGORIES,
    RATING_VALUE,
    RATING_IDS,
    RATING_ORDER_ONCE,
    ON_RATING_FORM,
    ON_RATING_REFUSAL,
    PAIR_MESSAGE_ID_ECHO,
    PAIR_TRANSACTION_SAME,
    PAIR_TIMESTAMP_LATER,
    PAIR_FAST,
    PAIR_SAME_DOMAIN_CITY,
    PAIR_SAME_PARTICIPANTS,
    PAIR_ORPHAN,
    PAIR_UNANSWERED,
];

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// One rule broken by one payload or pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Rule id.
    pub rule: &'static str,
    /// The rule's severity.
    pub severity: Severity,
    /// JSON path in the payload, e.g. `context.ttl` or `message.ratings[2].value`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Finding {
    /// A finding under `rule`.
    pub fn new(rule: &Rule, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            rule: rule.id,
            severity: rule.severity,
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Which way a recorded payload went, seen from the participant that recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// This participant sent it.
    Sent,
    /// This participant received it.
    Received,
}

/// What a traffic record says about its payload (see [`input`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// When it was recorded, as written.
    pub recorded_at: Option<String>,
    /// Sent or received.
    pub direction: Direction,
    /// The endpoint: `rating` or `on_rating`.
    pub action: Action,
    /// The URL it was posted to.
    pub url: Option<String>,
}

/// A value and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The file as named on the command line (or any label).
    pub file: String,
    /// Position of the payload in its file, from 0.
    pub index: usize,
    /// Line it starts on, when known (NDJSON).
    pub line: Option<usize>,
    /// The record wrapping it, when it came as a traffic record.
    pub record: Option<RecordMeta>,
    /// The payload.
    pub value: T,
}

impl<T> Located<T> {
    /// A bare payload at `file:index`.
    pub fn new(file: impl Into<String>, index: usize, value: T) -> Self {
        Self {
            file: file.into(),
            index,
            line: None,
            record: None,
            value,
        }
    }

    /// `file:index`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.index)
    }
}

/// What was found in one payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadReport {
    /// `file:index`.
    pub location: String,
    /// The file.
    pub file: String,
    /// Position in the file.
    pub index: usize,
    /// Line, when known.
    pub line: Option<usize>,
    /// From the record, when there was one.
    pub direction: Option<Direction>,
    /// `rating` or `on_rating`, when known.
    pub action: Option<Action>,
    /// `context.message_id`, when it is a string.
    pub message_id: Option<String>,
    /// Findings on this payload alone, then `pair.orphan` / `pair.unanswered`.
    pub findings: Vec<Finding>,
}

/// A `/rating` and the `/on_rating` paired with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairReport {
    /// Index of the `/rating` in [`Report::payloads`].
    pub rating: usize,
    /// Index of the `/on_rating` in [`Report::payloads`].
    pub on_rating: usize,
    /// The `/rating`'s message_id.
    pub message_id: String,
    /// Findings on the pair; paths are in the `/on_rating`.
    pub findings: Vec<Finding>,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// One per payload, in input order.
    pub payloads: Vec<PayloadReport>,
    /// One per pair, ordered by `/rating` then `/on_rating`.
    pub pairs: Vec<PairReport>,
}

/// Checks every payload, then pairs them.
pub fn check_payloads(payloads: &[Located<Value>]) -> Report {
    let mut reports = Vec::with_capacity(payloads.len());
    for p in payloads {
        let endpoint = p.record.as_ref().map(|r| r.action);
        let checked = rules::check_payload(&p.value, endpoint);
        reports.push(PayloadReport {
            location: p.location(),
            file: p.file.clone(),
            index: p.index,
            line: p.line,
            direction: p.record.as_ref().map(|r| r.direction),
            action: checked.action,
            message_id: checked.message_id,
            findings: checked.findings,
        });
    }
    let entries: Vec<pairs::Entry<'_>> = payloads
        .iter()
        .zip(&reports)
        .map(|(p, r)| pairs::Entry {
            action: r.action,
            context: p.value.get("context").and_then(Value::as_object),
        })
        .collect();
    let pairing = pairs::pair_up(&entries);
    for (i, finding) in pairing.single {
        if let Some(r) = reports.get_mut(i) {
            r.findings.push(finding);
        }
    }
    Report {
        payloads: reports,
        pairs: pairing.pairs,
    }
}

impl Report {
    fn all_findings(&self) -> impl Iterator<Item = &Finding> {
        self.payloads
            .iter()
            .flat_map(|p| &p.findings)
            .chain(self.pairs.iter().flat_map(|p| &p.findings))
    }

    fn count(&self, severity: Severity) -> usize {
        self.all_findings()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Number of error findings.
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    /// Number of warning findings.
    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    /// 0 when there is no error (warnings allowed), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.errors() > 0)
    }

    fn location_of(&self, payload: usize) -> &str {
        self.payloads
            .get(payload)
            .map(|p| p.location.as_str())
            .unwrap_or("?")
    }

    /// The human-readable report: a line per payload and per pair with their findings, then
    /// `N payloads, N pairs: N errors, N warnings`.
    pub fn render_text(&self) -> String {
        fn findings(out: &mut String, list: &[Finding]) {
            for f in list {
                out.push_str(&format!(
                    "  {} {}: {} (at {})\n",
                    f.severity.label(),
                    f.rule,
                    f.message,
                    f.path
                ));
            }
        }
        let mut out = String::new();
        for p in &self.payloads {
            out.push_str(&format!(
                "{}  {}  {}{}\n",
                p.location,
                p.action.map(Action::as_str).unwrap_or("?"),
                p.message_id.as_deref().unwrap_or("-"),
                if p.findings.is_empty() { "  ok" } else { "" }
            ));
            findings(&mut out, &p.findings);
        }
        for pair in &self.pairs {
            out.push_str(&format!(
                "pair {} -> {}  {}{}\n",
                self.location_of(pair.rating),
                self.location_of(pair.on_rating),
                pair.message_id,
                if pair.findings.is_empty() { "  ok" } else { "" }
            ));
            findings(&mut out, &pair.findings);
        }
        out.push_str(&format!(
            "{} payloads, {} pairs: {} errors, {} warnings\n",
            self.payloads.len(),
            self.pairs.len(),
            self.errors(),
            self.warnings()
        ));
        out
    }

    /// The report as one JSON object: `summary`, `payloads`, `pairs` and every finding with its
    /// `location` (`file:index`; for pair rules the `/on_rating`'s, with `pair` its index).
    pub fn to_json(&self) -> Value {
        let count = |list: &[Finding], s: Severity| list.iter().filter(|f| f.severity == s).count();
        let mut findings = Vec::new();
        let payloads: Vec<Value> = self
            .payloads
            .iter()
            .map(|p| {
                let mut v = json!({
                    "location": p.location,
                    "file": p.file,
                    "index": p.index,
                    "errors": count(&p.findings, Severity::Error),
                    "warnings": count(&p.findings, Severity::Warning),
                });
                if let Some(line) = p.line {
                    v["line"] = json!(line);
                }
                if let Some(d) = p.direction {
                    v["direction"] = json!(d);
                }
                if let Some(a) = p.action {
                    v["action"] = json!(a.as_str());
                }
                if let Some(m) = &p.message_id {
                    v["message_id"] = json!(m);
                }
                for f in &p.findings {
                    findings.push(finding_json(f, &p.location, None));
                }
                v
            })
            .collect();
        let pairs: Vec<Value> = self
            .pairs
            .iter()
            .enumerate()
            .map(|(i, pair)| {
                let at = self.location_of(pair.on_rating);
                for f in &pair.findings {
                    findings.push(finding_json(f, at, Some(i)));
                }
                json!({
                    "rating": self.location_of(pair.rating),
                    "on_rating": at,
                    "message_id": pair.message_id,
                    "errors": count(&pair.findings, Severity::Error),
                    "warnings": count(&pair.findings, Severity::Warning),
                })
            })
            .collect();
        json!({
            "summary": {
                "payloads": self.payloads.len(),
                "pairs": self.pairs.len(),
                "errors": self.errors(),
                "warnings": self.warnings(),
            },
            "payloads": payloads,
            "pairs": pairs,
            "findings": findings,
        })
    }
}

fn finding_json(f: &Finding, location: &str, pair: Option<usize>) -> Value {
    let mut v = json!({
        "rule": f.rule,
        "severity": f.severity,
        "path": f.path,
        "message": f.message,
        "location": location,
    });
    if let Some(i) = pair {
        v["pair"] = json!(i);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn example(name: &str) -> Located<Value> {
        let path = format!("{}/fixtures/ondc/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        Located::new(name, 0, serde_json::from_str(&text).unwrap())
    }

    fn ids(list: &[Finding]) -> Vec<&'static str> {
        list.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn rule_ids_are_unique_and_findable() {
        let mut seen = std::collections::HashSet::new();
        for r in RULES {
            assert!(seen.insert(r.id), "{} twice", r.id);
            assert_eq!(rule(r.id), Some(r));
        }
        assert_eq!(rule("nope"), None);
    }

    #[test]
    fn the_ondc_examples_pair_up_and_the_mock_variant_breaks_ttl_and_form() {
        let report = check_payloads(&[
            example("rating.ret11.json"),
            example("on_rating.ret11.json"),
            example("on_rating.mock-seller-variant.json"),
        ]);
        assert_eq!(report.pairs.len(), 1);
        assert_eq!((report.pairs[0].rating, report.pairs[0].on_rating), (0, 1));
        assert!(report.pairs[0].findings.is_empty(), "{report:?}");
        assert!(report.payloads[0].findings.is_empty(), "{report:?}");
        assert!(report.payloads[1].findings.is_empty(), "{report:?}");
        assert_eq!(
            ids(&report.payloads[2].findings),
            ["ttl.pt30s", "on_rating.form", "pair.orphan"]
        );
        assert_eq!((report.errors(), report.warnings()), (2, 1));
        assert_eq!(report.exit_code(), 1);
    }

    #[test]
    fn text_and_json_reports_carry_every_finding() {
        let report = check_payloads(&[
            example("rating.ret11.json"),
            example("on_rating.ret11.json"),
            example("on_rating.mock-seller-variant.json"),
        ]);
        let text = report.render_text();
        assert!(
            text.contains(
                "rating.ret11.json:0  rating  6f1c2b1e-0d7a-4e55-9a0e-2f8f3b0c9a11  ok\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  ERROR ttl.pt30s: is missing; must be \"PT30S\" (at context.ttl)\n"),
            "{text}"
        );
        assert!(text.contains("  WARNING pair.orphan: "), "{text}");
        assert!(
            text.contains("pair rating.ret11.json:0 -> on_rating.ret11.json:0  6f1c2b1e"),
            "{text}"
        );
        assert!(
            text.ends_with("3 payloads, 1 pairs: 2 errors, 1 warnings\n"),
            "{text}"
        );

        let v = report.to_json();
        assert_eq!(v["summary"]["errors"], 2);
        assert_eq!(v["findings"].as_array().unwrap().len(), 3);
        assert_eq!(v["findings"][0]["rule"], "ttl.pt30s");
        assert_eq!(v["findings"][0]["severity"], "error");
        assert_eq!(v["findings"][0]["path"], "context.ttl");
        assert_eq!(
            v["findings"][0]["location"],
            "on_rating.mock-seller-variant.json:0"
        );
        assert_eq!(v["pairs"][0]["on_rating"], "on_rating.ret11.json:0");
        assert_eq!(v["payloads"][0]["action"], "rating");
        assert!(!v.to_string().contains("null"));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-zA-Z0-9:./_ -]{0,12}".prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            Just(Value::from("2024-05-15T08:00:00.000Z")),
            Just(Value::from("PT30S")),
            Just(Value::from("rating")),
            Just(Value::from("on_rating")),
            Just(Value::from("Order")),
            Just(Value::from("https://a.example/x")),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop_oneof![
                Just("context".to_owned()),
                Just("message".to_owned()),
                Just("ratings".to_owned()),
                Just("rating_category".to_owned()),
                Just("value".to_owned()),
                Just("id".to_owned()),
                Just("feedback_form".to_owned()),
                Just("form".to_owned()),
                Just("url".to_owned()),
                Just("mime_type".to_owned()),
                Just("action".to_owned()),
                Just("message_id".to_owned()),
                Just("transaction_id".to_owned()),
                Just("timestamp".to_owned()),
                Just("bap_id".to_owned()),
                Just("bap_uri".to_owned()),
                Just("body".to_owned()),
                Just("payload".to_owned()),
                any::<String>(),
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics_the_checker(values in prop::collection::vec(json_value(), 0..5)) {
            let located: Vec<_> = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| Located::new("p", i, v))
                .collect();
            let report = check_payloads(&located);
            let _ = report.render_text();
            let _ = report.to_json();
            prop_assert_eq!(report.payloads.len(), located.len());
        }

        #[test]
        fn mutated_examples_never_panic_the_checker(
            field in "[a-z_]{1,14}",
            replacement in json_value(),
        ) {
            let mut rating = example("rating.ret11.json");
            let mut on_rating = example("on_rating.ret11.json");
            rating.value["context"][&field] = replacement.clone();
            on_rating.value["message"][&field] = replacement.clone();
            if let Some(r) = rating.value.pointer_mut("/message/ratings/0") {
                r[&field] = replacement;
            }
            let report = check_payloads(&[rating, on_rating]);
            let _ = report.render_text();
            let _ = report.to_json();
        }
    }
}
