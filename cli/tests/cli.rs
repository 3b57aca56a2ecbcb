//! The `sentinela` binary against a real `sentinela-api --standalone` process (embedded mode:
//! SQLite, in-process workers) holding the bus fixture: searches with live progress, exports,
//! keys, cameras, queue statistics, the retention dry run, and the one-line errors.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sentinela_testkit::{BusCities, KillOnDrop, TestDb, free_port, process_env, workspace_binary};
use serde_json::Value;

const ADMIN: &str = "snt_cli_test_admin";
const CITY_KEY: &str = "snt_cli_test_city_a";

struct Server {
    base: String,
    fixture: BusCities,
    dir: tempfile::TempDir,
    _api: KillOnDrop,
    _test: TestDb,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::sqlite().await;
    let fixture = sentinela_testkit::bus_cities(&test.db, dir.path()).await;
    sentinela_core::repo::api_keys::create_key(
        &test.db,
        CITY_KEY,
        "cli",
        "operador-a",
        Some(fixture.city_a),
    )
    .await
    .unwrap();
    let port = free_port();
    let mut api = Command::new(workspace_binary("sentinela-api"));
    api.arg("--standalone")
        .envs(process_env(test.url.expose_secret(), dir.path()))
        .env("API_BIND", format!("127.0.0.1:{port}"))
        .env("SENTINELA_ADMIN_KEY", ADMIN)
        .env("WORKER_CONCURRENCY", "2")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("api.log")).unwrap());
    for job in [
        "RETENTION",
        "CLEANUP",
        "RECOVER",
        "INDEX_SYNC",
        "QUEUE_HYGIENE",
        "WEBHOOKS",
    ] {
        api.env(format!("SENTINELA__SCHEDULER__{job}_CRON"), "off");
    }
    let api = KillOnDrop(api.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{base}/health/ready"))
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "the API did not start: {}",
            std::fs::read_to_string(dir.path().join("api.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Server {
        base,
        fixture,
        dir,
        _api: api,
        _test: test,
    }
}

impl Server {
    /// Runs `sentinela args…` with `key` in SENTINELA_API_KEY (none: unset), no config file.
    fn run(&self, key: Option<&str>, args: &[&str]) -> Output {
        let mut cli = Command::new(env!("CARGO_BIN_EXE_sentinela"));
        cli.args(args)
            .env("SENTINELA_URL", &self.base)
            .env(
                "SENTINELA_CONFIG",
                self.dir.path().join("no-such-config.toml"),
            )
            .env_remove("SENTINELA_API_KEY");
        if let Some(key) = key {
            cli.env("SENTINELA_API_KEY", key);
        }
        cli.output().unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const WINDOW: [&str; 4] = [
    "--from",
    "2026-11-29T08:00:00-03:00",
    "--to",
    "2026-11-29T09:00:00-03:00",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_create_waits_with_progress_then_prints_the_trajectory() {
    let server = server().await;
    let city = server.fixture.city_a.to_string();
    let mut args = vec![
        "search", "create", "--city", &city, "--type", "ônibus", "--color", "vermelho",
    ];
    args.extend(WINDOW);
    args.push("--wait");
    let out = server.run(Some(CITY_KEY), &args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Progress on standard error: a bar with tasks, frames, calls and the time left.
    let last = stderr
        .lines()
        .rfind(|l| l.starts_with('['))
        .unwrap_or_else(|| panic!("no progress line: {stderr}"));
    assert!(
        last.contains("completed") && last.contains("tasks 2/2") && last.contains("frames 12"),
        "{stderr}"
    );
    assert!(last.contains("calls ") && last.contains("ETA"), "{last}");
    // Then the search and where the vehicle went, in the city's time zone.
    assert!(stdout.contains("completed"), "{stdout}");
    let visit = stdout
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_else(|| panic!("no visit: {stdout}"));
    assert!(
        visit.contains("2026-11-29 08:00:08") && visit.contains("cam-a"),
        "the bus at 11:00:08 UTC is 08:00:08 in São Paulo: {visit}"
    );
    assert!(
        stdout.contains("1 visits, 4 sightings (times in America/Sao_Paulo)"),
        "{stdout}"
    );
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("search ")?.strip_suffix(" started"))
        .unwrap()
        .to_owned();

    // show, trajectory (JSON) and the CSV export.
    let out = server.run(Some(CITY_KEY), &["search", "show", &id]);
    assert!(
        text(&out.stdout).contains("tasks 2/2"),
        "{}",
        text(&out.stdout)
    );
    let out = server.run(Some(CITY_KEY), &["--json", "search", "trajectory", &id]);
    let trajectory: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(trajectory["points"].as_array().map(Vec::len), Some(4));
    let csv = server.dir.path().join("out.csv");
    let out = server.run(
        Some(CITY_KEY),
        &[
            "search",
            "export",
            &id,
            "--format",
            "csv",
            "-o",
            csv.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(csv).unwrap();
    assert_eq!(csv.lines().count(), 5, "a header and four sightings: {csv}");

    // The same search again with an Idempotency-Key: one search, not two.
    let mut again = vec![
        "--json", "search", "create", "--city", &city, "--type", "carro",
    ];
    again.extend(WINDOW);
    again.extend(["--idempotency-key", "turno-1"]);
    let first: Value = serde_json::from_slice(&server.run(Some(CITY_KEY), &again).stdout).unwrap();
    let second: Value = serde_json::from_slice(&server.run(Some(CITY_KEY), &again).stdout).unwrap();
    assert_eq!(first["id"], second["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_dry_run_lists_and_deletes_nothing() {
    let server = server().await;
    // Keep recordings one day: both fixture recordings (2026-11-29) are past it.
    let http = reqwest::Client::new();
    let (status, _) = sentinela_testkit::call(
        &http,
        &server.base,
        Some(ADMIN),
        "PATCH",
        &format!("/api/v1/cities/{}", server.fixture.city_a),
        Some(serde_json::json!({"recording_retention_days": 1})),
    )
    .await;
    assert!(status.is_success());
    let out = server.run(Some(ADMIN), &["retention", "--dry-run"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("empty.mp4") && stdout.contains("bus.mp4") && stdout.contains("age"),
        "{stdout}"
    );
    assert!(
        stdout.contains("would delete 2 recordings") && stdout.contains("nothing was deleted"),
        "{stdout}"
    );
    // Nothing deleted: the rows and the files are all there.
    let (_, listed) = sentinela_testkit::call(
        &http,
        &server.base,
        Some(ADMIN),
        "GET",
        &format!("/api/v1/recordings?camera_id={}", server.fixture.camera_a),
        None,
    )
    .await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    for file in ["empty.mp4", "bus.mp4"] {
        assert!(Path::new(server.dir.path()).join(file).exists());
    }
    // Retention itself is the scheduler's; the CLI says how to run it, and a city key may not.
    let out = server.run(Some(ADMIN), &["retention"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("sentinela-scheduler run-once retention"));
    let out = server.run(Some(CITY_KEY), &["retention", "--dry-run"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_or_address_is_one_clear_line_and_a_failure() {
    let server = server().await;
    let one_line = |out: &Output| {
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(out.stdout.is_empty());
        stderr
    };
    let stderr = one_line(&server.run(Some("snt_not_a_key"), &["cities", "list"]));
    assert!(
        stderr.contains("unknown API key") && stderr.contains("401"),
        "{stderr}"
    );
    let stderr = one_line(&server.run(None, &["cities", "list"]));
    assert!(
        stderr.contains("no API key: set SENTINELA_API_KEY"),
        "{stderr}"
    );
    let stderr = one_line(&server.run(
        Some(CITY_KEY),
        &[
            "--url",
            &format!("http://127.0.0.1:{}", free_port()),
            "cities",
            "list",
        ],
    ));
    assert!(stderr.contains("cannot reach the API at"), "{stderr}");
    let stderr = one_line(&server.run(
        Some(CITY_KEY),
        &[
            "search",
            "create",
            "--city",
            "1",
            "--type",
            "bicicleta",
            "--from",
            "ontem",
            "--to",
            "hoje",
        ],
    ));
    assert!(stderr.contains("422"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cameras_cities_and_the_queue() {
    let server = server().await;
    let city = server.fixture.city_a.to_string();
    let out = server.run(
        Some(ADMIN),
        &[
            "keys",
            "create",
            "--name",
            "turno da noite",
            "--user",
            "joao",
            "--city",
            &city,
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("secret (shown this once; store it now): "))
        .unwrap()
        .to_owned();
    let out = server.run(Some(&secret), &["cities", "list"]);
    assert!(text(&out.stdout).contains("Cidade A"), "the new key works");
    assert!(
        !text(&out.stdout).contains("Cidade B"),
        "and sees only its city"
    );
    let listed = text(&server.run(Some(ADMIN), &["keys", "list"]).stdout);
    assert!(
        listed.contains("turno da noite") && !listed.contains(&secret),
        "{listed}"
    );
    let id = listed
        .lines()
        .find(|l| l.contains("turno da noite"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(
        server
            .run(Some(ADMIN), &["keys", "revoke", &id])
            .status
            .success()
    );
    let out = server.run(Some(&secret), &["cities", "list"]);
    assert!(
        text(&out.stderr).contains("revoked"),
        "{}",
        text(&out.stderr)
    );

    let out = server.run(
        Some(ADMIN),
        &[
            "cameras",
            "add",
            "--city",
            &city,
            "--name",
            "Av. Paulista",
            "--lat",
            "-23.56",
            "--lon",
            "-46.65",
            "--path",
            "cam_paulista",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cameras = text(&server.run(Some(CITY_KEY), &["cameras", "list"]).stdout);
    assert!(
        cameras.contains("Av. Paulista") && cameras.contains("-23.56000, -46.65000"),
        "{cameras}"
    );
    let out = server.run(
        Some(CITY_KEY),
        &["cameras", "add", "--city", &city, "--name", "x"],
    );
    assert!(
        text(&out.stderr).contains("403"),
        "cameras are added by admins"
    );

    let out = server.run(Some(ADMIN), &["queue", "stats"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for queue in ["search", "analyze", "periodic"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("sentinela:{queue} "))),
            "{stdout}"
        );
    }
    let out = server.run(Some(ADMIN), &["--json", "queue", "stats"]);
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["queues"].as_array().map(Vec::len), Some(3), "{stats}");
}
