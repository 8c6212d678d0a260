//! Reading captured traffic.
//!
//! A file holds one JSON value, a JSON array of values, or NDJSON (one value per line; files named
//! `*.ndjson` are always read as NDJSON). Each value is one of:
//!
//! - a bare payload, `{"context":...,"message":...}`;
//! - `{"payload": <payload>}`;
//! - a traffic record, the format the server's recorder writes, one per NDJSON line:
//!
//!   ```json
//!   {"recorded_at":"2026-01-01T10:00:00.123Z","direction":"sent","action":"rating",
//!    "url":"https://seller.example.com/bpp/rating","body":{"context":{},"message":{}}}
//!   ```
//!
//!   `direction` (`sent` | `received`, seen from the recording participant), `action` (`rating` |
//!   `on_rating`, the endpoint the body was posted to) and `body` are required; `body` is the
//!   payload as JSON, or a string holding its exact bytes (read as JSON when it parses; otherwise
//!   the string itself is the payload, and breaks `context.present`). `recorded_at` (RFC 3339)
//!   and `url` are informational. A record whose `context.action` differs from its `action`
//!   breaks `context.action`.
//!
//! Anything unreadable (missing file, bad UTF-8, bad JSON, a malformed record) is an
//! [`InputError`] naming the file and line.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Direction, Located, RecordMeta};
use crate::clock::parse_timestamp;
use crate::protocol::Action;

/// Input that cannot be read; the message names the file (and line, when there is one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Reads every file, then every `*.json` / `*.ndjson` file of each directory (sorted by name).
pub fn read_inputs(files: &[PathBuf], dirs: &[PathBuf]) -> Result<Vec<Located<Value>>, InputError> {
    let mut paths: Vec<PathBuf> = files.to_vec();
    for dir in dirs {
        paths.extend(list_dir(dir)?);
    }
    let mut out = Vec::new();
    for path in &paths {
        out.extend(read_file(path)?);
    }
    Ok(out)
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The `*.json` and `*.ndjson` files directly in `dir`, sorted; an error when there are none.
pub fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| InputError(format!("cannot read directory {}: {e}", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| InputError(format!("cannot read directory {}: {e}", dir.display())))?
            .path();
        if path.is_file() && matches!(extension(&path).as_str(), "json" | "ndjson") {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(InputError(format!(
            "{}: no *.json or *.ndjson files to check",
            dir.display()
        )));
    }
    files.sort();
    Ok(files)
}

/// Reads one file.
pub fn read_file(path: &Path) -> Result<Vec<Located<Value>>, InputError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| InputError(format!("cannot read {name}: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        InputError(format!("{name}:{line}: not UTF-8 text"))
    })?;
    parse_text(&name, &text, extension(path) == "ndjson")
}

/// Reads the text of a file named `name`: one JSON value, an array, or NDJSON (always NDJSON
/// when `ndjson`).
pub fn parse_text(name: &str, text: &str, ndjson: bool) -> Result<Vec<Located<Value>>, InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    if !ndjson {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => {
                return items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| unwrap_entry(name, i, None, v))
                    .collect();
            }
            Ok(v) => return unwrap_entry(name, 0, None, v).map(|p| vec![p]),
            Err(e) if !looks_like_ndjson(text) => {
                return Err(InputError(format!(
                    "{name}:{}: invalid JSON: {e}",
                    e.line()
                )));
            }
            Err(_) => {}
        }
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = n + 1;
        let v: Value = serde_json::from_str(line)
            .map_err(|e| InputError(format!("{name}:{line_no}: invalid JSON: {e}")))?;
        let values = match v {
            Value::Array(items) => items,
            v => vec![v],
        };
        for v in values {
            let index = out.len();
            out.push(unwrap_entry(name, index, Some(line_no), v)?);
        }
    }
    Ok(out)
}

/// More than one non-blank line, and the first parses on its own.
fn looks_like_ndjson(text: &str) -> bool {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    lines
        .next()
        .is_some_and(|first| serde_json::from_str::<Value>(first).is_ok())
        && lines.next().is_some()
}

