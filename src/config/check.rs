//! Validation: every value in range, every name unique, every URL, header, trigger and
//! mapping usable; each problem with its key path. Also resolves what the rest of
//! webhookd uses (parsed triggers, validated mappings, "" meaning absent).

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Uri;

use super::{
    Config, ConfigProblem, DestinationConfig, Headers, StorageBackend, MAX_BATCH_SIZE,
    MAX_URLS_PER_DESTINATION, NOTIFICATIONS_DESTINATION, NOTIFICATIONS_SOURCE,
};
use crate::segment::fql::Fql;
use crate::segment::mapping::Mapping;

/// Headers webhookd sets itself; a configured header may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "x-signature",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

struct Problems<'a>(&'a mut Vec<ConfigProblem>);

impl Problems<'_> {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// `value` must lie in `range`.
    fn range<T: PartialOrd + std::fmt::Display>(
        &mut self,
        path: &str,
        value: T,
        range: std::ops::RangeInclusive<T>,
    ) {
        if !range.contains(&value) {
            self.add(
                path,
                format!(
                    "must be {} to {} (it is {value})",
                    range.start(),
                    range.end()
                ),
            );
        }
    }
}

pub(super) fn check(config: &mut Config, problems: &mut Vec<ConfigProblem>) {
    let mut p = Problems(problems);
    let server = &mut config.server;
    server.admin_token = server.admin_token.take().filter(|t| !t.expose().is_empty());
    p.range(
        "server.max_message_bytes",
        server.max_message_bytes,
        1024..=16 << 20,
    );
    p.range(
        "server.max_batch_bytes",
        server.max_batch_bytes,
        1024..=64 << 20,
    );
    if server.max_batch_bytes < server.max_message_bytes {
        p.add(
            "server.max_batch_bytes",
            "must be at least server.max_message_bytes",
        );
    }
    p.range(
        "server.dedupe_window_s",
        server.dedupe_window_s,
        0..=31_536_000,
    );

    let storage = &config.storage;
    if storage.path.as_os_str().is_empty() {
        p.add("storage.path", "must not be empty");
    }
    if let Some(mb) = storage.max_size_mb {
        p.range("storage.max_size_mb", mb, 1..=16 << 20);
    }
    p.range("storage.pool_size", storage.pool_size, 1..=1000);
    p.range("storage.lease_s", storage.lease_s, 1..=3600);
    if storage.backend == StorageBackend::Postgres && storage.url.is_none() {
        p.add(
            "storage.url",
            "is required with backend = \"postgres\" (or set WEBHOOKD_STORAGE_URL)",
        );
    }

    let d = &config.delivery;
    p.range("delivery.timeout_ms", d.timeout_ms, 1..=600_000);
    p.range("delivery.retry_window_s", d.retry_window_s, 0..=2_592_000);
    p.range(
        "delivery.backoff_initial_ms",
        d.backoff_initial_ms,
        1..=86_400_000,
    );
    p.range("delivery.backoff_max_ms", d.backoff_max_ms, 1..=86_400_000);
    if d.backoff_max_ms < d.backoff_initial_ms {
        p.add(
            "delivery.backoff_max_ms",
            "must be at least delivery.backoff_initial_ms",
        );
    }
    p.range("delivery.max_in_flight", d.max_in_flight, 1..=10_000);
    p.range(
        "delivery.idle_actor_stop_s",
        d.idle_actor_stop_s,
        1..=86_400,
    );
    if let Some(path) = &d.extra_root_certs {
        if !Path::new(path).is_file() {
            p.add(
                "delivery.extra_root_certs",
                format!("no file at {:?}", path.display().to_string()),
            );
        }
    }

    let retention = &config.retention;
    p.range(
        "retention.delivered_s",
        retention.delivered_s,
        1..=315_360_000,
    );
    p.range(
        "retention.dead_letter_s",
        retention.dead_letter_s,
        1..=315_360_000,
    );

    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    for (i, source) in config.sources.iter_mut().enumerate() {
        let at = format!("sources[{i}]");
        if source.name.is_empty() {
            p.add(format!("{at}.name"), "is required");
        } else if source.name == NOTIFICATIONS_SOURCE {
            p.add(
                format!("{at}.name"),
                "is webhookd's own (its notifications)",
            );
        } else if !names.insert(source.name.clone()) {
            p.add(
                format!("{at}.name"),
                format!("{:?} is used by an earlier source", source.name),
            );
        }
        let key = source.write_key.expose().to_string();
        if key.is_empty() {
            p.add(format!("{at}.write_key"), "is required");
        } else if !keys.insert(key) {
            // The key itself is a secret: say only that it repeats.
            p.add(
                format!("{at}.write_key"),
                "is the write key of an earlier source",
            );
        }
        let mut destination_names = HashSet::new();
        for (j, destination) in source.destinations.iter_mut().enumerate() {
            let at = format!("{at}.destinations[{j}]");
            if !destination.name.is_empty() && !destination_names.insert(destination.name.clone()) {
                p.add(
                    format!("{at}.name"),
                    format!(
                        "{:?} is used by an earlier destination of this source",
                        destination.name
                    ),
                );
            }
            check_destination(destination, &at, &mut p);
        }
        // A previous name hands its stored work to one destination, and only a name no
        // destination of the source uses now.
        let mut previous = HashSet::new();
        for (j, destination) in source.destinations.iter().enumerate() {
            for (k, old) in destination.previous_names.iter().enumerate() {
                let at = format!("{at}.destinations[{j}].previous_names[{k}]");
                if old.is_empty() {
                    p.add(at, "must not be empty");
                } else if destination_names.contains(old) {
                    p.add(
                        at,
                        format!("{old:?} is the name of a destination of this source"),
                    );
                } else if !previous.insert(old.clone()) {
                    p.add(
                        at,
                        format!("{old:?} is an earlier previous name in this source"),
                    );
                }
            }
        }
    }
    add_notifications(config, &mut p);
}

