//! The rules one payload is checked against on its own. Each rule reports only what is its own:
//! a missing or non-string context field is `context.fields`, and the format rules then skip it;
//! a missing ttl is `ttl.pt30s` alone.

use serde_json::{Map, Value};

use super::*;
use crate::clock::parse_timestamp;
use crate::protocol::context::looks_like_url;
use crate::protocol::{COUNTRY, RATING_TTL, RatingCategory};

/// The context fields that must be non-empty strings (`ttl` has its own rule).
pub const CONTEXT_FIELD_NAMES: [&str; 12] = [
    "domain",
    "country",
    "city",
    "action",
    "core_version",
    "bap_id",
    "bap_uri",
    "bpp_id",
    "bpp_uri",
    "transaction_id",
    "message_id",
    "timestamp",
];

/// What checking one payload gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The record's endpoint, else `context.action` when it is rating or on_rating.
    pub action: Option<Action>,
    /// `context.message_id` when it is a string.
    pub message_id: Option<String>,
    /// Findings, in rule order.
    pub findings: Vec<Finding>,
}

/// Checks one payload. `endpoint` is the action of the endpoint it was posted to, when known
/// (from a traffic record).
pub fn check_payload(payload: &Value, endpoint: Option<Action>) -> Checked {
    let mut out = Vec::new();
    let context = context_present(payload, &mut out);
    let action = endpoint.or_else(|| {
        context
            .and_then(|c| text(c, "action"))
            .and_then(parse_action)
    });
    if let Some(ctx) = context {
        context_fields(ctx, &mut out);
        context_action(ctx, endpoint, &mut out);
        country_ind(ctx, &mut out);
        core_version(ctx, &mut out);
        timestamp_format(ctx, &mut out);
        ttl_pt30s(ctx, &mut out);
        ids_distinct(ctx, &mut out);
        ids_not_url(ctx, &mut out);
        uri_on_id_domain(ctx, &mut out);
        domain_retail(ctx, &mut out);
        city_std(ctx, &mut out);
    }
    let message = message_present(payload, &mut out);
    if let (Some(ctx), Some(Action::Rating)) = (context, action) {
        message_id_uuid(ctx, &mut out);
    }
    no_nulls(payload, &mut out);
    if let Some(m) = message {
        match action {
            Some(Action::Rating) => rating_message(m, &mut out),
            Some(Action::OnRating) => {
                on_rating_form(m, &mut out);
                on_rating_refusal(payload, m, &mut out);
            }
            None => {}
        }
    }
    out.sort_by_key(|f| RULES.iter().position(|r| r.id == f.rule));
    Checked {
        action,
        message_id: context
            .and_then(|c| c.get("message_id"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        findings: out,
    }
}

/// `rating` or `on_rating`.
pub fn parse_action(s: &str) -> Option<Action> {
    [Action::Rating, Action::OnRating]
        .into_iter()
        .find(|a| a.as_str() == s)
}

/// A context field when it is a non-blank string (otherwise `context.fields` reports it).
pub fn text<'a>(ctx: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    ctx.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Appends `key` to a JSON path: `a.b`, or `a["odd key"]` when the key is not a plain name.
pub fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain && path.is_empty() {
        key.to_owned()
    } else if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::from(key))
    }
}

fn non_empty_object<'a>(
    payload: &'a Value,
    key: &str,
    rule: &Rule,
    out: &mut Vec<Finding>,
) -> Option<&'a Map<String, Value>> {
    let problem = match payload.as_object().map(|o| o.get(key)) {
        None => format!("the payload is {}, not an object with {key}", kind(payload)),
        Some(None) => "is missing".to_owned(),
        Some(Some(Value::Object(m))) if !m.is_empty() => return Some(m),
        Some(Some(Value::Object(_))) => "must not be empty".to_owned(),
        Some(Some(v)) => format!("must be an object, found {}", kind(v)),
    };
    out.push(Finding::new(rule, key, problem));
    None
}

/// `context.present`: the context is a non-empty object.
pub fn context_present<'a>(
    payload: &'a Value,
    out: &mut Vec<Finding>,
) -> Option<&'a Map<String, Value>> {
    non_empty_object(payload, "context", &CONTEXT_PRESENT, out)
}

/// `message.present`: the message is a non-empty object.
pub fn message_present<'a>(
    payload: &'a Value,
    out: &mut Vec<Finding>,
) -> Option<&'a Map<String, Value>> {
    non_empty_object(payload, "message", &MESSAGE_PRESENT, out)
}

/// `context.fields`: every field but ttl is a non-empty string.
pub fn context_fields(ctx: &Map<String, Value>, out: &mut Vec<Finding>) {
    for name in CONTEXT_FIELD_NAMES {
        let problem = match ctx.get(name) {
            None => "is missing".to_owned(),
            Some(Value::String(s)) if s.trim().is_empty() => "must not be empty".to_owned(),
            Some(Value::String(_)) => continue,
            Some(v) => format!("must be a string, found {}", kind(v)),
        };
        out.push(Finding::new(
            &CONTEXT_FIELDS,
            format!("context.{name}"),
            problem,
        ));
    }
}

/// `context.action`: rating or on_rating, and the endpoint's when known.
pub fn context_action(ctx: &Map<String, Value>, endpoint: Option<Action>, out: &mut Vec<Finding>) {
    let Some(action) = text(ctx, "action") else {
        return;
    };
    match (parse_action(action), endpoint) {
        (None, _) => out.push(Finding::new(
            &CONTEXT_ACTION,
            "context.action",
            format!("must be \"rating\" or \"on_rating\", found {action:?}"),
        )),
        (Some(a), Some(e)) if a != e => out.push(Finding::new(
            &CONTEXT_ACTION,
            "context.action",
            format!(
                "is {action:?} but the payload went to /{}; it must be {:?}",
                e.as_str(),
                e.as_str()
            ),
        )),
        _ => {}
    }
}

