//! Settings: defaults, the plain variable names of the contract, and errors that name the variable.

use std::collections::HashMap;
use std::io::Write;

use secrecy::ExposeSecret;
use sentinela_core::settings::{DetectorProvider, Settings};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_the_embedded_mode_of_the_contract() {
    let s = Settings::from_sources(None, &env(&[])).expect("defaults load");
    assert_eq!(
        s.database_url.expose_secret(),
        "sqlite://sentinela.db?mode=rwc"
    );
    assert!(s.redis_url.is_none() && s.embedded_queue());
    assert_eq!(s.api.bind, "0.0.0.0:8000");
    assert_eq!(s.worker.metrics_bind, "0.0.0.0:9999");
    assert_eq!(s.detector.provider, DetectorProvider::Local);
    assert_eq!(s.sampler.fps, 1.0);
    assert_eq!(
        s.worker.concurrency,
        std::thread::available_parallelism().unwrap().get(),
        "one analysis in flight per core"
    );
    assert_eq!(s.detector.max_in_flight, 8);
    assert_eq!(s.detector.rate_limit, None);
    assert_eq!(s.storage.recordings_dir.to_str(), Some("./recordings"));
    assert_eq!(s.storage.snapshot_dir.to_str(), Some("./snapshots"));
    assert_eq!(s.api.max_search_window_hours, 168);
}

#[test]
fn under_systemd_data_defaults_to_the_state_directory() {
    let s = Settings::from_sources(None, &env(&[("STATE_DIRECTORY", "/var/lib/sentinela")]))
        .expect("loads");
    assert_eq!(
        s.database_url.expose_secret(),
        "sqlite:///var/lib/sentinela/sentinela.db?mode=rwc"
    );
    assert_eq!(
        s.storage.recordings_dir.to_str(),
        Some("/var/lib/sentinela/recordings")
    );
    assert_eq!(
        s.storage.snapshot_dir.to_str(),
        Some("/var/lib/sentinela/snapshots")
    );
    // What is set still wins.
    let s = Settings::from_sources(
        None,
        &env(&[
            ("STATE_DIRECTORY", "/var/lib/sentinela"),
            ("RECORDINGS_DIR", "/srv/recordings"),
        ]),
    )
    .expect("loads");
    assert_eq!(s.storage.recordings_dir.to_str(), Some("/srv/recordings"));
}

#[test]
fn plain_variables_override_the_file_and_prefixed_variables() {
    let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    writeln!(
        file,
        "[sampler]\nfps = 0.5\n[worker]\nconcurrency = 2\n[api]\nmax_search_window_hours = 48"
    )
    .unwrap();
    let s = Settings::from_sources(
        Some(file.path()),
        &env(&[
            (
                "DATABASE_URL",
                "postgres://sentinela:hunter2@db:5432/sentinela",
            ),
            ("REDIS_URL", "redis://redis:6379/0"),
            ("DETECTOR", "rekognition"),
            ("SAMPLE_FPS", "2"),
            ("SENTINELA__WORKER__CONCURRENCY", "3"),
            ("WORKER_CONCURRENCY", "6"),
            ("DETECTOR_RATE_LIMIT", "5"),
            ("METRICS_BIND", "127.0.0.1:9100"),
            ("SENTINELA__WORKER__DRAIN_TIMEOUT_SECS", "5"),
        ]),
    )
    .expect("loads");
    assert_eq!(s.sampler.fps, 2.0, "SAMPLE_FPS beats the file");
    assert_eq!(
        s.worker.concurrency, 6,
        "WORKER_CONCURRENCY beats SENTINELA__WORKER__CONCURRENCY"
    );
    assert_eq!(
        s.worker.drain_timeout_secs, 5,
        "prefixed variables reach nested keys"
    );
    assert_eq!(s.api.max_search_window_hours, 48, "the file beats defaults");
    assert_eq!(s.detector.provider, DetectorProvider::Rekognition);
    assert_eq!(s.detector.rate_limit, Some(5.0));
    assert_eq!(s.worker.metrics_bind, "127.0.0.1:9100");
    assert!(!s.embedded_queue());
    assert!(
        !format!("{s:?}").contains("hunter2"),
        "secrets never appear in Debug output"
    );
}

#[test]
fn bad_values_name_the_variable() {
    let cases = [
        ("SAMPLE_FPS", "abc", "SAMPLE_FPS: \"abc\" is not a number"),
        ("SAMPLE_FPS", "0", "SAMPLE_FPS: 0 is out of range"),
        (
            "WORKER_CONCURRENCY",
            "-1",
            "WORKER_CONCURRENCY: \"-1\" is not a whole number",
        ),
        (
            "WORKER_CONCURRENCY",
            "0",
            "WORKER_CONCURRENCY: must be at least 1",
        ),
        ("DETECTOR", "yolo", "DETECTOR: \"yolo\" is not a detector"),
        (
            "DETECTOR_RATE_LIMIT",
            "-3",
            "DETECTOR_RATE_LIMIT: -3 must be a positive",
        ),
        (
            "DATABASE_URL",
            "mysql://root:pw@db/x",
            "DATABASE_URL: \"mysql://root:***@db/x\" is not a database URL",
        ),
        (
            "REDIS_URL",
            "localhost:6379",
            "REDIS_URL: \"localhost:6379\" is not a Redis URL",
        ),
    ];
    for (var, value, expected) in cases {
        let err = Settings::from_sources(None, &env(&[(var, value)]))
            .expect_err(&format!("{var}={value} must be rejected"))
            .to_string();
        assert!(err.starts_with(expected), "{var}={value}: got {err:?}");
        assert!(!err.contains("pw@"), "the password is redacted: {err}");
    }
}

