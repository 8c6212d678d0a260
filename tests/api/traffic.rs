//! `serve --record DIR` records what the adapters send and receive, and that traffic passes
//! `ondc-rating check`.

use serde_json::Value;

use crate::helpers::*;

fn check(dir: &std::path::Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ondc-rating"))
        .args(["check", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn lines(dir: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("traffic.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_traffic_of_a_rating_exchange_passes_the_checker() {
    let store = StoreFixture::new(Backend::Embedded);
    let (buyer_dir, seller_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Conformance wants each uri on its subscriber id's domain; on loopback that id is 127.0.0.1,
    // shared by both sides, which tell their keys apart by unique key id.
    let buyer_id = Identity {
        id: "127.0.0.1".into(),
        ukid: "buyer-key".into(),
        ..Identity::new("x")
    };
    let seller_id = Identity {
        id: "127.0.0.1".into(),
        ukid: "seller-key".into(),
        ..Identity::new("x")
    };
    let seller = Seller::start_as(
        seller_id,
        &store,
        "seller",
        vec![buyer_id.peer()],
        std::sync::Arc::new(ondc_rating::clock::SystemClock),
        |s| s.server.record_dir = Some(seller_dir.path().to_owned()),
    )
    .await;
    let buyer = Buyer::start_as(
        buyer_id,
        &store,
        "buyer",
        vec![seller.identity.peer()],
        |s| {
            s.server.record_dir = Some(buyer_dir.path().to_owned());
        },
    )
    .await;
    for (i, id) in ["O-1", "O-2", "O-3"].into_iter().enumerate() {
        let o = order("alice", "127.0.0.1", &format!("{}/bpp", seller.app.base));
        assert_eq!(buyer.put_order(id, &o).await.0, 200);
        let body = if i == 0 {
            full_rating(id)
        } else {
            serde_json::json!({"orderId": id, "orderRating": i + 2})
        };
        assert_eq!(buyer.rate("alice", &body).await.0, 200);
    }

    // The buyer sent three /rating and received three /on_rating; the seller the reverse.
    let seen = |dir: &std::path::Path| {
        lines(dir)
            .iter()
            .map(|l| {
                format!(
                    "{} {}",
                    l["direction"].as_str().unwrap(),
                    l["action"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    let b = seen(buyer_dir.path());
    assert_eq!(b.iter().filter(|x| *x == "sent rating").count(), 3, "{b:?}");
    assert_eq!(
        b.iter().filter(|x| *x == "received on_rating").count(),
        3,
        "{b:?}"
    );
    // The seller records its /on_rating just before sending it; give the last one a moment.
    for _ in 0..50 {
        if seen(seller_dir.path())
            .iter()
            .filter(|x| *x == "sent on_rating")
            .count()
            == 3
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let s = seen(seller_dir.path());
    assert_eq!(
        s.iter().filter(|x| *x == "received rating").count(),
        3,
        "{s:?}"
    );
    assert_eq!(
        s.iter().filter(|x| *x == "sent on_rating").count(),
        3,
        "{s:?}"
    );

    for dir in [buyer_dir.path(), seller_dir.path()] {
        let (code, report) = check(dir);
        assert_eq!(code, Some(0), "{report}");
    }
}