fn exact(ctx: &Map<String, Value>, key: &str, want: &str, rule: &Rule, out: &mut Vec<Finding>) {
    if let Some(got) = text(ctx, key).filter(|got| *got != want) {
        out.push(Finding::new(
            rule,
            format!("context.{key}"),
            format!("must be {want:?}, found {got:?}"),
        ));
    }
}

/// `country.ind`.
pub fn country_ind(ctx: &Map<String, Value>, out: &mut Vec<Finding>) {
    exact(ctx, "country", COUNTRY, &COUNTRY_IND, out);
}

/// `core_version`.
pub fn core_version(ctx: &Map<String, Value>, out: &mut Vec<Finding>) {
    exact(
        ctx,
        "core_version",
        crate::protocol::CORE_VERSION,
        &CORE_VERSION,
        out,
    );
}

/// True for exactly `YYYY-MM-DDTHH:MM:SS.sssZ` naming a real instant.
pub fn is_ondc_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
        && parse_timestamp(s).is_some()
}

/// `timestamp.format`.
pub fn timestamp_format(ctx: &Map<String, Value>, out: &mut Vec<Finding>) {
    if let Some(t) = text(ctx, "timestamp").filter(|t| !is_ondc_timestamp(t)) {
        out.push(Finding::new(
            &TIMESTAMP_FORMAT,
            "context.timestamp",
            format!("must be YYYY-MM-DDTHH:MM:SS.sssZ (UTC, three fraction digits), found {t:?}"),
        ));
    }
}

/// `ttl.pt30s`: present and exactly PT30S.
pub fn ttl_pt30s(ctx: &Map<String, Value>, out: &mut Vec<Finding>) {
    let problem = match ctx.get("ttl") {
        None => format!("is missing; must be {RATING_TTL:?}"),
        Some(Value::String(s)) if s == RATING_TTL => return,
        Some(Value::String(s)) => format!("must be {RATING_TTL:?}, found {s:?}"),
        Some(v) => format!("must be the string {RATING_TTL:?}, found {}", kind(v)),
    };
    out.push(Finding::new(&TTL_PT30S, "context.ttl", problem));
}

/// `ids.distinct`: transaction_id != message_id.
pub fn ids_distinct(ctx: &Map<String, Value>, out: &mut Vec<Finding>) {
    if let (Some(t), Some(m)) = (text(ctx, "transaction_id"), text(ctx, "message_id"))
        && t == m
    {
        out.push(Finding::new(
            &IDS_DISTINCT,
            "context.message_id",
            format!("equals transaction_id {t:?}; each /rating needs a fresh message_id"),
        ));
    }
}

fn id_is_url(id: &str) -> bool {
    let lower = id.trim().to_ascii_lowercase();
    looks_like_url(id) || lower.starts_with("http:") || lower.starts_with("https:")
}

/// `ids.not_url`: bap_id and bpp_id are subscriber ids.
pub fn ids_not_url(ctx: &Map<String, Value>, out: &mut Vec<Finding>) {
    for key in ["bap_id", "bpp_id"] {
        if let Some(id) = text(ctx, key).filter(|id| id_is_url(id)) {
            out.push(Finding::new(
                &IDS_NOT_URL,
                format!("context.{key}"),
                format!(
                    "is a URL ({id:?}); subscriber ids are FQDN-like, e.g. \"seller.example.com\""
                ),
            ));
        }
    }
}

/// The host of an http(s) URL, lower case, without port or trailing dot.
pub fn url_host(uri: &str) -> Option<String> {
    let lower = uri.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let host = host.trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_owned())
}

/// The host a client connects to for `uri`, read as reqwest reads it (the WHATWG URL standard:
/// `http://a.example\@b.example/` goes to `a.example`): lower case, IPv6 without its brackets,
/// no trailing dot; `f` of it, or None unless an http(s) URL with a host. A plain URL's host is
/// read without the full parser (see [`plain_host`]), which the seller's checks of every /rating
/// rely on.
fn connect_host<R>(uri: &str, f: impl FnOnce(&str) -> R) -> Option<R> {
    let uri = uri.trim();
    match plain_host(uri) {
        Some(host) => Some(f(host)),
        None => parsed_host(uri).map(|host| f(&host)),
    }
}

/// [`connect_host`]'s host by the full WHATWG parser.
fn parsed_host(uri: &str) -> Option<String> {
    let url = reqwest::Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The host of an http(s) URL whose authority is plain, as the WHATWG parser reads it: a host of
/// lower-case letters, digits, hyphens and dots (no leading dot, no empty label, no `xn--` label,
/// and a last label that is not a number, which that parser reads as an IPv4 address unless the
/// whole host is a dotted quad), an optional port of up to five digits, then the end or `/`, `?`,
/// `#`. Without a trailing dot. None: any other URL, for the full parser.
fn plain_host(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let bad_port = |p: &str| {
        !(1..=5).contains(&p.len())
            || !p.bytes().all(|b| b.is_ascii_digit())
            || (p.len() == 5 && p > "65535")
    };
    if port.is_some_and(bad_port) {
        return None;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.';
    if host.is_empty() || !host.bytes().all(plain) {
        return None;
    }
    let labels = || host.split('.');
    if labels().any(|l| l.is_empty() || l.starts_with("xn--")) {
        return None;
    }
    let numeric = |l: &str| l.bytes().all(|b| b.is_ascii_digit()) || l.starts_with("0x");
    let last = labels().next_back().unwrap_or_default();
    if numeric(last) && host.parse::<std::net::Ipv4Addr>().is_err() {
        return None;
    }
    Some(host)
}

/// True when `uri` is an http(s) URL whose host no peer on the public network reaches: loopback
/// (`localhost` and names under it, `127.0.0.0/8`, `[::1]`), a private, link-local or unspecified
/// address (`10/8`, `172.16/12`, `192.168/16`, `169.254/16`, `0.0.0.0`, `fc00::/7`, `fe80::/10`),
/// a name of one label (a host or container name) or a name under `.local`, `.internal` or
/// `.home.arpa`. Such a uri is a development or test set-up's, the default configuration's.
pub fn is_private_uri(uri: &str) -> bool {
    connect_host(uri, is_private_host).unwrap_or(false)
}

fn is_private_host(host: &str) -> bool {
    use std::net::IpAddr;
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            a.is_loopback() || a.is_private() || a.is_link_local() || a.is_unspecified()
        }
        Ok(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
            Some(v4) => is_private_host(&v4.to_string()),
            None => {
                a.is_loopback()
                    || a.is_unspecified()
                    || a.is_unique_local()
                    || a.is_unicast_link_local()
            }
        },
        Err(_) => {
            !host.contains('.')
                || [".localhost", ".local", ".internal", ".home.arpa"]
                    .iter()
                    .any(|suffix| host.ends_with(suffix))
        }
    }
}

