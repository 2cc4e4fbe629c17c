//! An acknowledged event is never lost: not on restart, not on SIGKILL mid-burst.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::common::{basic_auth, one_source_config, try_post, wait_until, Webhookd, WRITE_KEY};

#[test]
fn sigkill_during_a_burst_loses_no_acknowledged_event() {
    let mut service = Webhookd::start(&one_source_config());
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let url_track = service.url("/v1/track");
    let url_batch = service.url("/v1/batch");
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
            let (url_track, url_batch) = (url_track.clone(), url_batch.clone());
            std::thread::spawn(move || {
                let auth = basic_auth(WRITE_KEY);
                let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
                for n in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let ids: Vec<String> = if client % 2 == 0 {
                        vec![format!("c{client}-{n}")]
                    } else {
                        (0..10).map(|i| format!("c{client}-{n}-{i}")).collect()
                    };
                    let (url, body) = if client % 2 == 0 {
                        (&url_track, json!({"userId": "u", "event": "Burst", "messageId": ids[0]}))
                    } else {
                        let items: Vec<_> = ids
                            .iter()
                            .map(|id| json!({"type": "track", "userId": "u", "event": "Burst", "messageId": id}))
                            .collect();
                        (&url_batch, json!({"batch": items}))
                    };
                    match try_post(url, &headers, body.to_string().as_bytes()) {
                        Ok(r) if r.status == 200 => acked.lock().unwrap().extend(ids),
                        // Refused or cut off by the kill: this request was not acknowledged.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(60), || acked
        .lock()
        .unwrap()
        .len()
        >= 2_000));
    service.kill();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    service.restart();
    let acked = acked.lock().unwrap();
    let store = service.store();
    let missing = store.missing("web", &acked);
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    // Each stored event kept its pending delivery (some unacknowledged ones may be stored too).
    assert!(store.pending("web", "primary") >= acked.len() as u64);
}
