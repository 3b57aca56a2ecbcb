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