/// Whether `uri` is an http(s) URL whose host (the one a client connects to) is `id`'s domain
/// or a subdomain of it.
pub fn is_on_id_domain(uri: &str, id: &str) -> bool {
    let domain = id_domain(id);
    !domain.is_empty()
        && connect_host(uri, |host| {
            host.strip_suffix(&*domain)
                .is_some_and(|sub| sub.is_empty() || sub.ends_with('.'))
        })
        .unwrap_or(false)
}

/// Whether a peer's `uri` may be used for the peer `id` by a side whose own URI is `own_uri`: on
/// the id's domain, or, in a development set-up (`own_uri` off the public network), off the
/// public network too ([`is_private_uri`]).
pub fn is_peer_uri_acceptable(uri: &str, id: &str, own_uri: &str) -> bool {
    is_on_id_domain(uri, id) || (is_private_uri(own_uri) && is_private_uri(uri))
}

/// The domain part of a subscriber id (before any path), lower case; borrowed from `id` when it
/// is lower case already.
pub fn id_domain(id: &str) -> std::borrow::Cow<'_, str> {
    let domain = id
        .trim()
        .split('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches('.');
    if domain.bytes().any(|b| b.is_ascii_uppercase()) {
        domain.to_ascii_lowercase().into()
    } else {
        domain.into()
    }
}

/// `uri.on_id_domain`: each uri's host is its id's domain or a subdomain of it.
pub fn uri_on_id_domain(ctx: &Map<String, Value>, out: &mut Vec<Finding>) {
    for (id_key, uri_key) in [("bap_id", "bap_uri"), ("bpp_id", "bpp_uri")] {
        let (Some(id), Some(uri)) = (text(ctx, id_key), text(ctx, uri_key)) else {
            continue;
        };
        if id_is_url(id) {
            continue; // ids.not_url says it
        }
        if is_on_id_domain(uri, id) {
            continue;
        }
        let domain = id_domain(id);
        let problem = match url_host(uri) {
            None => format!("{uri:?} is not an http(s) URL with a host"),
            Some(_) if domain.is_empty() => format!("{id_key} {id:?} has no domain part"),
            Some(host) => format!(
                "host {host:?} is not on {id_key}'s domain {domain:?}; a uri must sit on its id's domain"
            ),
        };
        out.push(Finding::new(
            &URI_ON_ID_DOMAIN,
            format!("context.{uri_key}"),
            problem,
        ));
    }
}

/// True for `ONDC:RET10`..`ONDC:RET19` and `ONDC:RET1A`.
pub fn is_retail_domain(d: &str) -> bool {
    d.strip_prefix("ONDC:RET1")
        .is_some_and(|rest| rest.len() == 1 && rest.chars().all(|c| c.is_ascii_digit() || c == 'A'))
}

/// `domain.retail`.
pub fn domain_retail(ctx: &Map<String, Value>, out: &mut Vec<Finding>) {
    if let Some(d) = text(ctx, "domain").filter(|d| !is_retail_domain(d)) {
        out.push(Finding::new(
            &DOMAIN_RETAIL,
            "context.domain",
            format!("must be a retail domain ONDC:RET10..ONDC:RET19 or ONDC:RET1A, found {d:?}"),
        ));
    }
}

/// True for a city code `std:<digits>`.
pub fn is_std_city(city: &str) -> bool {
    city.strip_prefix("std:")
        .is_some_and(|code| !code.is_empty() && code.chars().all(|c| c.is_ascii_digit()))
}

/// `city.std`.
pub fn city_std(ctx: &Map<String, Value>, out: &mut Vec<Finding>) {
    let Some(city) = text(ctx, "city") else {
        return;
    };
    if !is_std_city(city) {
        out.push(Finding::new(
            &CITY_STD,
            "context.city",
            format!("must be a city code std:<digits>, never \"*\"; found {city:?}"),
        ));
    }
}

/// `message_id.uuid` (on /rating): a hyphenated UUID v4.
pub fn message_id_uuid(ctx: &Map<String, Value>, out: &mut Vec<Finding>) {
    let Some(id) = text(ctx, "message_id") else {
        return;
    };
    let ok = id.len() == 36
        && uuid::Uuid::parse_str(id)
            .is_ok_and(|u| u.get_version_num() == 4 && u.get_variant() == uuid::Variant::RFC4122);
    if !ok {
        out.push(Finding::new(
            &MESSAGE_ID_UUID,
            "context.message_id",
            format!(
                "must be a fresh UUID v4 (xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx), found {id:?}"
            ),
        ));
    }
}