#[test]
fn a_missing_settings_file_is_an_error_naming_it() {
    let err = Settings::from_sources(
        Some(std::path::Path::new("/nonexistent/sentinela.toml")),
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/nonexistent/sentinela.toml"), "{err}");
}

/// `.env.example` documents every variable with its default: loaded as an environment, it must be
/// accepted and give the built-in defaults.
#[test]
fn the_env_example_loads_and_matches_the_defaults() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.env.example")).unwrap();
    let env: HashMap<String, String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert!(env.len() >= 20, "{env:?}");
    let example = Settings::from_sources(None, &env).unwrap();
    let defaults = Settings::from_sources(None, &HashMap::new()).unwrap();
    assert_eq!(
        format!("{:?}", example.scheduler),
        format!("{:?}", defaults.scheduler)
    );
    assert_eq!(
        format!("{:?}", example.worker),
        format!("{:?}", defaults.worker)
    );
    assert_eq!(
        format!("{:?}", example.sampler),
        format!("{:?}", defaults.sampler)
    );
    assert_eq!(
        example.storage.recordings_dir,
        defaults.storage.recordings_dir
    );
}

#[test]
fn secrets_can_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        path.to_string_lossy().into_owned()
    };
    let db = write("database_url", "postgres://u:p@db:5432/x\n");
    let redis = write("redis_url", "redis://:pw@redis:6379/0");
    let key = write("admin_key", "  snt_from_a_file\n");
    let s = Settings::from_sources(
        None,
        &env(&[
            ("DATABASE_URL_FILE", &db),
            ("REDIS_URL_FILE", &redis),
            ("SENTINELA_ADMIN_KEY_FILE", &key),
        ]),
    )
    .unwrap();
    assert_eq!(s.database_url.expose_secret(), "postgres://u:p@db:5432/x");
    assert_eq!(
        s.redis_url.unwrap().expose_secret(),
        "redis://:pw@redis:6379/0"
    );
    assert_eq!(s.admin_key.unwrap().expose_secret(), "snt_from_a_file");
    let both = Settings::from_sources(
        None,
        &env(&[
            ("DATABASE_URL_FILE", &db),
            ("DATABASE_URL", "sqlite://x.db"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(both.starts_with("DATABASE_URL_FILE: set either"), "{both}");
    let missing = Settings::from_sources(None, &env(&[("REDIS_URL_FILE", "/nonexistent/x")]))
        .unwrap_err()
        .to_string();
    assert!(
        missing.starts_with("REDIS_URL_FILE: cannot read"),
        "{missing}"
    );
}

#[test]
fn metrics_bind_sets_every_binary_and_the_api_defaults_to_loopback() {
    let s = Settings::from_sources(None, &env(&[])).unwrap();
    assert_eq!(s.api.metrics_bind, "127.0.0.1:9464");
    let s = Settings::from_sources(None, &env(&[("METRICS_BIND", "0.0.0.0:9100")])).unwrap();
    assert_eq!(s.api.metrics_bind, "0.0.0.0:9100");
    assert_eq!(s.worker.metrics_bind, "0.0.0.0:9100");
    assert_eq!(s.scheduler.metrics_bind, "0.0.0.0:9100");
}

#[test]
fn urls_are_redacted_in_the_userinfo_and_the_query() {
    use sentinela_core::db::redact_url;
    for (url, want) in [
        (
            "postgres://u:secret@db:5432/x",
            "postgres://u:***@db:5432/x",
        ),
        ("postgres://u:se/cr@et@db/x", "postgres://u:***@db/x"),
        ("redis://:pw@redis:6379/0", "redis://:***@redis:6379/0"),
        ("postgres://u@db/x", "postgres://u@db/x"),
        (
            "postgres://db/x?user=u&password=hunter2&sslmode=require",
            "postgres://db/x?user=u&password=***&sslmode=require",
        ),
        (
            "postgres://db/x?sslpassword=k&PASSWORD=p#frag",
            "postgres://db/x?sslpassword=***&PASSWORD=***#frag",
        ),
        (
            "sqlite://sentinela.db?mode=rwc",
            "sqlite://sentinela.db?mode=rwc",
        ),
    ] {
        assert_eq!(redact_url(url), want, "{url}");
    }
}
