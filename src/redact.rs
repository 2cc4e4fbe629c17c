//! What must not reach logs, errors or the admin API as it is: credentials in URLs, and
//! client-chosen text that could forge a log line.

/// `url` with its user information and every query value replaced by `***`
/// (`https://***@host/path?token=***`): webhook URLs often carry credentials.
pub fn url(url: &str) -> String {
    let (head, fragment) = match url.split_once('#') {
        Some((h, _)) => (h, "#***"),
        None => (url, ""),
    };
    let (base, query) = match head.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (head, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                // A user name alone may be a token too.
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    let query = query.map(|q| {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}=***"),
                None => pair.to_string(),
            })
            .collect();
        format!("?{}", pairs.join("&"))
    });
    format!("{base}{}{fragment}", query.unwrap_or_default())
}

/// `text` safe for one log line: control characters escaped (`\n` as `\\n`), and cut at
/// `max` characters.
pub fn log_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_hidden() {
        assert_eq!(url("https://example.com/hook"), "https://example.com/hook");
        assert_eq!(
            url("https://bob:hunter2@example.com:8443/hook?token=abc&x=1#frag"),
            "https://***@example.com:8443/hook?token=***&x=***#***"
        );
        assert_eq!(url("http://token@example.com/"), "http://***@example.com/");
    }

    #[test]
    fn log_text_cannot_forge_a_line() {
        assert_eq!(log_text("a\nb\r", 100), "a\\nb\\r");
        assert_eq!(log_text("abcdef", 3), "abc…");
    }
}
