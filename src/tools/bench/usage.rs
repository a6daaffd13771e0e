//! What the harness reads of this process from `/proc` (Linux): resident
//! memory and CPU time.

/// Resident set size of this process, bytes (Linux).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// CPU seconds, user and system, from a `/proc/.../stat` line (Linux).
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after it.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Clock ticks: 100 a second on Linux.
    Some((utime + stime) / 100.0)
}

/// CPU time of this process (threads that ended included), and of the
/// embedded mock broker's thread, in seconds.
pub fn cpu_seconds() -> Option<(f64, f64)> {
    let all = stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let mut mock = 0.0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if stat.contains("(rdk:mock)") {
            mock += stat_cpu_seconds(&stat).unwrap_or(0.0);
        }
    }
    Some((all, mock))
}

/// Microseconds of CPU per event since `cpu0`: of the whole process, and
/// of the embedded mock broker's thread.
pub(super) fn cpu_per_event_us(cpu0: Option<(f64, f64)>, events: u64) -> Option<(f64, f64)> {
    match (cpu0, cpu_seconds()) {
        (Some((a, ma)), Some((b, mb))) if events > 0 => {
            let per = |s: f64| s * 1e6 / events as f64;
            Some((per(b - a), per(mb - ma)))
        }
        _ => None,
    }
}

/// Microseconds of CPU per event since `cpu0`, for the output line.
pub(super) fn cpu_per_event(cpu0: Option<(f64, f64)>, events: u64) -> String {
    describe_cpu(cpu_per_event_us(cpu0, events))
}

/// [`cpu_per_event_us`] for the output line.
pub(super) fn describe_cpu(per_event: Option<(f64, f64)>) -> String {
    match per_event {
        Some((all, mock)) => {
            if mock > 0.0 {
                format!(
                    "{all:.1} µs of CPU each, {:.1} without the mock broker's thread",
                    all - mock
                )
            } else {
                format!("{all:.1} µs of CPU each")
            }
        }
        None => "CPU time unknown".into(),
    }
}
