//! Recording webhook receivers: real actix-web servers on 127.0.0.1, plain or TLS, each
//! answering as its script says and recording every request it gets.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// What the receiver answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Script = Box<dyn Fn(usize, &Recorded) -> Reply + Send + Sync>;

struct State {
    requests: Mutex<Vec<Recorded>>,
    arrived: Condvar,
    script: Script,
    /// Requests being answered now, and the most there ever were at once.
    active: AtomicUsize,
    max_active: AtomicUsize,
}

/// A running receiver; stopped when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    scheme: &'static str,
    state: Arc<State>,
    server: actix_web::dev::ServerHandle,
}

impl Receiver {
    /// A receiver that answers every request with 200.
    pub fn ok() -> Receiver {
        Receiver::start(|_, _| Reply::status(200))
    }

    /// A receiver that answers 503 until the returned gate is opened (set true), then 200.
    pub fn gated() -> (Receiver, Arc<AtomicBool>) {
        let open = Arc::new(AtomicBool::new(false));
        let gate = Arc::clone(&open);
        let receiver = Receiver::start(move |_, _| {
            Reply::status(if gate.load(Ordering::SeqCst) {
                200
            } else {
                503
            })
        });
        (receiver, open)
    }

    /// A receiver whose answer to its n-th request (from 0) is `script(n, request)`.
    pub fn start(script: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static) -> Receiver {
        Receiver::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), None, script)
    }

    /// As [`Receiver::start`], serving HTTPS with `tls`.
    pub fn start_tls(
        tls: rustls::ServerConfig,
        script: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        Receiver::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), Some(tls), script)
    }

    pub fn start_on(
        listener: TcpListener,
        tls: Option<rustls::ServerConfig>,
        script: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            script: Box::new(script),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
        });
        let server = serve(listener, tls, Arc::clone(&state));
        Receiver {
            addr,
            scheme,
            state,
            server,
        }
    }

    /// Goes down (connections refused) for `down`, then serves again on the same address,
    /// with the same script and record. Plain HTTP only.
    pub fn bounce(&mut self, down: Duration) {
        let stopped = self.server.stop(false);
        actix_rt::Runtime::new().unwrap().block_on(stopped);
        std::thread::sleep(down);
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(listener) => break listener,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.server = serve(listener, None, Arc::clone(&self.state));
    }
}

fn serve(
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    server_state: Arc<State>,
) -> actix_web::dev::ServerHandle {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let data = web::Data::from(server_state);
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                    .default_service(web::to(record))
            })
            .workers(1)
            .shutdown_timeout(0);
            let server = match tls {
                Some(tls) => server.listen_rustls_0_23(listener, tls),
                None => server.listen(listener),
            }
            .unwrap()
            .run();
            handle_tx.send(server.handle()).unwrap();
            let _ = server.await;
        });
    });
    handle_rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

impl Receiver {
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The most requests this receiver was answering at once.
    pub fn max_concurrent(&self) -> usize {
        self.state.max_active.load(Ordering::SeqCst)
    }

    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// Waits until at least `n` requests arrived, at most `limit`.
    pub fn wait_for(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut requests = self.state.requests.lock().unwrap();
        while requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            requests = self.state.arrived.wait_timeout(requests, left).unwrap().0;
        }
        true
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Not awaited: a receiver holding hung requests must not hold up the test.
        // The command is sent on the call; the future only reports completion.
        drop(self.server.stop(false));
    }
}

async fn record(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let recorded = Recorded {
        method: req.method().to_string(),
        path: req.path().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
        at: Instant::now(),
    };
    let n = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(recorded.clone());
        state.arrived.notify_all();
        requests.len() - 1
    };
    // Counted until answered, or until the client goes away (the future is dropped).
    struct Answering<'a>(&'a AtomicUsize);
    impl Drop for Answering<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let active = state.active.fetch_add(1, Ordering::SeqCst) + 1;
    let _answering = Answering(&state.active);
    state.max_active.fetch_max(active, Ordering::SeqCst);
    let reply = (state.script)(n, &recorded);
    if !reply.delay.is_zero() {
        actix_rt::time::sleep(reply.delay).await;
    }
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap());
    for (name, value) in &reply.headers {
        response.insert_header((name.as_str(), value.as_str()));
    }
    response.body("ok")
}
