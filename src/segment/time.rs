//! ISO 8601 timestamps as Segment's clients send them, and the form webhookd writes.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Parses an ISO 8601 date-time: RFC 3339 (`2012-12-02T00:30:08.276Z`,
/// `2012-12-02T01:30:08+01:00`, a space instead of `T`), a date-time without an offset
/// (taken as UTC), or a bare date (midnight UTC).
pub fn parse_iso8601(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// `2012-12-02T00:30:08.276Z`: UTC with milliseconds, as JavaScript's `toISOString`.
pub fn format_iso8601(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_forms_clients_send() {
        let expect = "2012-12-02T00:30:08.276Z";
        for text in [
            "2012-12-02T00:30:08.276Z",
            "2012-12-02T01:30:08.276+01:00",
            "2012-12-02T01:30:08.276+0100",
            "2012-12-02 00:30:08.276Z",
            "2012-12-02T00:30:08.276",
        ] {
            let parsed = parse_iso8601(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(format_iso8601(parsed), expect, "{text}");
        }
        assert_eq!(
            format_iso8601(parse_iso8601("2012-12-02").unwrap()),
            "2012-12-02T00:00:00.000Z"
        );
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for text in [
            "",
            "yesterday",
            "2012-13-02T00:00:00Z",
            "1354408208",
            "2012-12-02T25:00:00Z",
        ] {
            assert!(parse_iso8601(text).is_none(), "{text}");
        }
    }
}
