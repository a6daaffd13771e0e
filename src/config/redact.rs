//! Secrets stay secret: which librdkafka properties hold one, and a copy of
//! a config table safe to show.

/// Whether a librdkafka property holds a secret (never logged or shown).
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with(".key.pem")
        || k.contains("sasl.oauthbearer.config")
        || k == "ssl.key.location"
}

/// A copy of a config table safe to show: secret librdkafka values and
/// credentials in URLs replaced.
pub fn redacted(table: &toml::Table) -> toml::Table {
    let mut t = table.clone();
    if let Some(lib) = t
        .get_mut("kafka")
        .and_then(|k| k.get_mut("librdkafka"))
        .and_then(toml::Value::as_table_mut)
    {
        for (k, v) in lib.iter_mut() {
            if is_secret_property(k) {
                *v = toml::Value::String("[redacted]".into());
            }
        }
    }
    if let Some(token) = t.get_mut("admin").and_then(|a| a.get_mut("token")) {
        *token = toml::Value::String("[redacted]".into());
    }
    if let Some(toml::Value::String(url)) =
        t.get_mut("schemas").and_then(|s| s.get_mut("registry_url"))
    {
        if let Some((scheme, rest)) = url.split_once("://") {
            if let Some((_, host)) = rest.split_once('@') {
                *url = format!("{scheme}://[redacted]@{host}");
            }
        }
    }
    t
}
