//! What the commands print for a person (`--json` prints the API's JSON instead).

use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect(), &mut out);
    for row in rows {
        line(row, &mut out);
    }
    out
}

/// A JSON value as a cell: strings bare, absent as `-`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn items(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

pub(crate) fn created_key(v: &Value) -> String {
    let mut out = keys_one(&v["key"]);
    let _ = writeln!(
        out,
        "\nsecret (shown this once; store it now): {}",
        cell(&v["secret"])
    );
    out
}

pub(crate) fn keys_one(v: &Value) -> String {
    keys(&Value::Array(vec![v.clone()]))
}

pub(crate) fn keys(v: &Value) -> String {
    let rows = items(v)
        .iter()
        .map(|k| {
            vec![
                cell(&k["id"]),
                cell(&k["prefix"]),
                cell(&k["name"]),
                cell(&k["user_id"]),
                k["city_id"]
                    .as_i64()
                    .map_or("admin".into(), |c| c.to_string()),
                cell(&k["expires_at"]),
                cell(&k["last_used_at"]),
                cell(&k["revoked_at"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "PREFIX",
            "NAME",
            "USER",
            "CITY",
            "EXPIRES",
            "LAST USED",
            "REVOKED",
        ],
        rows,
    )
}

pub(crate) fn cities(v: &Value) -> String {
    let rows = items(v)
        .iter()
        .map(|c| {
            vec![
                cell(&c["id"]),
                cell(&c["name"]),
                cell(&c["timezone"]),
                cell(&c["recording_retention_days"]),
                cell(&c["own_database"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "TIME ZONE",
            "RETENTION (DAYS)",
            "OWN DATABASE",
        ],
        rows,
    )
}

pub(crate) fn cameras(v: &Value) -> String {
    let rows = items(v)
        .iter()
        .map(|c| {
            vec![
                cell(&c["id"]),
                cell(&c["city_id"]),
                cell(&c["name"]),
                cell(&c["location"]),
                match (c["latitude"].as_f64(), c["longitude"].as_f64()) {
                    (Some(lat), Some(lon)) => format!("{lat:.5}, {lon:.5}"),
                    _ => "-".into(),
                },
                cell(&c["mediamtx_path"]),
                if c["enabled"] == false { "no" } else { "yes" }.into(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "CITY",
            "NAME",
            "LOCATION",
            "COORDINATES",
            "FOLDER",
            "ENABLED",
        ],
        rows,
    )
}

pub(crate) fn queue(v: &Value) -> String {
    let queues = items(&v["queues"])
        .iter()
        .map(|q| {
            ["name", "pending", "scheduled", "running", "done", "dead"]
                .iter()
                .map(|k| cell(&q[*k]))
                .collect()
        })
        .collect();
    let mut out = table(
        &["QUEUE", "PENDING", "SCHEDULED", "RUNNING", "DONE", "DEAD"],
        queues,
    );
    let cities: Vec<Vec<String>> = items(&v["cities"])
        .iter()
        .map(|c| {
            vec![
                cell(&c["city_id"]),
                cell(&c["pending"]),
                cell(&c["processing"]),
                cell(&c["oldest_at"]),
            ]
        })
        .collect();
    out.push('\n');
    if cities.is_empty() {
        out.push_str("no city has unfinished tasks\n");
    } else {
        out.push_str(&table(
            &["CITY", "TASKS PENDING", "TASKS PROCESSING", "OLDEST QUEUED"],
            cities,
        ));
    }
    if let Some(oldest) = v["oldest_at"].as_str() {
        let _ = writeln!(out, "oldest unfinished task queued at {oldest}");
    }
    for db in items(&v["unavailable_databases"]) {
        let _ = writeln!(out, "warning: database {} could not be read", cell(&db));
    }
    out
}

pub(crate) fn retention(v: &Value) -> String {
    let rows: Vec<Vec<String>> = items(&v["items"])
        .iter()
        .map(|r| {
            vec![
                cell(&r["city_id"]),
                cell(&r["camera_id"]),
                cell(&r["recording_id"]),
                cell(&r["started_at"]),
                cell(&r["size_bytes"]),
                cell(&r["reason"]),
                cell(&r["file_path"]),
            ]
        })
        .collect();
    let listed = rows.len();
    let mut out = if rows.is_empty() {
        String::new()
    } else {
        table(
            &[
                "CITY",
                "CAMERA",
                "RECORDING",
                "STARTED",
                "BYTES",
                "WHY",
                "FILE",
            ],
            rows,
        )
    };
    let total = v["recordings"].as_u64().unwrap_or(0);
    let _ = writeln!(
        out,
        "dry run: retention would delete {total} recordings ({} bytes){}; it keeps {} in use and {} holding sightings; nothing was deleted",
        cell(&v["bytes"]),
        if (listed as u64) < total {
            format!(", the first {listed} listed")
        } else {
            String::new()
        },
        cell(&v["kept_in_use"]),
        cell(&v["kept_evidence"]),
    );
    out
}

pub(crate) fn search(v: &Value) -> String {
    let p = &v["progress"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "search {} · city {} · {} · plate {} · colour {} · type {}",
        cell(&v["id"]),
        cell(&v["city_id"]),
        cell(&v["status"]),
        cell(&v["plate"]),
        cell(&v["color"]),
        cell(&v["vehicle_type"]),
    );
    let _ = writeln!(
        out,
        "window {} → {} · tasks {}/{} ({} failed) · frames {} · detector calls {}",
        cell(&v["start_date"]),
        cell(&v["end_date"]),
        cell(&p["tasks_done"]),
        cell(&p["tasks_total"]),
        cell(&p["tasks_failed"]),
        cell(&p["frames_analyzed"]),
        cell(&p["detector_calls"]),
    );
    if let Some(error) = v["error_message"].as_str() {
        let _ = writeln!(out, "error: {error}");
    }
    out
}

pub(crate) fn searches(v: &Value) -> String {
    let rows = items(&v["items"])
        .iter()
        .map(|s| {
            vec![
                cell(&s["id"]),
                cell(&s["city_id"]),
                cell(&s["status"]),
                cell(&s["plate"]),
                cell(&s["color"]),
                cell(&s["vehicle_type"]),
                format!(
                    "{}/{}",
                    cell(&s["progress"]["tasks_done"]),
                    cell(&s["progress"]["tasks_total"])
                ),
                cell(&s["created_at"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID", "CITY", "STATUS", "PLATE", "COLOUR", "TYPE", "TASKS", "CREATED",
        ],
        rows,
    );
    let _ = writeln!(out, "{} searches match", cell(&v["total"]));
    out
}

fn local(at: &Value, timezone: Option<chrono_tz::Tz>) -> String {
    let Some(at) = at
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
    else {
        return "-".into();
    };
    match timezone {
        Some(tz) => at
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
    }
}

pub(crate) fn trajectory(v: &Value, timezone: Option<chrono_tz::Tz>) -> String {
    let visits = items(&v["visits"]);
    if visits.is_empty() {
        return "the vehicle was not seen\n".into();
    }
    let rows = visits
        .iter()
        .enumerate()
        .map(|(i, visit)| {
            vec![
                (i + 1).to_string(),
                local(&visit["first_seen"], timezone),
                local(&visit["last_seen"], timezone),
                format!(
                    "{} {}",
                    cell(&visit["camera_id"]),
                    cell(&visit["camera_name"])
                ),
                cell(&visit["sightings"]),
                cell(&visit["plate"]),
                cell(&visit["color"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "VISIT",
            "FIRST SEEN",
            "LAST SEEN",
            "CAMERA",
            "SIGHTINGS",
            "PLATE",
            "COLOUR",
        ],
        rows,
    );
    let _ = writeln!(
        out,
        "{} visits, {} sightings{}",
        visits.len(),
        items(&v["points"]).len(),
        timezone.map_or(" (times in UTC)".into(), |tz| format!(" (times in {tz})")),
    );
    out
}

/// One progress line: tasks, frames, calls and the time left at the pace so far.
pub(crate) fn progress(v: &Value, elapsed: Duration) -> String {
    let p = &v["progress"];
    let done = p["tasks_done"].as_u64().unwrap_or(0) + p["tasks_failed"].as_u64().unwrap_or(0);
    let total = p["tasks_total"].as_u64().unwrap_or(0);
    let width = 24usize;
    let filled = (done * width as u64)
        .checked_div(total)
        .map_or(0, |n| usize::try_from(n).unwrap_or(width));
    let eta = if done == 0 || done >= total {
        "-".to_owned()
    } else {
        let left = elapsed.as_secs_f64() * (total - done) as f64 / done as f64;
        format!("{}:{:02}", left as u64 / 60, left as u64 % 60)
    };
    format!(
        "[{}{}] {} · tasks {done}/{total} · frames {} · calls {} · ETA {eta}",
        "#".repeat(filled),
        ".".repeat(width - filled.min(width)),
        cell(&v["status"]),
        cell(&p["frames_analyzed"]),
        cell(&p["detector_calls"]),
    )
}
