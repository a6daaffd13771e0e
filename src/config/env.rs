//! Environment overrides of any key: `DRIFTWATCH_<SECTION>__<KEY>`.

use super::*;

/// Prefix of environment overrides: `DRIFTWATCH_<SECTION>__<KEY>`, sections
/// and keys separated by a double underscore, e.g.
/// `DRIFTWATCH_KAFKA__BOOTSTRAP_SERVERS=broker:9092` or
/// `DRIFTWATCH_RULES__ORPHAN_ACCOUNT__SLA=2h`. Under `kafka.librdkafka` the
/// single underscores of the key become dots:
/// `DRIFTWATCH_KAFKA__LIBRDKAFKA__SASL_PASSWORD` sets `sasl.password`.
pub const ENV_PREFIX: &str = "DRIFTWATCH_";

/// The TOML path an environment variable overrides, if it is one.
fn env_path(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if !rest.contains("__") {
        return None; // e.g. DRIFTWATCH_LOG_FORMAT: not a config key
    }
    let parts: Vec<&str> = rest.split("__").collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut path: Vec<String> = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let seg = match (
            path.first().map(String::as_str),
            path.get(1).map(String::as_str),
            i,
        ) {
            // Rule ids are upper case.
            (Some("rules"), _, 1) => p.to_string(),
            (Some("kafka"), Some("librdkafka"), 2) => p.to_ascii_lowercase().replace('_', "."),
            _ => p.to_ascii_lowercase(),
        };
        path.push(seg);
    }
    Some(path)
}

/// An environment value as TOML when it reads as a scalar or array
/// (`true`, `5`, `0.1`, `["a","b"]`), else as a string.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => match t.remove("v") {
            Some(v) if !v.is_table() => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Applies environment overrides to a parsed TOML table; returns the
/// names of the variables applied.
pub fn apply_env(
    table: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let mut applied = Vec::new();
    let mut vars: Vec<(String, String)> = vars.into_iter().collect();
    vars.sort();
    for (name, raw) in vars {
        let Some(path) = env_path(&name) else {
            continue;
        };
        let (last, parents) = path.split_last().expect("at least two segments");
        let mut node = &mut *table;
        for seg in parents {
            let entry = node
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry.as_table_mut().ok_or_else(|| {
                invalid(
                    path.join("."),
                    format!("{name} sets a key inside `{seg}`, which is not a table"),
                )
            })?;
        }
        // librdkafka takes every value as a string, and a value read as a
        // number could lose its text (`0.10`); a token is a string whatever
        // it looks like (read as a number, it would be quoted in an error),
        // and so is a group instance id (a pod ordinal is a number).
        let value = if (path.len() == 3 && path[0] == "kafka" && path[1] == "librdkafka")
            || path == ["admin", "token"]
            || path == ["kafka", "group_instance_id"]
        {
            toml::Value::String(raw)
        } else {
            env_value(&raw)
        };
        node.insert(last.clone(), value);
        applied.push(name);
    }
    Ok(applied)
}
