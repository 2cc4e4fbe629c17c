//! How both backends store what has no column type of its own: lists as JSON text.

/// A list of strings (URLs given up on, subject ids, source names) as JSON text; `None`
/// for an empty list.
pub(crate) fn list_to_text(list: &[String]) -> Option<String> {
    (!list.is_empty()).then(|| serde_json::to_string(list).unwrap_or_default())
}

/// The list [`list_to_text`] wrote; empty for `None` or unreadable text.
pub(crate) fn list_from_text(text: Option<String>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}
