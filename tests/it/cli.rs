//! The command line: `--check-config`, and refusals to start.

use std::process::Command;

fn check_config(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_webhookd"))
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_example() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
        .unwrap();
    let (code, stdout, _) = check_config(&text);
    assert_eq!(code, 0);
    assert!(stdout.ends_with(": ok\n"), "{stdout}");
}

#[test]
fn check_config_lists_every_problem_and_exits_2() {
    let (code, _, stderr) = check_config(
        "[server]\nlisten = 5\nmystery = true\n[[sources]]\nname = \"s\"\nwrite_key = \"TOP-SECRET\"\n  [[sources.destinations]]\n  name = \"d\"\n  urls = []\n",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    assert!(
        stderr.contains("server.listen: invalid type: integer `5`, expected a string"),
        "{stderr}"
    );
    assert!(stderr.contains("server.mystery: unknown key"), "{stderr}");
    assert!(
        stderr.contains("sources[0].destinations[0].urls: has 0 URLs; 1 to 5 are allowed"),
        "{stderr}"
    );
    assert!(!stderr.contains("TOP-SECRET"));
}

#[test]
fn the_service_does_not_start_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[delivery]\ntimeout_ms = 0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_webhookd"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("delivery.timeout_ms: must be 1 to 600000 (it is 0)"));
}

#[test]
fn a_second_webhookd_on_the_same_sqlite_file_refuses_to_start() {
    let first = crate::common::Webhookd::start_on(None, &crate::common::one_source_config(), "");
    // The same configuration file (and so the same database), another process.
    let out = Command::new(env!("CARGO_BIN_EXE_webhookd"))
        .arg("--config")
        .arg(first.dir.path().join("config.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("another webhookd is running on this database"),
        "{stderr}"
    );
}

#[test]
fn a_storage_url_password_never_appears() {
    // PostgreSQL on a port where nothing listens: the service cannot start, and says so
    // without the password.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nbackend = \"postgres\"\n\
         url = \"postgres://webhookd:Sup3rS3cretPw@127.0.0.1:9/webhookd\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_webhookd"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("webhookd:***@127.0.0.1:9"), "{stderr}");
    assert!(!stderr.contains("Sup3rS3cretPw"), "{stderr}");
}
