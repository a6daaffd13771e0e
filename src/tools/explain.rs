//! `driftwatch explain WORKER_ID`: one worker's timeline across HR,
//! directory and app events, the merged current state, and every finding
//! with its owners, deadlines and evidence, as text or JSON. The input is a
//! replay of topic dumps, or the admin port of a running instance.

use crate::replay::WorkerHistory;
use serde_json::{json, Value};
use std::fmt::Write;

/// The explanation as JSON.
pub fn history_json(worker_id: &str, h: &WorkerHistory) -> Value {
    let timeline: Vec<Value> = h
        .timeline
        .iter()
        .map(|e| {
            json!({
                "occurred_at": e.event.occurred_at().to_string(),
                "topic": e.origin.topic.as_str(),
                "partition": e.origin.partition,
                "offset": e.origin.offset,
                "system": e.event.system().as_str(),
                "event_type": e.event.event_type(),
                "event_id": e.event.event_id(),
                "event": serde_json::from_str::<Value>(&crate::codec::json::to_json(&e.event))
                    .unwrap_or(Value::Null),
            })
        })
        .collect();
    json!({
        "worker_id": worker_id,
        "partition": h.partition,
        "timeline": timeline,
        "state": h.state,
        "findings": h.findings,
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

/// The explanation as readable text, from its JSON form (so a running
/// instance's answer renders the same way).
pub fn render_text(v: &Value) -> String {
    let mut out = String::new();
    let worker = s(&v["worker_id"]);
    let live = v["source"] == "live";
    let _ = writeln!(out, "worker {worker} (partition {})", s(&v["partition"]));
    if let Some(timeline) = v["timeline"].as_array() {
        if live {
            let _ = writeln!(
                out,
                "\ntimeline: a running instance keeps state, not history; these are the {} named as evidence by its open findings (`driftwatch explain {worker} --kafka` replays the whole timeline):",
                if timeline.len() == 1 { "1 event".to_string() } else { format!("{} events", timeline.len()) }
            );
        } else {
            let _ = writeln!(
                out,
                "\ntimeline ({}):",
                if timeline.len() == 1 {
                    "1 event".to_string()
                } else {
                    format!("{} events", timeline.len())
                }
            );
        }
        for e in timeline {
            let ev = &e["event"];
            let detail = match s(&e["system"]).as_str() {
                _ if ev.is_null() => String::new(),
                "hr" => format!(
                    "{} type={} dept={}",
                    s(&ev["source_system"]),
                    s(&ev["worker_type"]),
                    s(&ev["department"])
                ),
                "directory" => format!(
                    "{}/{} kind={} enabled={} group={}",
                    s(&ev["directory"]),
                    s(&ev["account_id"]),
                    s(&ev["account_kind"]),
                    s(&ev["enabled"]),
                    s(&ev["group"])
                ),
                _ => format!(
                    "{}/{} entitlement={} privileged={} approved_by={}",
                    s(&ev["app_id"]),
                    s(&ev["account_id"]),
                    s(&ev["entitlement"]),
                    s(&ev["privileged"]),
                    s(&ev["approved_by"])
                ),
            };
            let _ = writeln!(
                out,
                "  {}  {:<24} {}[{}]@{}  {}",
                s(&e["occurred_at"]),
                s(&e["event_type"]),
                s(&e["topic"]),
                s(&e["partition"]),
                s(&e["offset"]),
                detail
            );
        }
    }
    let st = &v["state"];
    let _ = writeln!(out, "\ncurrent state: status {}", s(&st["status"]));
    for r in st["hr"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  HR {}: {} {} department={} hired={} contract_end={}",
            s(&r["source_system"]),
            s(&r["status"]),
            s(&r["worker_type"]),
            s(&r["attributes"]["department"]),
            s(&r["hired_at"]),
            s(&r["contract_end"])
        );
    }
    for a in st["accounts"].as_array().into_iter().flatten() {
        let enabled = if a["enabled"] == true {
            "ENABLED"
        } else {
            "disabled"
        };
        let _ = writeln!(
            out,
            "  {} account {}/{} {} {}{}{}",
            s(&a["system"]),
            s(&a["scope"]),
            s(&a["account_id"]),
            s(&a["kind"]),
            enabled,
            if a["privileged"] == true {
                " privileged"
            } else {
                ""
            },
            if a["deleted"] == true { " deleted" } else { "" }
        );
        for g in a["grants"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "      grant {}{}{} approved_by={}",
                s(&g["name"]),
                if g["privileged"] == true {
                    " (privileged)"
                } else {
                    ""
                },
                if g["active"] == true { "" } else { " revoked" },
                s(&g["approved_by"])
            );
        }
    }
    let findings = v["findings"].as_array().cloned().unwrap_or_default();
    let count = if findings.len() == 1 {
        "1 transition".to_string()
    } else {
        format!("{} transitions", findings.len())
    };
    if live {
        let _ = writeln!(
            out,
            "\nfindings open now ({count}: the latest of each open finding; earlier and resolved ones are in the findings topic, or replay with --kafka):"
        );
    } else {
        let _ = writeln!(out, "\nfindings ({count}):");
    }
    for f in &findings {
        let owner = &f["contributing_owner"];
        let _ = writeln!(
            out,
            "  {} {} {} {} at {}\n      {}\n      owners: accountable {} ({}); contributing {} {} ({}); deadline {}; escalation {} level {}",
            s(&f["status"]),
            s(&f["rule"]),
            s(&f["severity"]),
            s(&f["finding_id"]),
            s(&f["transitioned_at"]),
            s(&f["summary"]),
            s(&f["accountable_owner"]["team"]),
            s(&f["accountable_owner"]["role"]),
            s(&owner["role"]),
            s(&owner["team"]),
            s(&owner["contact"]),
            s(&f["remediation_deadline"]),
            s(&f["escalation"]["target"]),
            s(&f["escalation"]["level"])
        );
        for e in f["evidence"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "      evidence {}[{}]@{} {} {} at {}",
                s(&e["topic"]),
                s(&e["partition"]),
                s(&e["offset"]),
                s(&e["event_type"]),
                s(&e["event_id"]),
                s(&e["occurred_at"])
            );
        }
    }
    out
}

