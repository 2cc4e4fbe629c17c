//! How the configuration's own types are read: with messages that name what is wrong
//! and never echo a secret's value.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::UrlConfig;
use crate::secret::Secret;

/// An address like `127.0.0.1:8080`.
pub(super) fn optional_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(d).map(Some)
}

pub(super) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    SocketAddr::from_str(&text)
        .map_err(|_| de::Error::custom(format!("{text:?} is not an address like 127.0.0.1:8080")))
}

/// A number where 0 means "none".
pub(super) fn zero_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Some(u64::deserialize(d)?).filter(|n| *n > 0))
}

/// A path where "" means "none".
pub(super) fn empty_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let text = String::deserialize(d)?;
    Ok((!text.is_empty()).then(|| PathBuf::from(text)))
}

/// Headers, in order; their values are often credentials: `Debug` shows names only, and
/// a value of the wrong type is reported without itself.
#[derive(Clone, Default, PartialEq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(n, _)| (n, "***")))
            .finish()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Headers, D::Error> {
        struct HeadersVisitor;
        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of header names and string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut headers = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value: Secret = map.next_value().map_err(|_| {
                        de::Error::custom(format!("the value of header {name:?} must be a string"))
                    })?;
                    headers.push((name, value.expose().to_string()));
                }
                Ok(Headers(headers))
            }
        }
        d.deserialize_map(HeadersVisitor)
    }
}

impl<'de> Deserialize<'de> for UrlConfig {
    /// A URL string, or `{ url = "...", headers = { ... } }`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UrlConfig, D::Error> {
        struct UrlVisitor;
        impl<'de> Visitor<'de> for UrlVisitor {
            type Value = UrlConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a URL string or a table with `url` and `headers`")
            }
            fn visit_str<E: de::Error>(self, url: &str) -> Result<UrlConfig, E> {
                Ok(UrlConfig {
                    url: url.to_string(),
                    headers: Headers::default(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UrlConfig, A::Error> {
                let (mut url, mut headers) = (None, Headers::default());
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "url" => url = Some(map.next_value::<String>()?),
                        "headers" => headers = map.next_value()?,
                        // Read and dropped: the loader reports it as an unknown key.
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let url = url.ok_or_else(|| de::Error::missing_field("url"))?;
                Ok(UrlConfig { url, headers })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<UrlConfig, A::Error> {
                Err(de::Error::custom(
                    "expected a URL string or a table, found an array",
                ))
            }
        }
        d.deserialize_any(UrlVisitor)
    }
}

/// A database URL whose password never prints (`Debug` and `Display` show `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct StorageUrl(Secret);

impl StorageUrl {
    pub fn new(url: impl Into<String>) -> StorageUrl {
        StorageUrl(Secret::new(url))
    }

    /// The URL itself, to connect with.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_password(self.0.expose())
    }
}

impl fmt::Debug for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageUrl({})", self.redacted())
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `scheme://user:secret@host/db` → `scheme://user:***@host/db`; `password=secret` →
/// `password=***` (the key=value form).
pub fn redact_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            let tail = redact_query_password(tail);
            return format!("{scheme}://{shown}@{host}{tail}");
        }
        return format!("{scheme}://{authority}{}", redact_query_password(tail));
    }
    url.split_whitespace()
        .map(|part| match part.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn redact_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

impl<'de> Deserialize<'de> for StorageUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StorageUrl, D::Error> {
        Ok(StorageUrl(Secret::deserialize(d)?))
    }
}
