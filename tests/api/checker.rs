//! `ondc-rating check` as a user runs it. Every file in `fixtures/check/` is a case, named
//! `pass.<rule id>[--variant].json|ndjson` (exit 0, no error, that rule silent) or
//! `fail.<rule id>[--variant].json|ndjson` (that rule and no other; exit 1 for an error rule, 0 for
//! a warning rule); every rule the checker knows needs both. Then the ONDC examples, the JSON
//! report, NDJSON and traffic-record input, unreadable input, and the traffic of real adapters.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};

use ondc_rating::checker::input::record_line;
use ondc_rating::checker::{self, Direction, RULES, Severity};
use ondc_rating::clock::{SystemClock, ondc_timestamp};
use ondc_rating::protocol::Action;

use crate::helpers::{
    Backend, Buyer, Identity, Script, ScriptedBuyer, ScriptedSeller, Seller, StoreFixture, order,
    post_with_header,
};

const BIN: &str = env!("CARGO_BIN_EXE_ondc-rating");

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// One run of `check`: exit code, stdout, stderr.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `--json` report.
    fn report(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON report ({e}):\n{}", self.stdout))
    }
}

fn check<P: AsRef<std::ffi::OsStr>>(args: &[P]) -> Run {
    let out = Command::new(BIN).arg("check").args(args).output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check_json<P: AsRef<Path>>(files: &[P]) -> Run {
    let mut args: Vec<&std::ffi::OsStr> = vec!["--json".as_ref()];
    args.extend(files.iter().map(|p| p.as_ref().as_os_str()));
    check(&args)
}

/// Rule ids of the report's findings, optionally of one severity.
fn rules_in(report: &Value, severity: Option<&str>) -> BTreeSet<String> {
    report["findings"]
        .as_array()
        .expect("findings is an array")
        .iter()
        .filter(|f| severity.is_none_or(|s| f["severity"] == s))
        .map(|f| f["rule"].as_str().expect("rule is a string").to_owned())
        .collect()
}

/// `fail.ttl.pt30s--missing.json` -> ("fail", "ttl.pt30s").
fn parse_fixture_name(name: &str) -> Option<(&str, &str)> {
    let stem = name
        .strip_suffix(".json")
        .or_else(|| name.strip_suffix(".ndjson"))?;
    let (kind, rest) = stem.split_once('.')?;
    let rule = rest.split("--").next()?;
    Some((kind, rule))
}

fn fixture_files() -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(repo("fixtures/check"))
        .expect("fixtures/check exists")
        .map(|e| {
            let path = e.unwrap().path();
            (path.file_name().unwrap().to_str().unwrap().to_owned(), path)
        })
        .collect();
    files.sort();
    files
}

fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

