//! The benchmark's webhook receiver: counts what arrives and how long after `receivedAt`.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Ok = 0,
    Unavailable = 1,
}

struct State {
    mode: AtomicU8,
    delivered: AtomicU64,
    refused: AtomicU64,
    /// Milliseconds from `receivedAt` to arrival, of each delivered event.
    latencies: Mutex<Vec<u32>>,
}

/// A running receiver: `/hook` records events, `/hang` never answers, `/baseline` answers
/// at once without looking.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            mode: AtomicU8::new(Mode::Ok as u8),
            delivered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            latencies: Mutex::new(Vec::new()),
        });
        let data = web::Data::from(Arc::clone(&state));
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .route("/hook", web::post().to(hook))
                        .route("/hang", web::post().to(hang))
                        // Reads the body, as any receiver must for its connection to be
                        // kept alive, and does nothing else.
                        .route(
                            "/baseline",
                            web::post().to(|_: web::Bytes| async { HttpResponse::Ok().finish() }),
                        )
                })
                .workers(1)
                .backlog(4096)
                .max_connections(100_000)
                .listen(listener)
                .unwrap()
                .run()
                .await
                .unwrap();
            })
        });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn delivered(&self) -> u64 {
        self.state.delivered.load(Ordering::SeqCst)
    }

    /// Forgets what arrived so far.
    pub fn reset(&self) {
        self.state.delivered.store(0, Ordering::SeqCst);
        self.state.refused.store(0, Ordering::SeqCst);
        self.state.latencies.lock().unwrap().clear();
    }

    /// Waits until `count` events were delivered, at most `limit`; false on timeout.
    pub fn wait_for(&self, count: u64, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while self.delivered() < count {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// p50, p99 and max of arrival − `receivedAt`, in milliseconds.
    pub fn latency(&self) -> Latency {
        let mut all = self.state.latencies.lock().unwrap().clone();
        all.sort_unstable();
        let at = |q: f64| {
            all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
                .copied()
        };
        Latency {
            p50_ms: at(0.50).unwrap_or(0),
            p99_ms: at(0.99).unwrap_or(0),
            max_ms: all.last().copied().unwrap_or(0),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Latency {
    pub p50_ms: u32,
    pub p99_ms: u32,
    pub max_ms: u32,
}

async fn hook(body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    if state.mode.load(Ordering::Relaxed) == Mode::Unavailable as u8 {
        state.refused.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::ServiceUnavailable().finish();
    }
    let now = chrono::Utc::now().timestamp_millis();
    let parsed = serde_json::from_slice::<serde_json::Value>(&body).ok();
    // A batch (a JSON array) delivers each of its events.
    let events = parsed
        .as_ref()
        .and_then(|v| v.as_array().map(|a| a.len() as u64))
        .unwrap_or(1);
    let received_at = parsed
        .and_then(|v| {
            v["receivedAt"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        })
        .map(|t| t.timestamp_millis());
    if let Some(received_at) = received_at {
        state
            .latencies
            .lock()
            .unwrap()
            .push((now - received_at).max(0) as u32);
    }
    state.delivered.fetch_add(events, Ordering::Relaxed);
    HttpResponse::Ok().finish()
}

async fn hang() -> HttpResponse {
    actix_rt::time::sleep(Duration::from_secs(3600)).await;
    HttpResponse::Ok().finish()
}
