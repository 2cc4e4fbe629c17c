//! The load generator: `concurrency` keep-alive connections POSTing one body, for a time
//! or a number of requests, at full speed or at a fixed rate.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::bodies::Body;

/// What to send, and how hard.
#[derive(Clone)]
pub struct Load {
    /// Connection `i` posts to `urls[i % urls.len()]` (several instances share the load).
    pub urls: Vec<String>,
    pub headers: Vec<(String, String)>,
    /// Each request's body, made fresh (new `messageId`s) for it.
    pub body: Body,
    pub concurrency: usize,
    /// Stop after this long...
    pub duration: Duration,
    /// ...or after this many requests, whichever comes first.
    pub max_requests: Option<u64>,
    /// Requests per second across all connections; `None`: as fast as answers come.
    pub rate: Option<f64>,
    /// Post with `wrk`, as the raw limit is measured, where it can post this load (one
    /// URL, full speed, for a time) and is installed; else with this harness's generator,
    /// which takes about twice wrk's CPU per request from the machine webhookd runs on.
    pub wrk: bool,
}

/// What came of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadResult {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Request latency percentiles, in milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `load` (with `wrk` where asked and possible, else on a thread of its own) and
/// returns when it is done.
pub fn run(load: Load) -> LoadResult {
    let url = load.urls.join(", ");
    let by_wrk = if load.wrk && crate::wrk::can_post(&load) {
        let posted = crate::wrk::post(&load, &std::env::temp_dir());
        if posted.is_none() {
            eprintln!("warning: wrk could not post to {url}: the harness's generator does");
        }
        posted
    } else {
        None
    };
    let result = by_wrk.unwrap_or_else(|| {
        std::thread::spawn(move || actix_rt::System::new().block_on(generate(load)))
            .join()
            .expect("load generator thread")
    });
    if result.failed > 0 {
        eprintln!("warning: {} request(s) to {url} failed", result.failed);
    }
    result
}

async fn generate(load: Load) -> LoadResult {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(load.concurrency))
        .timeout(Duration::from_secs(30))
        .finish();
    let started = Instant::now();
    let deadline = started + load.duration;
    let issued = Rc::new(Cell::new(0u64));
    let ok = Rc::new(Cell::new(0u64));
    let failed = Rc::new(Cell::new(0u64));
    let latencies = Rc::new(RefCell::new(Vec::<Duration>::new()));
    let interval = load.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut tasks = Vec::new();
    for connection in 0..load.concurrency {
        let (client, load) = (client.clone(), load.clone());
        let url = load.urls[connection % load.urls.len()].clone();
        let (issued, ok, failed) = (Rc::clone(&issued), Rc::clone(&ok), Rc::clone(&failed));
        let latencies = Rc::clone(&latencies);
        tasks.push(actix_rt::spawn(async move {
            loop {
                let n = issued.get();
                if Instant::now() >= deadline || load.max_requests.is_some_and(|max| n >= max) {
                    break;
                }
                issued.set(n + 1);
                if let Some(interval) = interval {
                    // Request n is due at start + n * interval, whoever sends it.
                    let due = started + interval.mul_f64(n as f64);
                    actix_rt::time::sleep_until(due.into()).await;
                }
                let mut request = client.post(&url);
                for (name, value) in &load.headers {
                    request = request.insert_header((name.as_str(), value.as_str()));
                }
                let sent_at = Instant::now();
                match request.send_body(load.body.make()).await {
                    Ok(mut response) if response.status().is_success() => {
                        let _ = response.body().await;
                        ok.set(ok.get() + 1);
                        latencies.borrow_mut().push(sent_at.elapsed());
                    }
                    _ => failed.set(failed.get() + 1),
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut latencies = latencies.take();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    LoadResult {
        ok: ok.get(),
        failed: failed.get(),
        elapsed: started.elapsed(),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
    }
}