/// Unwraps a record or a `{"payload":...}` wrapper; a bare payload is kept as it is.
pub fn unwrap_entry(
    name: &str,
    index: usize,
    line: Option<usize>,
    value: Value,
) -> Result<Located<Value>, InputError> {
    let at = match line {
        Some(l) => format!("{name}:{l}"),
        None => format!("{name}: entry {index}"),
    };
    let bad = |what: String| InputError(format!("{at}: {what}"));
    let mut obj = match value {
        Value::Object(obj) => obj,
        other => {
            return Ok(Located {
                line,
                ..Located::new(name, index, other)
            });
        }
    };
    let is_payload = obj.contains_key("context") || obj.contains_key("message");
    if !is_payload && obj.contains_key("body") {
        let body = obj.remove("body").unwrap_or_default();
        let meta = record_meta(&obj).map_err(|e| bad(format!("traffic record: {e}")))?;
        // Exact bytes recorded as text: checked as JSON when they parse; text that does not is
        // what went over the wire, so it stays a string for the rules to report.
        let body = match body {
            Value::String(raw) => serde_json::from_str(&raw).unwrap_or(Value::String(raw)),
            other => other,
        };
        return Ok(Located {
            line,
            record: Some(meta),
            ..Located::new(name, index, body)
        });
    }
    if !is_payload
        && obj.len() == 1
        && let Some(payload) = obj.remove("payload")
    {
        return Ok(Located {
            line,
            ..Located::new(name, index, payload)
        });
    }
    Ok(Located {
        line,
        ..Located::new(name, index, Value::Object(obj))
    })
}

fn record_meta(obj: &serde_json::Map<String, Value>) -> Result<RecordMeta, String> {
    let optional = |key: &str| match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    };
    let direction = match obj.get("direction").and_then(Value::as_str) {
        Some("sent") => Direction::Sent,
        Some("received") => Direction::Received,
        _ => return Err("direction must be \"sent\" or \"received\"".into()),
    };
    let action = match obj.get("action").and_then(Value::as_str) {
        Some("rating") => Action::Rating,
        Some("on_rating") => Action::OnRating,
        _ => return Err("action must be \"rating\" or \"on_rating\"".into()),
    };
    let recorded_at = optional("recorded_at")?;
    if let Some(t) = recorded_at.as_deref()
        && parse_timestamp(t).is_none()
    {
        return Err(format!(
            "recorded_at must be an RFC 3339 timestamp, found {t:?}"
        ));
    }
    Ok(RecordMeta {
        recorded_at,
        direction,
        action,
        url: optional("url")?,
    })
}