/// Asks a running instance's admin port about one worker: its state and
/// the findings open now. A live instance keeps state, not history: the
/// timeline it can give is the source events named as evidence by those
/// findings (`explain --kafka` replays the whole timeline).
pub fn from_instance(admin: &str, worker_id: &str, token: Option<&str>) -> Result<Value, String> {
    let base = admin.trim_end_matches('/');
    let get = |url: String| -> Result<Value, String> {
        let mut req = ureq::get(&url);
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(404, r)) => r,
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                return Err(format!("{url}: HTTP {code}: {}", text.trim()));
            }
            Err(e) => return Err(format!("{url}: {e}")),
        };
        let text = resp.into_string().map_err(|e| format!("{url}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("{url}: not JSON: {e}"))
    };
    let id = crate::ops::query::percent_encode(worker_id);
    let worker = get(format!("{base}/v1/workers/{id}"))?;
    if worker.get("error").is_some() {
        return Err(s(&worker["error"]));
    }
    // Every page of the worker's open findings.
    let mut findings: Vec<Value> = Vec::new();
    let mut next = Some(format!("/v1/findings?worker_id={id}"));
    while let Some(path) = next.take() {
        let page = get(format!("{base}{path}"))?;
        findings.extend(page["findings"].as_array().cloned().unwrap_or_default());
        next = page["next"].as_str().map(str::to_string);
    }
    let mut timeline: Vec<Value> = findings
        .iter()
        .flat_map(|f| f["evidence"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            json!({
                "occurred_at": e["occurred_at"],
                "topic": e["topic"],
                "partition": e["partition"],
                "offset": e["offset"],
                "event_type": e["event_type"],
                "event_id": e["event_id"],
            })
        })
        .collect();
    timeline.sort_by_key(|e| {
        (
            s(&e["occurred_at"]),
            s(&e["topic"]),
            e["offset"].as_i64().unwrap_or(0),
        )
    });
    timeline.dedup();
    Ok(json!({
        "worker_id": worker_id,
        "partition": worker["partition"],
        "source": "live",
        "timeline": timeline,
        "state": worker["state"],
        "findings": findings,
    }))
}
