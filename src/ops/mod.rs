//! The operations surface: what a running detector knows of itself
//! ([`live`]), Prometheus metrics ([`metrics`]), the admin HTTP port
//! ([`admin`]) and its read-only views of the live state ([`query`]).

pub mod admin;
pub mod live;
pub mod metrics;
pub mod query;
