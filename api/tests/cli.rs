//! The `sentinela-api` binary as a separate process: help, seeding, and one-line errors for a
//! database it cannot use.

use std::process::{Command, Output};

fn api(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sentinela-api"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sentinela-api")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_describes_the_commands() {
    let out = api(&["--help"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["--standalone", "--demo", "seed", "migrate", "serve"] {
        assert!(text.contains(word), "--help mentions {word}: {text}");
    }
}

#[test]
fn a_malformed_or_unreachable_database_is_one_line_naming_database_url() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "mysql://root:secret@db/x",
            "is not a database URL",
            "unsupported scheme",
        ),
        ("not a url", "is not a database URL", "garbage"),
        (
            "postgres://postgres:secret@127.0.0.1:1/test",
            "cannot connect to postgres://postgres:***@127.0.0.1:1/test",
            "nothing listens on port 1",
        ),
        (
            "sqlite:///nonexistent-dir/x.db?mode=rwc",
            "cannot connect to sqlite:///nonexistent-dir/x.db",
            "SQLite file in a missing directory",
        ),
    ];
    for (url, expected, why) in cases {
        let out = api(&["seed"], &[("DATABASE_URL", url)]);
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert!(!out.status.success(), "{why}: must exit non-zero");
        assert_eq!(lines.len(), 1, "{why}: exactly one error line: {err}");
        assert!(
            lines[0].starts_with("error: DATABASE_URL: "),
            "{why}: names the variable: {err}"
        );
        assert!(lines[0].contains(expected), "{why}: {err}");
        assert!(
            !err.contains("secret"),
            "{why}: the password is redacted: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{why}: no panic: {err}"
        );
    }
    drop(dir);
}

#[test]
fn seed_is_idempotent_on_a_fresh_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("seed.db").display());
    let first = api(&["seed"], &[("DATABASE_URL", &url)]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = api(&["seed"], &[("DATABASE_URL", &url)]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        first.stdout, second.stdout,
        "the same city and cameras, same ids"
    );
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(
        text.contains("Demo City") && text.contains("3 cameras"),
        "{text}"
    );
}
