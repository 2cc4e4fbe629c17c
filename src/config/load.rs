//! Reading: TOML into the config structs, every unknown key and every value of the wrong
//! type reported with its key path rather than stopping at the first.
//!
//! serde stops at the first error, so reading goes round: a value that cannot be read is
//! reported and taken out (its key then takes its default), and reading starts again,
//! until it succeeds. Keys nobody reads are collected on the way (`serde_ignored`).

use serde::de::DeserializeOwned;

use super::{Config, ConfigError, ConfigProblem};

/// A struct with every key at its declared default.
pub(super) fn from_empty<T: DeserializeOwned>() -> T {
    T::deserialize(toml::Value::Table(toml::Table::new())).expect("every key has a default")
}

/// Reads `text`: the configuration (with defaults where values were missing or unusable)
/// and the problems found.
pub(super) fn read(text: &str) -> Result<(Config, Vec<ConfigProblem>), ConfigError> {
    let mut value: toml::Value = toml::from_str::<toml::Table>(text)
        .map(toml::Value::Table)
        .map_err(|e| {
            ConfigError::Invalid(vec![ConfigProblem {
                path: "(file)".into(),
                message: format!("not valid TOML: {}", e.message()),
            }])
        })?;
    let mut problems = Vec::new();
    // Each round takes one bad value out, so this ends; the bound is a guard.
    for _ in 0..10_000 {
        let mut unknown = Vec::new();
        let read = serde_path_to_error::deserialize::<_, Config>(serde_ignored::Deserializer::new(
            value.clone(),
            &mut |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path)),
        ));
        match read {
            Ok(config) => {
                problems.extend(unknown.into_iter().map(|path| ConfigProblem {
                    path,
                    message: "unknown key".into(),
                }));
                return Ok((config, problems));
            }
            Err(e) => {
                let path = e.path().clone();
                problems.push(ConfigProblem {
                    path: path_text(&path),
                    message: e.inner().message().to_string(),
                });
                if !remove(&mut value, &path) {
                    break;
                }
            }
        }
    }
    Ok((super::load::from_empty(), problems))
}

fn path_text(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." {
        "(file)".into()
    } else {
        text
    }
}

/// The key path of a key nobody read, as the problems write paths.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => match ignored_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// Takes the value at `path` out of `value`; false when there is none to take.
fn remove(value: &mut toml::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = value;
    for segment in parents {
        let next = match (segment, at) {
            (Segment::Map { key }, toml::Value::Table(t)) => t.get_mut(key.as_str()),
            (Segment::Seq { index }, toml::Value::Array(a)) => a.get_mut(*index),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return false,
        }
    }
    match (last, at) {
        (Segment::Map { key }, toml::Value::Table(t)) => t.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, toml::Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}
