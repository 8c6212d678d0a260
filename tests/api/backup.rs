//! Online backups of the embedded store (`POST /internal/store/backup`): made while the adapter
//! serves, whole or not at all, and a copy the adapter opens as its store keeps what the store
//! held when the backup was made.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// Asks `base` for a backup with the internal token `token` (none: without one).
async fn backup(http: &reqwest::Client, base: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http.post(format!("{base}/internal/store/backup"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let (status, body) = (r.status().as_u16(), r.json().await.unwrap_or(Value::Null));
    if status >= 300 {
        assert_documented(status, &body, &schemas().error);
    }
    (status, body)
}

/// The names of the files in `dir`, in order.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_made_while_serving_restores_the_ratings_as_they_were() {
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().join("nightly");
    let to = dir.clone();
    let p = Pair::start_with(Backend::Embedded, move |s| s.store.backup_dir = to).await;
    p.order("O-1", "alice").await;
    let (status, rated) = p.buyer.rate("alice", &full_rating("O-1")).await;
    assert_eq!(status, 200, "{rated}");

    let (status, body) = backup(&p.buyer.http, &p.buyer.app.base, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized"))
    );
    let (status, body) = backup(&p.buyer.http, &p.buyer.app.base, Some(INTERNAL)).await;
    assert_eq!(status, 201, "{body}");
    let made = &body["backup"];
    let file = made["file"].as_str().unwrap().to_owned();
    assert!(
        file.len() == "ondc-rating-20261208T022000123Z.redb".len()
            && file.starts_with("ondc-rating-2")
            && file.ends_with("Z.redb"),
        "{file}"
    );
    let path = dir.join(&file);
    assert_eq!(made["path"], path.display().to_string());
    assert_eq!(made["bytes"], std::fs::metadata(&path).unwrap().len());
    for (table, n) in [
        ("orders", 1),
        ("ratings", 1),
        ("messages", 1),
        ("callbacks", 1),
    ] {
        assert_eq!(made["tables"][table], n, "{table}: {made}");
    }
    assert_eq!(
        made["tables"]["received"], 0,
        "the seller side's is another file"
    );
    assert_eq!(files_in(&dir), [file.as_str()], "no partial file is left");

    // It goes on serving; what comes after the backup is not in it.
    p.order("O-2", "alice").await;
    assert_eq!(p.buyer.rate("alice", &full_rating("O-2")).await.0, 200);
    let (status, second) = backup(&p.buyer.http, &p.buyer.app.base, Some(INTERNAL)).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["backup"]["tables"]["ratings"], 2);
    let later = second["backup"]["file"].as_str().unwrap().to_owned();
    assert_eq!(
        files_in(&dir),
        [file.clone(), later],
        "named in the order made"
    );

    // Restored: an adapter opening the first copy as its store.
    std::fs::copy(&path, p.store.path("restored")).unwrap();
    let restored = Buyer::start(&p.store, "restored", vec![p.seller.identity.peer()], |_| {}).await;
    let (status, got) = restored.rating_of("alice", "O-1").await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["data"]["status"], "completed");
    assert_eq!(
        got["data"]["messageId"],
        rated["data"]["dto"]["context"]["message_id"]
    );
    assert!(got["data"]["feedbackForm"]["url"].is_string(), "{got}");
    let (status, again) = restored.rate("alice", &full_rating("O-1")).await;
    assert_eq!(
        (status, &again["error"]["code"]),
        (409, &json!("already_rated")),
        "rated once, in the copy too"
    );
    let (status, _) = restored.rating_of("alice", "O-2").await;
    assert_eq!(status, 404, "rated after the backup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_refused_where_none_can_be_made() {
    let http = reqwest::Client::new();
    // Not configured.
    let store = StoreFixture::new(Backend::Embedded);
    let b = Buyer::start(&store, "buyer", vec![], |_| {}).await;
    let (status, body) = backup(&http, &b.app.base, Some(INTERNAL)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("backup_unavailable"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("store.backup_dir")
    );

    // On Redis, which keeps its own persistence.
    let backups = tempfile::tempdir().unwrap();
    let redis = StoreFixture::new(Backend::Redis);
    let to = backups.path().to_owned();
    let b = Buyer::start(&redis, "buyer", vec![], move |s| s.store.backup_dir = to).await;
    let (status, body) = backup(&http, &b.app.base, Some(INTERNAL)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("backup_unavailable"))
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("Redis"));
    assert!(files_in(backups.path()).is_empty());

    // A directory that cannot be made (under a file): a typed 500, nothing left behind, and
    // the store still serves.
    let blocker = backups.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let to = blocker.join("backups");
    let b = Buyer::start(&store, "other", vec![], move |s| s.store.backup_dir = to).await;
    let (status, body) = backup(&http, &b.app.base, Some(INTERNAL)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &json!("backup_failed")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("a-file"),
        "{body}"
    );
    assert_eq!(files_in(backups.path()), ["a-file"]);
    let o = order("alice", "seller.test", "http://127.0.0.1:9/bpp");
    assert_eq!(b.put_order("O-1", &o).await.0, 200);

    // The seller side takes its own internal token.
    let seller_backups = tempfile::tempdir().unwrap();
    let to = seller_backups.path().to_owned();
    let s = Seller::start(&store, "seller", vec![], move |s| s.store.backup_dir = to).await;
    let (status, body) = backup(&http, &s.app.base, Some(INTERNAL)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(files_in(seller_backups.path()).len(), 1);
}

/// One backup at a time per process: of several asked at once, those that find one being made
/// are refused (409), and every one made is a whole file of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_asked_at_once_are_made_one_at_a_time() {
    // A store big enough that a backup takes a while: filled before the adapter opens it.
    let store = StoreFixture::new(Backend::Embedded);
    {
        let filled = ondc_rating::store::Store::open(&store.settings("buyer"))
            .await
            .unwrap();
        for start in (0..30_000).step_by(500) {
            let batch = (start..start + 500).map(|n| {
                let filled = filled.clone();
                async move {
                    let mut o = order("alice", "seller.test", "https://seller.test/bpp");
                    o["orderId"] = json!(format!("O-{n}"));
                    let o: ondc_rating::store::Order = serde_json::from_value(o).unwrap();
                    filled.put_order(&o).await.unwrap()
                }
            });
            futures_util::future::join_all(batch).await;
        }
    }
    let backups = tempfile::tempdir().unwrap();
    let to = backups.path().to_owned();
    let b = Buyer::start(&store, "buyer", vec![], move |s| s.store.backup_dir = to).await;
    let http = reqwest::Client::new();
    let asked = (0..4).map(|_| backup(&http, &b.app.base, Some(INTERNAL)));
    let answers = futures_util::future::join_all(asked).await;
    let made: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body)
        .collect();
    let refused = answers
        .iter()
        .filter(|(status, body)| *status == 409 && body["error"]["code"] == "backup_in_progress")
        .count();
    assert!(!made.is_empty() && refused > 0, "{answers:?}");
    assert_eq!(made.len() + refused, 4, "{answers:?}");
    for m in &made {
        assert_eq!(m["backup"]["tables"]["orders"], 30_000);
    }
    assert_eq!(
        files_in(backups.path()).len(),
        made.len(),
        "one file per backup made"
    );
}