/// `[notifications]` becomes a source of webhookd's own with one destination, so that
/// notifications are stored, signed, retried and dead-lettered like any event.
fn add_notifications(config: &mut Config, p: &mut Problems<'_>) {
    let Some(url) = config.notifications.url.clone().filter(|u| !u.is_empty()) else {
        return;
    };
    let mut destination = DestinationConfig {
        name: NOTIFICATIONS_DESTINATION.into(),
        urls: vec![super::UrlConfig {
            url,
            headers: Headers::default(),
        }],
        signing_secrets: config.notifications.signing_secrets.clone(),
        ..DestinationConfig::default()
    };
    let before = p.0.len();
    check_destination(&mut destination, "notifications", p);
    // Problems found under the made-up destination's own paths, told as the keys written.
    for problem in &mut p.0[before..] {
        problem.path = problem
            .path
            .replace("notifications.urls[0]", "notifications.url");
    }
    config.sources.push(super::SourceConfig {
        name: NOTIFICATIONS_SOURCE.into(),
        // Empty: no request can name it (empty keys are refused first).
        write_key: crate::secret::Secret::default(),
        destinations: vec![destination],
    });
}

fn check_destination(d: &mut DestinationConfig, at: &str, p: &mut Problems<'_>) {
    if d.name.is_empty() {
        p.add(format!("{at}.name"), "is required");
    }
    if d.urls.is_empty() || d.urls.len() > MAX_URLS_PER_DESTINATION {
        p.add(
            format!("{at}.urls"),
            format!(
                "has {} URLs; 1 to {MAX_URLS_PER_DESTINATION} are allowed",
                d.urls.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    for (k, url) in d.urls.iter().enumerate() {
        let path = format!("{at}.urls[{k}]");
        if let Err(why) = check_url(&url.url) {
            p.add(&path, why);
        } else if !seen.insert(url.url.clone()) {
            // Each attempt would post to it twice.
            p.add(&path, "repeats an earlier URL of this destination");
        }
        check_headers(&url.headers, &format!("{path}.headers"), p);
    }
    check_headers(&d.headers, &format!("{at}.headers"), p);
    d.shared_secret = d.shared_secret.take().filter(|s| !s.expose().is_empty());
    for (k, secret) in d.signing_secrets.iter().enumerate() {
        if let Err(why) = crate::delivery::standard::decode_secret(secret.expose()) {
            p.add(format!("{at}.signing_secrets[{k}]"), why);
        }
    }
    if d.integration_name.is_empty() {
        p.add(format!("{at}.integration_name"), "must not be empty");
    }
    d.trigger = match d.subscribe.as_deref() {
        None => None,
        Some(text) => match Fql::parse(text) {
            Ok(fql) => Some(Arc::new(fql)),
            Err(e) => {
                p.add(
                    format!("{at}.subscribe"),
                    format!("not a valid trigger: {e}"),
                );
                None
            }
        },
    };
    d.mapping = match &d.data {
        None => None,
        Some(data) => match Mapping::new(data.clone()) {
            Ok(mapping) => Some(Arc::new(mapping)),
            Err(e) => {
                p.add(format!("{at}.data"), format!("not a valid mapping: {e}"));
                None
            }
        },
    };
    p.range(
        &format!("{at}.batch_size"),
        d.batch_size,
        1..=MAX_BATCH_SIZE,
    );
    p.range(
        &format!("{at}.batch_wait_ms"),
        d.batch_wait_ms,
        0..=3_600_000,
    );
}

fn check_headers(headers: &Headers, at: &str, p: &mut Problems<'_>) {
    for (name, value) in headers.iter() {
        let path = format!("{at}.{name:?}");
        if HeaderName::from_str(name).is_err() {
            p.add(path, "not a valid HTTP header name");
        } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            p.add(path, "webhookd sets this header itself");
        } else if HeaderValue::from_str(value).is_err() {
            p.add(path, "not a valid HTTP header value");
        }
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let shown = crate::redact::url(url);
    let uri = Uri::from_str(url).map_err(|_| format!("{shown:?} is not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{shown:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} has no host"));
    }
    Ok(())
}
