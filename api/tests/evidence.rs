//! The trajectory as evidence, on generated recordings of the real red-bus photo: the bus passes
//! cameras A, B, C and comes back to A, so the trajectory reads four visits in order; a sighting's
//! image has the box drawn where the detector put it; a clip decodes, lasts what was asked and
//! covers the sighting; CSV and GeoJSON exports validate; a task that failed (its file missing) is
//! listed with its error and, once the file is back, retried to an exact `completed`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use sentinela_api::{Application, Mode};
use sentinela_core::detect::BBox;
use sentinela_core::repo::{cameras, cities, recordings};
use sentinela_core::settings::Settings;
use sentinela_core::video::{evidence, jpeg};
use sentinela_testkit::TestDb;
use serde_json::{Value, json};

const ADMIN: &str = "snt_test_evidence_admin";

struct App {
    base: String,
    http: reqwest::Client,
}

impl App {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        sentinela_testkit::call(&self.http, &self.base, Some(ADMIN), method, path, body).await
    }

    async fn finished(&self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, search) = self
                .json("GET", &format!("/api/v1/searches/{id}"), None)
                .await;
            assert_eq!(status, StatusCode::OK);
            if search["status"] != "pending" && search["status"] != "processing" {
                return search;
            }
            assert!(Instant::now() < deadline, "search did not finish: {search}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap()
}

/// The share of pixels along the four edges of `rect` that are the drawn box's red.
fn red_along_edges(frame: &opencv::core::Mat, rect: opencv::core::Rect) -> f64 {
    use opencv::core::Vec3b;
    use opencv::prelude::*;
    let mut edge = Vec::new();
    for x in rect.x..rect.x + rect.width {
        edge.push((x, rect.y));
        edge.push((x, rect.y + rect.height - 1));
    }
    for y in rect.y..rect.y + rect.height {
        edge.push((rect.x, y));
        edge.push((rect.x + rect.width - 1, y));
    }
    let red = edge
        .iter()
        .filter(|(x, y)| {
            let px = frame.at_2d::<Vec3b>(*y, *x).unwrap();
            px[2] > 180 && px[1] < 90 && px[0] < 90
        })
        .count();
    red as f64 / edge.len() as f64
}