/// With `store.backup_every_secs`, the adapter makes backups itself, and with
/// `store.backup_keep` keeps only the newest: the older ones, and a `.partial` file a stopped
/// process left, go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_keep_the_newest() {
    let store = StoreFixture::new(Backend::Embedded);
    let backups = tempfile::tempdir().unwrap();
    let stale = backups
        .path()
        .join(".ondc-rating-20260101T000000000Z.redb.partial");
    std::fs::write(&stale, b"cut short").unwrap();
    let to = backups.path().to_owned();
    let b = Buyer::start(&store, "buyer", vec![], move |s| {
        s.store.backup_dir = to;
        s.store.backup_every_secs = 1;
        s.store.backup_keep = 2;
    })
    .await;
    let o = order("alice", "seller.test", "http://127.0.0.1:9/bpp");
    assert_eq!(b.put_order("O-1", &o).await.0, 200);
    let made = "ondc_rating_backups_total{ended=\"made\"}";
    let mut count = None;
    for _ in 0..100 {
        count = sample(&metrics(&b.app.base).await, made);
        if count >= Some(3.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(count >= Some(3.0), "{count:?} backups made");
    // Between two backups (the next may be under way: its file, or its partial one, is then a
    // third for a moment) the newest two are kept.
    let mut files = Vec::new();
    for _ in 0..100 {
        files = files_in(backups.path());
        if files.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(files.len(), 2, "the newest two kept: {files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("ondc-rating-") && f.ends_with(".redb")),
        "{files:?}"
    );
    assert!(!stale.exists(), "the stale partial file is gone");
    // Each one kept is a whole store: an adapter opens it, the order there.
    std::fs::copy(backups.path().join(&files[1]), store.path("restored")).unwrap();
    let restored = Buyer::start(&store, "restored", vec![], |_| {}).await;
    let r = restored
        .http
        .get(format!("{}/internal/orders/O-1", restored.app.base))
        .bearer_auth(INTERNAL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