/// `no_nulls`: one finding per JSON null, walking without recursion.
pub fn no_nulls(payload: &Value, out: &mut Vec<Finding>) {
    let mut stack: Vec<(String, &Value)> = vec![(String::new(), payload)];
    let mut found = Vec::new();
    while let Some((path, v)) = stack.pop() {
        match v {
            Value::Null => found.push(path),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push((format!("{path}[{i}]"), item));
                }
            }
            Value::Object(map) => {
                for (k, item) in map.iter().rev() {
                    stack.push((join(&path, k), item));
                }
            }
            _ => {}
        }
    }
    for path in found {
        out.push(Finding::new(
            &NO_NULLS,
            if path.is_empty() {
                "$".to_owned()
            } else {
                path
            },
            "is null; omit absent fields instead",
        ));
    }
}

/// The rating entries of a /rating message with their paths, reporting `rating.shape`.
fn rating_entries<'a>(
    m: &'a Map<String, Value>,
    out: &mut Vec<Finding>,
) -> Vec<(String, &'a Map<String, Value>)> {
    let mut entries = Vec::new();
    match m.get("ratings") {
        Some(Value::Array(list)) if list.is_empty() => out.push(Finding::new(
            &RATING_SHAPE,
            "message.ratings",
            "must not be empty",
        )),
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                let path = format!("message.ratings[{i}]");
                match item {
                    Value::Object(r) => entries.push((path, r)),
                    other => out.push(Finding::new(
                        &RATING_SHAPE,
                        path,
                        format!("must be an object, found {}", kind(other)),
                    )),
                }
            }
        }
        Some(other) => out.push(Finding::new(
            &RATING_SHAPE,
            "message.ratings",
            format!("must be an array, found {}", kind(other)),
        )),
        None if ["rating_category", "id", "value"]
            .iter()
            .any(|k| m.contains_key(*k)) =>
        {
            out.push(Finding::new(
                &RATING_SHAPE,
                "message",
                "is a single rating object; seller sides accept it, but the strict form is \
                 {\"ratings\":[...]}",
            ));
            entries.push(("message".to_owned(), m));
        }
        None => out.push(Finding::new(&RATING_SHAPE, "message.ratings", "is missing")),
    }
    entries
}

/// `rating.categories` for one entry; the category when it is a known one in any case.
fn rating_category(
    path: &str,
    r: &Map<String, Value>,
    out: &mut Vec<Finding>,
) -> Option<RatingCategory> {
    let at = format!("{path}.rating_category");
    let problem = match r.get("rating_category") {
        None => "is missing".to_owned(),
        Some(Value::String(s)) => match RatingCategory::parse(s) {
            Some(c) if c.as_str() == s => return Some(c),
            Some(c) => {
                out.push(Finding::new(
                    &RATING_CATEGORIES,
                    at,
                    format!(
                        "must be PascalCase {:?} when sending, found {s:?} (seller sides read any \
                         case; the strict form does not)",
                        c.as_str()
                    ),
                ));
                return Some(c);
            }
            None => {
                format!("unknown category {s:?}; one of Order, Provider, Item, Fulfillment, Agent")
            }
        },
        Some(v) => format!("must be a string, found {}", kind(v)),
    };
    out.push(Finding::new(&RATING_CATEGORIES, at, problem));
    None
}

/// `rating.value` for one entry.
fn rating_value(path: &str, r: &Map<String, Value>, out: &mut Vec<Finding>) {
    let problem = match r.get("value") {
        None => "is missing".to_owned(),
        Some(Value::String(s)) if ["1", "2", "3", "4", "5"].contains(&s.as_str()) => return,
        Some(Value::String(s)) => format!("must be one of \"1\"..\"5\", found {s:?}"),
        Some(Value::Number(n)) => {
            format!("must be a string \"1\"..\"5\", found the number {n}")
        }
        Some(v) => format!("must be a string \"1\"..\"5\", found {}", kind(v)),
    };
    out.push(Finding::new(
        &RATING_VALUE,
        format!("{path}.value"),
        problem,
    ));
}

/// `rating.ids` for one entry.
fn rating_id(path: &str, r: &Map<String, Value>, out: &mut Vec<Finding>) {
    let problem = match r.get("id") {
        None => "is missing".to_owned(),
        Some(Value::String(s)) if s.trim().is_empty() => "must not be empty".to_owned(),
        Some(Value::String(_)) => return,
        Some(v) => format!("must be a string, found {}", kind(v)),
    };
    out.push(Finding::new(&RATING_IDS, format!("{path}.id"), problem));
}

/// The /rating message rules: `rating.shape`, `rating.categories`, `rating.value`, `rating.ids`,
/// `rating.order_once`.
pub fn rating_message(m: &Map<String, Value>, out: &mut Vec<Finding>) {
    let mut first_order: Option<String> = None;
    for (path, r) in rating_entries(m, out) {
        let category = rating_category(&path, r, out);
        rating_value(&path, r, out);
        rating_id(&path, r, out);
        if category == Some(RatingCategory::Order) {
            match &first_order {
                None => first_order = Some(path),
                Some(first) => out.push(Finding::new(
                    &RATING_ORDER_ONCE,
                    format!("{path}.rating_category"),
                    format!(
                        "a second Order rating (the first is {first}); at most one per /rating"
                    ),
                )),
            }
        }
    }
}

/// `on_rating.refusal`: `rating_ack: false` ("the rating has not been recorded") with an error
/// block saying why, and an error block with `rating_ack: false`. A buyer side takes either alone
/// as a refusal, but one without the other leaves it guessing: at the reason, or at whether the
/// rating was recorded.
pub fn on_rating_refusal(payload: &Value, m: &Map<String, Value>, out: &mut Vec<Finding>) {
    let error = payload.get("error").filter(|e| !e.is_null());
    match (m.get("rating_ack"), error) {
        (Some(Value::Bool(false)), None) => out.push(Finding::new(
            &ON_RATING_REFUSAL,
            "error",
            "is missing: rating_ack is false, and no error block says why",
        )),
        (Some(Value::Bool(true)), Some(_)) => out.push(Finding::new(
            &ON_RATING_REFUSAL,
            "message.rating_ack",
            "is true beside an error block: a refusal says rating_ack false",
        )),
        _ => {}
    }
}