fn ffprobe(file: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames:format=duration",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks RFC 7946's structure: a FeatureCollection of Features, each with a geometry whose
/// positions are [longitude, latitude] in range; LineStrings of two positions or more.
fn check_geojson(doc: &Value) -> (usize, usize) {
    assert_eq!(doc["type"], "FeatureCollection", "{doc}");
    assert!(doc.get("crs").is_none(), "RFC 7946 has no crs member");
    let position = |p: &Value| {
        let p = p.as_array().expect("a position is an array");
        assert!(p.len() >= 2, "{p:?}");
        let (lon, lat) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
        assert!((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat));
    };
    let (mut points, mut lines) = (0, 0);
    for f in doc["features"].as_array().unwrap() {
        assert_eq!(f["type"], "Feature", "{f}");
        assert!(
            f["properties"].is_object() || f["properties"].is_null(),
            "{f}"
        );
        let geometry = &f["geometry"];
        match geometry["type"].as_str().unwrap() {
            "Point" => {
                position(&geometry["coordinates"]);
                points += 1;
            }
            "LineString" => {
                let coords = geometry["coordinates"].as_array().unwrap();
                assert!(coords.len() >= 2, "{f}");
                coords.iter().for_each(position);
                lines += 1;
            }
            other => panic!("unexpected geometry {other}"),
        }
    }
    (points, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trajectory_is_evidence_an_operator_can_check() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::sqlite().await;
    sentinela_testkit::render_bus_pair(dir.path(), 6.0, 2.0);
    // Cameras A, B, C (A's name has a comma, for the CSV's quoting) and the bus in front of A,
    // B, C, then A again; a fifth recording of A whose file is missing until the retry.
    let city = cities::create(
        &test.db,
        cities::NewCity {
            name: "Cidade".into(),
            timezone: "America/Sao_Paulo".into(),
            recording_retention_days: 30,
            max_storage_bytes: None,
            database_url: None,
        },
    )
    .await
    .unwrap();
    let mut cams = Vec::new();
    for (name, lat, lon) in [
        ("Av. Paulista, 1000", -23.561, -46.656),
        ("cam-b", -23.552, -46.662),
        ("cam-c", -23.548, -46.634),
    ] {
        cams.push(
            cameras::create(
                &test.db,
                &test.db,
                cameras::NewCamera {
                    city_id: city.id,
                    name: name.into(),
                    location: None,
                    latitude: Some(lat),
                    longitude: Some(lon),
                    mediamtx_path: None,
                },
            )
            .await
            .unwrap(),
        );
    }
    for (i, (cam, minute, file)) in [
        (0, 0, "a1.mp4"),
        (1, 1, "b.mp4"),
        (2, 2, "c.mp4"),
        (0, 3, "a2.mp4"),
        (0, 6, "missing.mp4"),
    ]
    .into_iter()
    .enumerate()
    {
        if i < 4 {
            std::fs::copy(dir.path().join("bus.mp4"), dir.path().join(file)).unwrap();
        }
        let start = t0() + Span::minutes(minute);
        recordings::register(
            &test.db,
            recordings::NewRecording {
                camera_id: cams[cam].id,
                city_id: city.id,
                file_path: file.into(),
                started_at: start,
                ended_at: start + Span::seconds(6),
                size_bytes: 1,
            },
        )
        .await
        .unwrap();
    }

    let mut env = sentinela_testkit::process_env(test.url.expose_secret(), dir.path());
    env.extend(
        [
            ("SENTINELA_ADMIN_KEY", ADMIN),
            ("SENTINELA__SCHEDULER__RECOVER_CRON", "off"),
            ("SENTINELA__SCHEDULER__INDEX_SYNC_CRON", "off"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let env: std::collections::HashMap<String, String> = env.into_iter().collect();
    let settings = Settings::from_sources(None, &env).unwrap();
    let application = Application::build(
        settings,
        Mode {
            standalone: true,
            demo: false,
        },
    )
    .await
    .unwrap();
    let app = App {
        base: format!("http://{}", application.address()),
        http: reqwest::Client::new(),
    };
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(application.run_until(async move {
        let _ = stop_rx.wait_for(|v| *v).await;
    }));

    let (status, created) = app
        .json(
            "POST",
            "/api/v1/searches",
            Some(json!({
                "city_id": city.id,
                "vehicle_type": "ônibus",
                "color": "vermelho",
                "start_date": "2026-11-29T11:00:00Z",
                "end_date": "2026-11-29T11:10:00Z"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_i64().unwrap();
    let search = app.finished(id).await;
    assert_eq!(search["status"], "completed_with_errors", "{search}");
    assert_eq!(search["progress"]["tasks_failed"], 1, "{search}");

    // Four visits in order A, B, C, A, each from 2 s to 5 s into its recording.
    let (status, trajectory) = app
        .json("GET", &format!("/api/v1/searches/{id}/trajectory"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let visits = trajectory["visits"].as_array().unwrap();
    let order: Vec<i64> = visits
        .iter()
        .map(|v| v["camera_id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        order,
        [cams[0].id, cams[1].id, cams[2].id, cams[0].id],
        "{trajectory}"
    );
    for (v, minute) in visits.iter().zip([0, 1, 2, 3]) {
        let at = |k: &str| DateTime::parse_from_rfc3339(v[k].as_str().unwrap()).unwrap();
        assert_eq!(
            at("first_seen"),
            t0() + Span::minutes(minute) + Span::seconds(2),
            "{v}"
        );
        assert_eq!(
            at("last_seen"),
            t0() + Span::minutes(minute) + Span::seconds(5),
            "{v}"
        );
        assert_eq!(v["sightings"], 4, "{v}");
        assert_eq!(v["color"], "red", "{v}");
        assert!(v["best_image_url"].is_string(), "{v}");
    }
    assert_eq!(trajectory["cameras_visited"].as_array().unwrap().len(), 3);

    // The sighting's evidence: its box, recording and offset; the image has the box drawn.
    let point = &trajectory["points"][0];
    assert_eq!(point["offset_ms"], 2000, "{point}");
    let bbox: BBox = serde_json::from_value(point["bbox"].clone()).unwrap();
    let resp = app.get(point["image_url"].as_str().unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert!(
        resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("private")
    );
    let boxed = jpeg::decode(&resp.bytes().await.unwrap()).unwrap();
    let rect = evidence::pixel_box(
        &bbox,
        opencv::prelude::MatTraitConst::cols(&boxed),
        opencv::prelude::MatTraitConst::rows(&boxed),
    );
    let drawn = red_along_edges(&boxed, rect);
    assert!(
        drawn > 0.8,
        "the box is drawn along the detection's edges: {drawn}"
    );
    // The stored frame itself has no such box (so the check above can fail).
    let snapshot = std::fs::read_dir(dir.path().join("snapshots").join(id.to_string()))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let raw = jpeg::decode(&std::fs::read(snapshot).unwrap()).unwrap();
    assert!(red_along_edges(&raw, rect) < 0.3);
    let resp = app.get(point["crop_url"].as_str().unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let crop = jpeg::decode(&resp.bytes().await.unwrap()).unwrap();
    let crop_width = opencv::prelude::MatTraitConst::cols(&crop);
    assert!(
        (f64::from(crop_width) - f64::from(rect.width) * 1.2).abs() <= 4.0,
        "crop {crop_width} px for a box of {} px",
        rect.width
    );

    // A clip of 2 s before and after the sighting: decodes, lasts 4 s, covers the sighting.
    let resp = app
        .get(&format!(
            "{}?before=2&after=2",
            point["clip_url"].as_str().unwrap()
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "video/mp4");
    let clip_start =
        DateTime::parse_from_rfc3339(resp.headers()["x-clip-start"].to_str().unwrap()).unwrap();
    let clip = dir.path().join("clip.mp4");
    std::fs::write(&clip, resp.bytes().await.unwrap()).unwrap();
    let probe = ffprobe(&clip);
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((duration - 4.0).abs() <= 1.0, "{probe}");
    let frames: u64 = probe["streams"][0]["nb_read_frames"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(frames >= 30, "{probe}");
    let seen = DateTime::parse_from_rfc3339(point["timestamp"].as_str().unwrap()).unwrap();
    assert!(
        clip_start <= seen && seen <= clip_start + Span::milliseconds((duration * 1000.0) as i64)
    );
    let resp = app
        .get(&format!(
            "{}?before=31",
            point["clip_url"].as_str().unwrap()
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // CSV, read back by Python's csv module: a header and one row per sighting, quoted names.
    let resp = app.get(&format!("/api/v1/searches/{id}/export.csv")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = resp.text().await.unwrap();
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import csv,json,sys; r=list(csv.reader(sys.stdin)); print(json.dumps(r))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(csv.as_bytes())
        .unwrap();
    let rows: Vec<Vec<String>> =
        serde_json::from_slice(&python.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(rows.len(), 17, "{csv}");
    assert!(rows.iter().all(|r| r.len() == 14), "{csv}");
    assert_eq!(rows[1][3], "Av. Paulista, 1000");
    let visit_column: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        visit_column,
        [["1"; 4], ["2"; 4], ["3"; 4], ["4"; 4]].concat()
    );

    // GeoJSON: three camera points and the path A → B → C → A.
    let resp = app
        .get(&format!("/api/v1/searches/{id}/export.geojson"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/geo+json");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(check_geojson(&doc), (3, 1));
    let line = doc["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["geometry"]["type"] == "LineString")
        .unwrap();
    let coords = line["geometry"]["coordinates"].as_array().unwrap();
    assert_eq!(coords.len(), 4);
    assert_eq!(coords[0], json!([-46.656, -23.561]));
    assert_eq!(coords[0], coords[3]);

    // Tasks: the failed one says why; the file restored, a retry completes the search exactly.
    let (status, page) = app
        .json("GET", &format!("/api/v1/searches/{id}/tasks?limit=2"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (_, rest) = app
        .json(
            "GET",
            &format!(
                "/api/v1/searches/{id}/tasks?cursor={}",
                page["next_cursor"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let all: Vec<Value> = [
        page["items"].as_array().unwrap().clone(),
        rest["items"].as_array().unwrap().clone(),
    ]
    .concat();
    assert_eq!(all.len(), 5);
    let failed: Vec<&Value> = all.iter().filter(|t| t["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{all:?}");
    assert!(failed[0]["error"].is_string(), "{all:?}");
    assert_eq!(failed[0]["camera_id"], cams[0].id);
    let before = search["progress"].clone();
    std::fs::copy(dir.path().join("bus.mp4"), dir.path().join("missing.mp4")).unwrap();
    let (status, retried) = app
        .json("POST", &format!("/api/v1/searches/{id}/retry"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["status"], "processing", "{retried}");
    let search = app.finished(id).await;
    assert_eq!(search["status"], "completed", "{search}");
    let progress = &search["progress"];
    assert_eq!(progress["tasks_total"], 5);
    assert_eq!(progress["tasks_done"], 5);
    assert_eq!(progress["tasks_failed"], 0);
    assert_eq!(
        progress["frames_analyzed"].as_i64().unwrap(),
        before["frames_analyzed"].as_i64().unwrap() + 6,
        "{search}"
    );
    let (_, trajectory) = app
        .json("GET", &format!("/api/v1/searches/{id}/trajectory"), None)
        .await;
    assert_eq!(
        trajectory["points"].as_array().unwrap().len(),
        20,
        "no duplicates"
    );
    assert_eq!(trajectory["visits"].as_array().unwrap().len(), 5);
    let (status, _) = app
        .json("POST", &format!("/api/v1/searches/{id}/retry"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing left to retry");

    let _ = stop.send(true);
    running.await.unwrap().unwrap();
}
