//! The `sentinela-scheduler` binary answers `--help` and refuses bad settings with one line.

use std::process::Command;

#[test]
fn help_answers() {
    let out = Command::new(env!("CARGO_BIN_EXE_sentinela-scheduler"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sentinela-scheduler"));
}

#[test]
fn a_bad_setting_is_one_line_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_sentinela-scheduler"))
        .env("SAMPLE_FPS", "fast")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim(), "error: SAMPLE_FPS: \"fast\" is not a number");
}

#[test]
fn a_malformed_cron_expression_refuses_to_start_naming_the_job_and_the_expression() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sentinela-scheduler"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display()),
        )
        .env("SENTINELA__SCHEDULER__CLEANUP_CRON", "0 30 25 * * *")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("job cleanup"), "{err}");
    assert!(err.contains("SENTINELA__SCHEDULER__CLEANUP_CRON"), "{err}");
    assert!(err.contains("\"0 30 25 * * *\""), "{err}");
}

#[test]
fn run_once_prints_what_each_job_did() {
    let dir = tempfile::tempdir().unwrap();
    for (job, expected) in [
        ("retention", "retention: recordings_deleted=0 "),
        ("cleanup", "cleanup: searches_deleted=0 "),
        ("recover", "recover: tasks_requeued=0 "),
        ("index-sync", "index-sync: cameras_scanned=0 "),
        (
            "queue-hygiene",
            "queue-hygiene: done_pruned=0 dead_pruned=0",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sentinela-scheduler"))
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display()),
            )
            .env("RECORDINGS_DIR", dir.path().join("recordings"))
            .env("SNAPSHOT_DIR", dir.path().join("snapshots"))
            .args(["run-once", job])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{job}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with(expected), "{job}: {stdout}");
    }
}

#[test]
fn an_unknown_recordings_time_zone_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sentinela-scheduler"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display()),
        )
        .env("RECORDINGS_TZ", "Mars/Olympus")
        .args(["run-once", "index-sync"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RECORDINGS_TZ") && err.contains("Mars/Olympus"),
        "{err}"
    );
}