/// `on_rating.form`: a feedback form has an http(s) url, an accepted mime_type and data.
pub fn on_rating_form(m: &Map<String, Value>, out: &mut Vec<Finding>) {
    let mut report = |path: &str, problem: String| {
        out.push(Finding::new(
            &ON_RATING_FORM,
            format!("message.feedback_form{path}"),
            problem,
        ))
    };
    let form = match m.get("feedback_form") {
        None | Some(Value::Null) => return,
        Some(Value::Object(f)) => {
            if let Some(r) = f
                .get("required")
                .filter(|r| !r.is_boolean() && !r.is_null())
            {
                report(".required", format!("must be a boolean, found {}", kind(r)));
            }
            match f.get("form") {
                Some(Value::Object(form)) => form,
                None => return report(".form", "is missing".into()),
                Some(v) => return report(".form", format!("must be an object, found {}", kind(v))),
            }
        }
        Some(v) => return report("", format!("must be an object, found {}", kind(v))),
    };
    match form.get("url") {
        Some(Value::String(u)) if url_host(u).is_some() => {}
        Some(Value::String(u)) => {
            report(".form.url", format!("must be an http(s) URL, found {u:?}"))
        }
        None => report(".form.url", "is missing".into()),
        Some(v) => report(".form.url", format!("must be a string, found {}", kind(v))),
    }
    match form.get("mime_type") {
        Some(Value::String(t)) if t == "text/html" || t == "application/xml" => {}
        Some(Value::String(t)) => report(
            ".form.mime_type",
            format!("must be \"text/html\" or \"application/xml\", found {t:?}"),
        ),
        None => report(".form.mime_type", "is missing".into()),
        Some(v) => report(
            ".form.mime_type",
            format!("must be a string, found {}", kind(v)),
        ),
    }
    match form.get("data") {
        Some(Value::String(_)) => {}
        None => report(
            ".form.data",
            "is missing; ONDC's reference buyer layer refuses a form without url, mime_type and data"
                .into(),
        ),
        Some(v) => report(".form.data", format!("must be a string, found {}", kind(v))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rating() -> Value {
        json!({
            "context": {
                "domain": "ONDC:RET11", "country": "IND", "city": "std:080", "action": "rating",
                "core_version": "1.2.0", "bap_id": "buyer.example.com",
                "bap_uri": "https://buyer.example.com/bap", "bpp_id": "seller.example.com/ondc",
                "bpp_uri": "https://api.seller.example.com/ondc/bpp",
                "transaction_id": "7d3c1c58-3f36-4b0e-9d8b-2d1a52a7c0e1",
                "message_id": "0b6a8a51-8f0b-4f3c-bb0e-9d5c3f0c2e7a",
                "timestamp": "2026-01-01T10:00:00.000Z", "ttl": "PT30S"
            },
            "message": {"ratings": [
                {"rating_category": "Order", "id": "O1", "value": "5"},
                {"rating_category": "Item", "id": "I1", "value": "1"}
            ]}
        })
    }

    fn on_rating() -> Value {
        let mut v = rating();
        v["context"]["action"] = json!("on_rating");
        v["message"] = json!({"feedback_ack": true, "rating_ack": true,
            "feedback_form": {"form": {"url": "https://seller.example.com/f", "mime_type": "text/html", "data": "x"},
                "required": false}});
        v
    }

    fn rules_of(v: &Value) -> Vec<&'static str> {
        check_payload(v, None)
            .findings
            .iter()
            .map(|f| f.rule)
            .collect()
    }

    fn with(mut v: Value, pointer: &str, new: Value) -> Value {
        *v.pointer_mut(pointer).expect("pointer exists") = new;
        v
    }

    fn without(mut v: Value, pointer: &str) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap()
            .remove(key);
        v
    }

    fn only(v: &Value, rule: &str) -> Finding {
        let c = check_payload(v, None);
        assert_eq!(c.findings.len(), 1, "{:?}", c.findings);
        assert_eq!(c.findings[0].rule, rule, "{:?}", c.findings);
        c.findings[0].clone()
    }

    #[test]
    fn clean_payloads_have_no_findings() {
        assert_eq!(rules_of(&rating()), Vec::<&str>::new());
        assert_eq!(rules_of(&on_rating()), Vec::<&str>::new());
        let c = check_payload(&rating(), None);
        assert_eq!(c.action, Some(Action::Rating));
        assert_eq!(
            c.message_id.as_deref(),
            Some("0b6a8a51-8f0b-4f3c-bb0e-9d5c3f0c2e7a")
        );
    }

    #[test]
    fn context_present() {
        let f = only(&without(rating(), "/context"), "context.present");
        assert_eq!(
            (f.path.as_str(), f.message.as_str()),
            ("context", "is missing")
        );
        only(&with(rating(), "/context", json!({})), "context.present");
        only(&with(rating(), "/context", json!("x")), "context.present");
        let c = check_payload(&json!(42), None);
        assert_eq!(
            c.findings.iter().map(|f| f.rule).collect::<Vec<_>>(),
            ["context.present", "message.present"]
        );
        assert_eq!(c.action, None);
    }

    #[test]
    fn context_fields() {
        let f = only(&without(rating(), "/context/bap_uri"), "context.fields");
        assert_eq!(f.path, "context.bap_uri");
        let f = only(
            &with(rating(), "/context/country", json!(" ")),
            "context.fields",
        );
        assert_eq!(f.message, "must not be empty");
        let f = only(
            &with(rating(), "/context/bpp_id", json!(7)),
            "context.fields",
        );
        assert_eq!(f.message, "must be a string, found a number");
        // ttl is its own rule.
        only(&without(rating(), "/context/ttl"), "ttl.pt30s");
    }

    #[test]
    fn context_action() {
        let f = only(
            &with(rating(), "/context/action", json!("search")),
            "context.action",
        );
        assert!(f.message.contains("\"search\""), "{f:?}");
        let c = check_payload(&rating(), Some(Action::OnRating));
        assert_eq!(c.findings[0].rule, "context.action");
        assert_eq!(c.action, Some(Action::OnRating));
        assert!(
            check_payload(&rating(), Some(Action::Rating))
                .findings
                .is_empty()
        );
    }

    #[test]
    fn country_core_version_domain_city() {
        only(
            &with(rating(), "/context/country", json!("IN")),
            "country.ind",
        );
        only(
            &with(rating(), "/context/core_version", json!("1.2.5")),
            "core_version",
        );
        for bad in [
            "ONDC:RET20",
            "ONDC:RET1",
            "ONDC:RET1B",
            "ondc:ret11",
            "nic2004:52110",
        ] {
            only(
                &with(rating(), "/context/domain", json!(bad)),
                "domain.retail",
            );
        }
        for good in ["ONDC:RET10", "ONDC:RET19", "ONDC:RET1A"] {
            assert!(is_retail_domain(good), "{good}");
        }
        for bad in ["*", "std:", "080", "std:08a", "STD:080"] {
            only(&with(rating(), "/context/city", json!(bad)), "city.std");
        }
        assert!(rules_of(&with(rating(), "/context/city", json!("std:0522"))).is_empty());
    }

    #[test]
    fn timestamp_format() {
        for bad in [
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:00.000+00:00",
            "2026-01-01T10:00:00.00Z",
            "2026-01-01 10:00:00.000Z",
            "2026-02-30T10:00:00.000Z",
            "2026-01-01T10:00:00.0000Z",
        ] {
            only(
                &with(rating(), "/context/timestamp", json!(bad)),
                "timestamp.format",
            );
        }
        assert!(is_ondc_timestamp("2024-02-29T23:59:59.999Z"));
    }

    #[test]
    fn ttl() {
        let f = only(&with(rating(), "/context/ttl", json!("PT1M")), "ttl.pt30s");
        assert_eq!(f.message, "must be \"PT30S\", found \"PT1M\"");
        only(&with(rating(), "/context/ttl", json!(30)), "ttl.pt30s");
        let f = only(&without(on_rating(), "/context/ttl"), "ttl.pt30s");
        assert_eq!(f.path, "context.ttl");
    }

    #[test]
    fn ids_distinct() {
        let id = "0b6a8a51-8f0b-4f3c-bb0e-9d5c3f0c2e7a";
        only(
            &with(rating(), "/context/transaction_id", json!(id)),
            "ids.distinct",
        );
    }

    #[test]
    fn ids_not_url() {
        let f = only(
            &with(
                rating(),
                "/context/bpp_id",
                json!("https://seller.example.com"),
            ),
            "ids.not_url",
        );
        assert_eq!(f.path, "context.bpp_id");
        only(
            &with(rating(), "/context/bap_id", json!("http:buyer.example.com")),
            "ids.not_url",
        );
    }

    #[test]
    fn uri_on_id_domain() {
        let f = only(
            &with(
                rating(),
                "/context/bap_uri",
                json!("https://elsewhere.example.org/bap"),
            ),
            "uri.on_id_domain",
        );
        assert_eq!(f.path, "context.bap_uri");
        // A suffix that is not a subdomain does not count.
        only(
            &with(
                rating(),
                "/context/bap_uri",
                json!("https://evilbuyer.example.com/bap"),
            ),
            "uri.on_id_domain",
        );
        only(
            &with(rating(), "/context/bap_uri", json!("buyer.example.com/bap")),
            "uri.on_id_domain",
        );
        // Ids with a path, subdomains, ports, user info and letter case are fine.
        for (id, uri) in [
            (
                "ondc-seller-preprod.chattybao.com/ondc",
                "https://ondc-seller-preprod.chattybao.com/ondc/bpp",
            ),
            (
                "pramaan.ondc.org/beta/preprod/mock/seller",
                "https://pramaan.ondc.org/beta/preprod/mock/seller",
            ),
            (
                "seller.example.com",
                "https://API.Seller.Example.com:8443/x",
            ),
            ("seller.example.com", "http://u:p@seller.example.com"),
            ("localhost/seller", "http://localhost:4000/bpp"),
        ] {
            let v = with(
                with(rating(), "/context/bpp_id", json!(id)),
                "/context/bpp_uri",
                json!(uri),
            );
            assert!(rules_of(&v).is_empty(), "{id} {uri}: {:?}", rules_of(&v));
        }
        // The host judged is the one a client connects to: not the user info, nor what
        // follows a backslash (a path separator in http(s) URLs).
        for (uri, on) in [
            ("http://seller.example.com\\@evil.example/", true),
            ("http://evil.example\\@seller.example.com/", false),
            ("http://seller.example.com@evil.example/", false),
            ("http://evil.example#@seller.example.com/", false),
            ("http://SELLER.example.COM./bpp", true),
        ] {
            assert_eq!(is_on_id_domain(uri, "seller.example.com"), on, "{uri}");
        }
        // Octal and short IPv4 forms are read as the WHATWG parser reads them.
        assert!(is_private_uri("http://0177.0.0.1/bap"));
        assert!(is_private_uri("http://127.1/bap"));
        assert!(!is_private_uri("http://010.0.0.1/bap"), "8.0.0.1");
        assert!(is_private_uri("http://0x7f.1/bap"));
        for (uri, private) in [
            ("http://127.0.0.1:8080/bap", true),
            ("http://127.1/bap", true),
            ("http://[::1]/bap", true),
            ("http://LOCALHOST./bap", true),
            ("http://buyer.localhost:8080/bap", true),
            ("http://10.1.2.3/bap", true),
            ("http://172.20.0.5/bap", true),
            ("http://192.168.1.5:3000/bap", true),
            ("http://169.254.169.254/latest", true),
            ("http://0.0.0.0:8081/bpp", true),
            ("http://[fd00::1]/bap", true),
            ("http://[fe80::1]/bap", true),
            ("http://[::ffff:10.0.0.1]/bap", true),
            ("http://mock-seller:8081/bpp", true),
            ("http://printer.local/bap", true),
            ("http://svc.internal/bap", true),
            ("http://router.home.arpa/bap", true),
            ("https://seller.test/bpp", false),
            ("https://buyer.example.com/bap", false),
            ("http://8.8.8.8/bap", false),
            ("http://172.32.0.1/bap", false),
            ("http://[2606:4700::1]/bap", false),
            ("http://[::ffff:8.8.8.8]/bap", false),
            ("http://evil.example\\@127.0.0.1/", false),
            ("ftp://127.0.0.1/bap", false),
            ("127.0.0.1/bap", false),
        ] {
            assert_eq!(is_private_uri(uri), private, "{uri}");
        }
        assert_eq!(url_host("https://[::1]:80/x").as_deref(), Some("::1"));
        assert_eq!(url_host("ftp://x"), None);
        assert_eq!(url_host("https://"), None);
        assert_eq!(id_domain("A.Example.com./p"), "a.example.com");
    }

    /// The plain-URL reading gives the full parser's host whenever it gives one, over URLs made
    /// of the characters that matter to hosts.
    #[test]
    fn plain_hosts_are_the_parsers_hosts() {
        use proptest::prelude::*;
        let check = |uri: &str| {
            if let Some(host) = plain_host(uri) {
                assert_eq!(Some(host.to_owned()), parsed_host(uri), "{uri}");
            }
        };
        for uri in [
            "http://seller.example.com/bpp",
            "https://seller.example.com:8443/x?y#z",
            "http://127.0.0.1:8080/bap",
            "http://1.2.3.4.5/",
            "http://256.1.1.1/",
            "http://a.b.c.1/",
            "http://a..b/",
            "http://.a/",
            "http://a.b./",
            "http://xn--nxasmq6b.com/",
            "http://xn--/",
            "http://xn--a.com/",
            "http://a.xn--0.com/",
            "http://xn--ab-.com/",
            "http://a:65536/",
            "http://a:/",
            "http://a:0/",
        ] {
            check(uri);
        }
        proptest!(ProptestConfig::with_cases(4000), |(
            scheme in prop::sample::select(vec!["http://", "https://"]),
            authority in "[a-z0-9.:x-]{0,24}",
            tail in prop::sample::select(vec!["", "/", "/bap", "?q", "#f"]),
        )| {
            check(&format!("{scheme}{authority}{tail}"));
        });
    }

    #[test]
    fn message_present() {
        only(&without(rating(), "/message"), "message.present");
        only(&with(on_rating(), "/message", json!({})), "message.present");
        only(&with(rating(), "/message", json!([1])), "message.present");
    }

    #[test]
    fn message_id_uuid_only_on_rating() {
        for bad in [
            "m-1",
            "e4f5a6b7-c8d9-0123-4567-89abcdef0123",
            "0b6a8a518f0b4f3cbb0e9d5c3f0c2e7a",
            "0b6a8a51-8f0b-4f3c-cb0e-9d5c3f0c2e7a",
        ] {
            only(
                &with(rating(), "/context/message_id", json!(bad)),
                "message_id.uuid",
            );
            assert!(rules_of(&with(on_rating(), "/context/message_id", json!(bad))).is_empty());
        }
        let upper = "0B6A8A51-8F0B-4F3C-BB0E-9D5C3F0C2E7A";
        assert!(rules_of(&with(rating(), "/context/message_id", json!(upper))).is_empty());
    }

    #[test]
    fn no_nulls_names_every_path() {
        let v = with(
            with(on_rating(), "/message/feedback_form/required", Value::Null),
            "/context/city",
            Value::Null,
        );
        let c = check_payload(&v, None);
        let got: Vec<(&str, &str)> = c
            .findings
            .iter()
            .map(|f| (f.rule, f.path.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("context.fields", "context.city"),
                ("no_nulls", "context.city"),
                ("no_nulls", "message.feedback_form.required"),
            ]
        );
        let mut out = Vec::new();
        no_nulls(&json!({"a b": [1, null], "x": {"1": null}}), &mut out);
        let paths: Vec<_> = out.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["[\"a b\"][1]", "x[\"1\"]"]);
        out.clear();
        no_nulls(&Value::Null, &mut out);
        assert_eq!(out[0].path, "$");
    }

    #[test]
    fn rating_shape() {
        let f = only(
            &with(rating(), "/message/ratings", json!([])),
            "rating.shape",
        );
        assert_eq!(f.message, "must not be empty");
        only(
            &with(rating(), "/message/ratings", json!({})),
            "rating.shape",
        );
        only(
            &with(rating(), "/message/ratings/1", json!("I1")),
            "rating.shape",
        );
        only(&with(rating(), "/message", json!({"x": 1})), "rating.shape");
        // The single-object form is reported, and its fields are still checked.
        let single = with(
            rating(),
            "/message",
            json!({"rating_category": "order", "id": "O1", "value": 5}),
        );
        let got: Vec<_> = check_payload(&single, None)
            .findings
            .iter()
            .map(|f| (f.rule, f.path.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("rating.shape", "message".to_owned()),
                ("rating.categories", "message.rating_category".to_owned()),
                ("rating.value", "message.value".to_owned()),
            ]
        );
    }

    #[test]
    fn rating_categories() {
        let f = only(
            &with(
                rating(),
                "/message/ratings/1/rating_category",
                json!("item"),
            ),
            "rating.categories",
        );
        assert_eq!(f.path, "message.ratings[1].rating_category");
        assert!(f.message.contains("PascalCase \"Item\""), "{f:?}");
        only(
            &with(
                rating(),
                "/message/ratings/1/rating_category",
                json!("Packaging"),
            ),
            "rating.categories",
        );
        only(
            &with(rating(), "/message/ratings/1/rating_category", json!(2)),
            "rating.categories",
        );
        only(
            &without(rating(), "/message/ratings/1/rating_category"),
            "rating.categories",
        );
        // (Order is ratings[0]; a second one is rating.order_once's.)
        for c in ["Provider", "Item", "Fulfillment", "Agent"] {
            let v = with(rating(), "/message/ratings/1/rating_category", json!(c));
            assert!(rules_of(&v).is_empty(), "{c}");
        }
    }

    #[test]
    fn rating_value() {
        for bad in [
            json!(5),
            json!("6"),
            json!("0"),
            json!(" 5"),
            json!("4.5"),
            json!(true),
        ] {
            let f = only(
                &with(rating(), "/message/ratings/0/value", bad.clone()),
                "rating.value",
            );
            assert_eq!(f.path, "message.ratings[0].value", "{bad}");
        }
        only(
            &without(rating(), "/message/ratings/0/value"),
            "rating.value",
        );
        for good in ["1", "2", "3", "4", "5"] {
            assert!(rules_of(&with(rating(), "/message/ratings/0/value", json!(good))).is_empty());
        }
    }

    #[test]
    fn rating_ids() {
        only(
            &with(rating(), "/message/ratings/1/id", json!("")),
            "rating.ids",
        );
        only(
            &with(rating(), "/message/ratings/1/id", json!(3)),
            "rating.ids",
        );
        let f = only(&without(rating(), "/message/ratings/1/id"), "rating.ids");
        assert_eq!(f.path, "message.ratings[1].id");
    }

    #[test]
    fn rating_order_once() {
        let f = only(
            &with(
                rating(),
                "/message/ratings/1/rating_category",
                json!("Order"),
            ),
            "rating.order_once",
        );
        assert_eq!(f.path, "message.ratings[1].rating_category");
        // A lowercase second Order still counts as an Order (and is also a case violation).
        let v = with(
            rating(),
            "/message/ratings/1/rating_category",
            json!("ORDER"),
        );
        assert_eq!(rules_of(&v), ["rating.categories", "rating.order_once"]);
    }

    #[test]
    fn on_rating_refusal() {
        let f = only(
            &with(on_rating(), "/message/rating_ack", json!(false)),
            "on_rating.refusal",
        );
        assert_eq!(f.path, "error");
        let mut refused = with(on_rating(), "/message/rating_ack", json!(false));
        refused["error"] =
            json!({"type": "DOMAIN-ERROR", "code": "30018", "message": "unknown order"});
        assert_eq!(rules_of(&refused), Vec::<&str>::new());
        let f = only(
            &with(refused, "/message/rating_ack", json!(true)),
            "on_rating.refusal",
        );
        assert_eq!(f.path, "message.rating_ack");
        // feedback_ack false alone, or no acks at all (the mock seller's variant), refuse nothing.
        let feedback_only = with(on_rating(), "/message/feedback_ack", json!(false));
        assert_eq!(rules_of(&feedback_only), Vec::<&str>::new());
        let mut bare = on_rating();
        bare["message"] = json!({"order_id": "O-1"});
        assert_eq!(rules_of(&bare), Vec::<&str>::new());
    }

    #[test]
    fn on_rating_form() {
        let f = only(
            &without(on_rating(), "/message/feedback_form/form/data"),
            "on_rating.form",
        );
        assert_eq!(f.path, "message.feedback_form.form.data");
        only(
            &with(
                on_rating(),
                "/message/feedback_form/form/mime_type",
                json!("text/plain"),
            ),
            "on_rating.form",
        );
        only(
            &with(
                on_rating(),
                "/message/feedback_form/form/url",
                json!("seller/form"),
            ),
            "on_rating.form",
        );
        only(
            &without(on_rating(), "/message/feedback_form/form/url"),
            "on_rating.form",
        );
        only(
            &with(
                on_rating(),
                "/message/feedback_form",
                json!({"required": true}),
            ),
            "on_rating.form",
        );
        only(
            &with(
                on_rating(),
                "/message/feedback_form",
                json!("https://x.example"),
            ),
            "on_rating.form",
        );
        only(
            &with(on_rating(), "/message/feedback_form/required", json!("no")),
            "on_rating.form",
        );
        let xml = with(
            on_rating(),
            "/message/feedback_form/form/mime_type",
            json!("application/xml"),
        );
        assert!(rules_of(&xml).is_empty());
        assert!(rules_of(&without(on_rating(), "/message/feedback_form")).is_empty());
        // The form rules are /on_rating rules only.
        let mut r = rating();
        r["message"]["feedback_form"] = json!({});
        assert!(rules_of(&r).is_empty());
    }

    #[test]
    fn paths_join_plain_and_odd_keys() {
        assert_eq!(join("", "context"), "context");
        assert_eq!(join("context", "bap_id"), "context.bap_id");
        assert_eq!(join("m", "a.b"), "m[\"a.b\"]");
        assert_eq!(join("", ""), "[\"\"]");
    }
}
