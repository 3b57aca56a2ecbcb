//! The `sentinela-worker` binary answers `--help` and refuses bad settings with one line.

use std::process::Command;

#[test]
fn help_answers() {
    let out = Command::new(env!("CARGO_BIN_EXE_sentinela-worker"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sentinela-worker"));
}

#[test]
fn a_bad_setting_is_one_line_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_sentinela-worker"))
        .env("SAMPLE_FPS", "fast")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim(), "error: SAMPLE_FPS: \"fast\" is not a number");
}

#[tokio::test]
async fn postgres_without_redis_is_refused_naming_redis_url() {
    use secrecy::ExposeSecret;
    let test = sentinela_testkit::TestDb::postgres().await;
    let out = Command::new(env!("CARGO_BIN_EXE_sentinela-worker"))
        .env("DATABASE_URL", test.url.expose_secret())
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        line.starts_with("error: REDIS_URL: required with a PostgreSQL DATABASE_URL"),
        "{err}"
    );
    test.cleanup().await;
}