#[test]
fn every_fixture_passes_or_fails_exactly_its_rule() {
    let mut problems = Vec::new();
    let files = fixture_files();
    assert!(files.len() >= 2 * RULES.len(), "{} fixtures", files.len());
    for (name, path) in &files {
        let Some((kind, id)) = parse_fixture_name(name) else {
            problems.push(format!(
                "{name}: not named pass.<rule>.json or fail.<rule>.json"
            ));
            continue;
        };
        let Some(rule) = checker::rule(id) else {
            problems.push(format!("{name}: no rule {id:?}"));
            continue;
        };
        let run = check_json(&[path]);
        let report = run.report();
        let all = rules_in(&report, None);
        let errors = rules_in(&report, Some("error"));
        match kind {
            "pass" => {
                if run.code != Some(0) || !errors.is_empty() || all.contains(id) {
                    problems.push(format!(
                        "{name}: expected exit 0 without errors and without {id}, got exit {:?} and {all:?}",
                        run.code
                    ));
                }
            }
            "fail" => {
                let want_code = match rule.severity {
                    Severity::Error => 1,
                    Severity::Warning => 0,
                };
                let want: BTreeSet<String> = [id.to_owned()].into();
                let severities = rules_in(&report, Some(severity_label(rule.severity)));
                if run.code != Some(want_code) || all != want || severities != want {
                    problems.push(format!(
                        "{name}: expected exit {want_code} and exactly {id} ({}), got exit {:?} and {all:?}",
                        severity_label(rule.severity),
                        run.code
                    ));
                }
                // The text report names it too.
                let text = check(&[path]);
                let line = format!("  {} {id}: ", rule.severity.label());
                if text.code != Some(want_code) || !text.stdout.contains(&line) {
                    problems.push(format!(
                        "{name}: text report lacks {line:?}:\n{}",
                        text.stdout
                    ));
                }
            }
            other => problems.push(format!("{name}: unknown kind {other:?}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_rule_has_a_passing_and_a_failing_fixture() {
    let mut have: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, _) in fixture_files() {
        if let Some((kind, id)) = parse_fixture_name(&name) {
            have.entry(kind.to_owned())
                .or_default()
                .insert(id.to_owned());
        }
    }
    let mut missing = Vec::new();
    for rule in RULES {
        for kind in ["pass", "fail"] {
            if !have.get(kind).is_some_and(|ids| ids.contains(rule.id)) {
                missing.push(format!("{kind}.{}.json", rule.id));
            }
        }
    }
    assert!(missing.is_empty(), "fixtures/check/ lacks {missing:?}");
}

#[test]
fn the_readme_lists_every_rule_with_its_severity() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    for rule in RULES {
        let row = format!("| `{}` | {} |", rule.id, severity_label(rule.severity));
        assert!(readme.contains(&row), "README.md lacks the row {row:?}");
    }
}

#[test]
fn the_ondc_examples_pair_up_and_the_mock_seller_variant_is_flagged() {
    let (rating, on_rating, mock) = (
        repo("fixtures/ondc/rating.ret11.json"),
        repo("fixtures/ondc/on_rating.ret11.json"),
        repo("fixtures/ondc/on_rating.mock-seller-variant.json"),
    );
    let pair = check_json(&[&rating, &on_rating]);
    assert_eq!(pair.code, Some(0), "{}", pair.stdout);
    let report = pair.report();
    assert_eq!(
        report["summary"],
        json!({"payloads": 2, "pairs": 1, "errors": 0, "warnings": 0})
    );
    assert!(
        report["pairs"][0]["rating"]
            .as_str()
            .unwrap()
            .ends_with("rating.ret11.json:0")
    );
    assert!(
        report["pairs"][0]["on_rating"]
            .as_str()
            .unwrap()
            .ends_with("on_rating.ret11.json:0")
    );

    let all = check_json(&[&rating, &on_rating, &mock]);
    assert_eq!(all.code, Some(1), "{}", all.stdout);
    let report = all.report();
    let on_mock: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(
                f["location"]
                    .as_str()
                    .unwrap()
                    .ends_with("on_rating.mock-seller-variant.json:0"),
                "{f}"
            );
            (
                f["rule"].as_str().unwrap().into(),
                f["severity"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("ttl.pt30s", "error"),
        ("on_rating.form", "error"),
        ("pair.orphan", "warning"),
    ];
    assert_eq!(
        on_mock,
        want.map(|(r, s)| (r.to_owned(), s.to_owned())),
        "the variant lacks ttl and form.data, and answers no /rating here"
    );
}

#[test]
fn the_json_report_carries_payloads_pairs_and_findings() {
    let path = repo("fixtures/check/fail.ttl.pt30s.json");
    let run = check_json(&[&path]);
    assert_eq!(run.code, Some(1));
    let report = run.report();
    let at = format!("{}:1", path.display());
    assert_eq!(
        report["summary"],
        json!({"payloads": 2, "pairs": 1, "errors": 1, "warnings": 0})
    );
    assert_eq!(report["payloads"][0]["action"], "rating");
    assert_eq!(report["payloads"][1]["action"], "on_rating");
    assert_eq!(report["payloads"][1]["location"], at);
    assert_eq!(report["payloads"][1]["errors"], 1);
    assert_eq!(
        report["payloads"][1]["message_id"],
        "9b2d4f6a-1c3e-4a5b-8d7f-0e2c4a6b8d1f"
    );
    assert_eq!(report["pairs"][0]["on_rating"], at);
    assert_eq!(
        report["findings"],
        json!([{"rule": "ttl.pt30s", "severity": "error", "path": "context.ttl",
                "message": "is missing; must be \"PT30S\"", "location": at}])
    );

    let pair_rule = check_json(&[&repo("fixtures/check/fail.pair.fast.json")]).report();
    assert_eq!(pair_rule["findings"][0]["pair"], 0);
    assert_eq!(pair_rule["findings"][0]["path"], "context.timestamp");

    let text = check(&[&path]);
    assert!(
        text.stdout
            .ends_with("2 payloads, 1 pairs: 1 errors, 0 warnings\n"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(&format!(
            "{at}  on_rating  9b2d4f6a-1c3e-4a5b-8d7f-0e2c4a6b8d1f\n  ERROR ttl.pt30s: is missing; must be \"PT30S\" (at context.ttl)\n"
        )),
        "{}",
        text.stdout
    );
}

fn payload(name: &str, index: usize) -> Value {
    let text = std::fs::read_to_string(repo(&format!("fixtures/check/{name}"))).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()[index].clone()
}

#[test]
fn ndjson_and_traffic_records_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let (rating, on_rating) = (
        payload("pass.pair.fast.json", 0),
        payload("pass.pair.fast.json", 1),
    );

    // Bare payloads, one per line, in a file not named .ndjson.
    let bare = dir.path().join("bare.json");
    std::fs::write(&bare, format!("{rating}\n{on_rating}\n")).unwrap();
    let report = check_json(&[&bare]).report();
    assert_eq!(
        report["summary"],
        json!({"payloads": 2, "pairs": 1, "errors": 0, "warnings": 0})
    );
    assert_eq!(report["payloads"][1]["line"], 2);

    // Records: the /rating as its exact bytes (a string), the /on_rating as JSON.
    let records = dir.path().join("traffic.ndjson");
    let lines = [
        serde_json::to_string(&json!({"recorded_at": "2026-03-10T09:15:00.004Z",
            "direction": "sent", "action": "rating",
            "url": "https://seller.example.com/ondc/bpp/rating", "body": rating.to_string()}))
        .unwrap(),
        record_line(
            "2026-03-10T09:15:05.010Z",
            Direction::Received,
            Action::OnRating,
            "https://buyer-app.example.com/protocol/v1/on_rating",
            &on_rating,
        ),
    ];
    std::fs::write(&records, lines.join("\n")).unwrap();
    let run = check_json(&[&records]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let report = run.report();
    assert_eq!(
        report["summary"],
        json!({"payloads": 2, "pairs": 1, "errors": 0, "warnings": 0})
    );
    assert_eq!(report["payloads"][0]["direction"], "sent");
    assert_eq!(report["payloads"][1]["direction"], "received");
    assert_eq!(report["payloads"][1]["line"], 2);

    // The record's endpoint decides the action: a /rating body recorded at /on_rating breaks
    // context.action and pairs as an /on_rating.
    std::fs::write(
        &records,
        record_line(
            "2026-03-10T09:15:05.010Z",
            Direction::Received,
            Action::OnRating,
            "u",
            &rating,
        ),
    )
    .unwrap();
    let report = check_json(&[&records]).report();
    assert_eq!(
        rules_in(&report, None),
        ["context.action".to_owned(), "pair.orphan".to_owned()].into()
    );

    // A malformed record is unreadable input.
    std::fs::write(
        &records,
        format!(
            "{}\n{}\n",
            lines[0],
            json!({"direction": "inbound", "action": "rating", "body": {}})
        ),
    )
    .unwrap();
    let run = check_json(&[&records]);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(
        run.stderr.contains(&format!(
            "{}:2: traffic record: direction",
            records.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_directory_is_read_sorted_and_an_unreadable_file_in_it_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let pair = std::fs::read(repo("fixtures/check/pass.pair.fast.json")).unwrap();
    std::fs::write(dir.path().join("b.json"), &pair).unwrap();
    std::fs::write(
        dir.path().join("a.ndjson"),
        format!("{}\n", payload("fail.pair.fast.json", 0)),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not checked").unwrap();
    let run = check(&[
        std::ffi::OsStr::new("--json"),
        std::ffi::OsStr::new("--dir"),
        dir.path().as_os_str(),
    ]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let report = run.report();
    let locations: Vec<&str> = report["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["location"].as_str().unwrap())
        .collect();
    let d = dir.path().display();
    assert_eq!(
        locations,
        [
            format!("{d}/a.ndjson:0"),
            format!("{d}/b.json:0"),
            format!("{d}/b.json:1")
        ]
    );

    let bad = dir.path().join("c.json");
    std::fs::write(&bad, "[\n  {\"context\": {}},\n  {\"context\": \n").unwrap();
    let run = check(&[std::ffi::OsStr::new("--dir"), dir.path().as_os_str()]);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr
            .contains(&format!("{}:4: invalid JSON", bad.display())),
        "{}",
        run.stderr
    );

    let run = check(&[dir.path().join("missing.json")]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("missing.json"), "{}", run.stderr);

    let empty = tempfile::tempdir().unwrap();
    let run = check(&[std::ffi::OsStr::new("--dir"), empty.path().as_os_str()]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("no *.json or *.ndjson files"),
        "{}",
        run.stderr
    );
}

/// The buyer's real /rating (captured by a stand-in seller), replayed with its signature to a
/// real seller adapter, whose real /on_rating a stand-in buyer captures: both pass, as a pair.
/// Subscriber ids sit on `localhost` (with a path) so the URIs are on their ids' domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_adapters_traffic_passes_the_checker() {
    let store = StoreFixture::new(Backend::Embedded);
    let (buyer_id, seller_id) = (
        Identity::new("localhost/ondc/buyer"),
        Identity::new("localhost/ondc/seller"),
    );
    let on_localhost = |uri: String| uri.replacen("127.0.0.1", "localhost", 1);
    let rating_capture = ScriptedSeller::start(Script::AckSilently).await;
    let on_rating_capture = ScriptedBuyer::start().await;
    let seller = Seller::start_as(
        seller_id.clone(),
        &store,
        "seller",
        vec![buyer_id.peer()],
        Arc::new(SystemClock),
        |_| {},
    )
    .await;
    let bap_uri = on_localhost(on_rating_capture.bap_uri());
    let buyer = Buyer::start_as(
        buyer_id.clone(),
        &store,
        "buyer",
        vec![seller_id.peer()],
        |s| {
            s.buyer.bap_uri = bap_uri.clone();
            s.buyer.callback_wait_ms = 100;
        },
    )
    .await;
    let bpp_uri = on_localhost(rating_capture.bpp_uri());
    let o = order("alice", &seller_id.id, &bpp_uri);
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);
    let (status, body) = buyer
        .rate(
            "alice",
            &json!({"orderId": "O-1", "orderRating": 5, "providerRating": 4, "agentRating": 3,
                    "fulfilmentRating": 4, "itemRatings": [{"itemId": "I1", "rating": 5}, {"itemId": "I2", "rating": 2}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let sent = rating_capture.recorder.wait_for(1).await.remove(0);

    // The same bytes and signature, delivered to the real seller.
    let (status, ack) = post_with_header(
        &reqwest::Client::new(),
        &seller.rating_url(),
        sent.authorization.as_deref(),
        &sent.body,
    )
    .await;
    assert_eq!(status, 200, "{ack}");
    let callback = on_rating_capture.wait_for(1).await.remove(0);

    let dir = tempfile::tempdir().unwrap();
    let rating_file = dir.path().join("rating.json");
    std::fs::write(&rating_file, &sent.body).unwrap();
    let run = check_json(&[&rating_file]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let report = run.report();
    assert_eq!(
        rules_in(&report, Some("error")),
        BTreeSet::new(),
        "{report:#}"
    );
    assert_eq!(report["payloads"][0]["action"], "rating");

    // Both, as the traffic records a recorder would write.
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let now = ondc_timestamp(chrono::Utc::now());
    let lines = [
        json!({"recorded_at": now, "direction": "sent", "action": "rating",
               "url": format!("{bpp_uri}/rating"), "body": text(&sent.body)}),
        json!({"recorded_at": now, "direction": "sent", "action": "on_rating",
               "url": format!("{bap_uri}/on_rating"), "body": text(&callback.body)}),
    ];
    let traffic = dir.path().join("traffic.ndjson");
    std::fs::write(&traffic, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    let run = check_json(&[&traffic]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let report = run.report();
    assert_eq!(
        report["summary"],
        json!({"payloads": 2, "pairs": 1, "errors": 0, "warnings": 0}),
        "{report:#}"
    );
    let sent_json: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        report["pairs"][0]["message_id"],
        sent_json["context"]["message_id"]
    );
    assert_eq!(sent_json["context"]["bap_uri"], json!(bap_uri));
}