/// One traffic record line (no trailing newline) for a payload, in the format [`read_file`]
/// reads: what the server will write when it records its traffic.
pub fn record_line(
    recorded_at: &str,
    direction: Direction,
    action: Action,
    url: &str,
    body: &Value,
) -> String {
    serde_json::json!({
        "recorded_at": recorded_at,
        "direction": direction,
        "action": action.as_str(),
        "url": url,
        "body": body,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(id: &str) -> Value {
        json!({"context": {"message_id": id}, "message": {"ratings": []}})
    }

    fn ids(list: &[Located<Value>]) -> Vec<(usize, Option<usize>, String)> {
        list.iter()
            .map(|p| {
                (
                    p.index,
                    p.line,
                    p.value["context"]["message_id"]
                        .as_str()
                        .unwrap_or("?")
                        .to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn one_payload_an_array_and_ndjson() {
        let one = parse_text("a.json", &payload("m1").to_string(), false).unwrap();
        assert_eq!(ids(&one), [(0, None, "m1".to_owned())]);
        assert_eq!(one[0].location(), "a.json:0");

        let pretty = serde_json::to_string_pretty(&json!([payload("m1"), payload("m2")])).unwrap();
        let arr = parse_text("a.json", &pretty, false).unwrap();
        assert_eq!(
            ids(&arr),
            [(0, None, "m1".to_owned()), (1, None, "m2".to_owned())]
        );

        let nd = format!("{}\n\n{}\n", payload("m1"), payload("m2"));
        for forced in [false, true] {
            let got = parse_text("a.ndjson", &nd, forced).unwrap();
            assert_eq!(
                ids(&got),
                [(0, Some(1), "m1".to_owned()), (1, Some(3), "m2".to_owned())]
            );
        }
        assert!(parse_text("e.json", "  \n", false).unwrap().is_empty());
        assert_eq!(
            parse_text("b.json", &format!("\u{feff}{}", payload("m1")), false)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn bad_json_names_file_and_line() {
        let e = parse_text("x.json", "{\n  \"context\": {,\n}", false).unwrap_err();
        assert!(e.0.starts_with("x.json:2: invalid JSON"), "{e}");
        let nd = format!("{}\n{}\nnot json\n", payload("m1"), payload("m2"));
        let e = parse_text("x.ndjson", &nd, false).unwrap_err();
        assert!(e.0.starts_with("x.ndjson:3: invalid JSON"), "{e}");
        let e = parse_text("x.ndjson", "{\"a\":1}\n{", true).unwrap_err();
        assert!(e.0.starts_with("x.ndjson:2: "), "{e}");
    }

    #[test]
    fn records_and_payload_wrappers_are_unwrapped() {
        let line = record_line(
            "2026-01-01T10:00:00.123Z",
            Direction::Received,
            Action::OnRating,
            "https://buyer.example.com/bap/on_rating",
            &payload("m1"),
        );
        let raw =
            json!({"direction": "sent", "action": "rating", "body": payload("m2").to_string()});
        let wrapped = json!({"payload": payload("m3")});
        let text = format!("{line}\n{raw}\n{wrapped}\n");
        let got = parse_text("t.ndjson", &text, false).unwrap();
        assert_eq!(
            ids(&got),
            [
                (0, Some(1), "m1".to_owned()),
                (1, Some(2), "m2".to_owned()),
                (2, Some(3), "m3".to_owned())
            ]
        );
        let meta = got[0].record.as_ref().unwrap();
        assert_eq!(
            (meta.direction, meta.action, meta.url.as_deref()),
            (
                Direction::Received,
                Action::OnRating,
                Some("https://buyer.example.com/bap/on_rating")
            )
        );
        assert_eq!(got[1].record.as_ref().unwrap().direction, Direction::Sent);
        assert_eq!(got[2].record, None);

        // Bytes that are not JSON stay a string, and the rules say so.
        let text = json!({"direction": "received", "action": "rating", "body": "{"}).to_string();
        let got = parse_text("t.ndjson", &text, true).unwrap();
        assert_eq!(got[0].value, json!("{"));
        let report = crate::checker::check_payloads(&got);
        assert_eq!(report.payloads[0].findings[0].rule, "context.present");
        assert_eq!(report.payloads[0].action, Some(Action::Rating));
    }

    #[test]
    fn malformed_records_are_input_errors() {
        for (record, want) in [
            (
                json!({"direction": "up", "action": "rating", "body": {}}),
                "direction",
            ),
            (
                json!({"direction": "sent", "action": "search", "body": {}}),
                "action",
            ),
            (
                json!({"direction": "sent", "action": "rating", "url": 1, "body": {}}),
                "url",
            ),
            (
                json!({"direction": "sent", "action": "rating", "recorded_at": "noon", "body": {}}),
                "recorded_at",
            ),
        ] {
            let text = format!("{}\n{record}\n", payload("m1"));
            let e = parse_text("r.ndjson", &text, false).unwrap_err();
            assert!(e.0.starts_with("r.ndjson:2: traffic record: "), "{e}");
            assert!(e.0.contains(want), "{e}");
        }
        let e = parse_text(
            "r.json",
            &json!([{"direction": "x", "body": {}}]).to_string(),
            false,
        )
        .unwrap_err();
        assert!(e.0.starts_with("r.json: entry 0: "), "{e}");
    }

    #[test]
    fn non_objects_and_payload_lookalikes_are_kept_as_they_are() {
        let got = parse_text(
            "n.json",
            "[1, {\"payload\": 2, \"x\": 3}, {\"context\": {}, \"body\": 1}]",
            false,
        )
        .unwrap();
        assert_eq!(got[0].value, json!(1));
        assert_eq!(got[1].value, json!({"payload": 2, "x": 3}));
        assert_eq!(got[2].value, json!({"context": {}, "body": 1}));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics_the_reader(text in ".{0,200}", lines in proptest::collection::vec("[\\[\\]{}\":,a-z0-9 ]{0,30}", 0..5), ndjson: bool) {
            let _ = parse_text("t", &text, ndjson);
            let _ = parse_text("t", &lines.join("\n"), ndjson);
        }
    }

    #[test]
    fn directories_list_json_and_ndjson_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.ndjson", "a.json", "c.txt", "D.JSON"] {
            std::fs::write(dir.path().join(name), payload(name).to_string()).unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.json")).unwrap();
        let files = list_dir(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["D.JSON", "a.json", "b.ndjson"]);
        let all = read_inputs(&[], &[dir.path().to_path_buf()]).unwrap();
        assert_eq!(all.len(), 3);

        let empty = tempfile::tempdir().unwrap();
        assert!(list_dir(empty.path()).unwrap_err().0.contains("no *.json"));
        std::fs::write(dir.path().join("z.json"), [0xff, 0xfe]).unwrap();
        let e = read_inputs(&[], &[dir.path().to_path_buf()]).unwrap_err();
        assert!(e.0.contains("z.json:1: not UTF-8"), "{e}");
        let e = read_file(&dir.path().join("missing.json")).unwrap_err();
        assert!(
            e.0.starts_with("cannot read ") && e.0.contains("missing.json"),
            "{e}"
        );
    }
}
