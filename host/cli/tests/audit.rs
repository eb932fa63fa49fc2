//! `arbiter audit verify --key` against cut, deleted and rewritten logs,
//! and `arbiter serve` refusing to extend a tampered or vanished one. The
//! logs are written by the server's own `AuditLog`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use arbiter_server::{AuditLog, AuditOptions, audit_state_path};
use arbiter_tests::{orders_daily_bundle, root};
use serde_json::{Map, Value, json};

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arbiter"));
    command.args(args).current_dir(root()).env("ARBITER_CACHE_DIR", root().join("target/arbiter-tests/cache"));
    command
}

fn run(args: &[&str]) -> Output {
    command(args).output().unwrap_or_else(|e| panic!("cannot run arbiter: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory with an audit key pair made by `arbiter keygen`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = run(&["keygen", "--out", &dir.path().join("audit.key").display().to_string()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn log(&self) -> PathBuf {
        self.path("audit.jsonl")
    }

    /// Seven decisions, a checkpoint every three; `shutdown` ends the log
    /// as a clean stop does, else as a crash leaves it.
    fn write_log(&self, shutdown: bool) -> String {
        let key = arbiter_engine::signature::read_secret_key(&self.path("audit.key")).unwrap();
        let options = AuditOptions { key: Some(key), checkpoint_every: 3, ..AuditOptions::default() };
        let log = AuditLog::open(&self.log(), vec![], options).unwrap();
        for n in 1..=7 {
            let record =
                json!({"kind": "decision", "request": {"id": format!("r{n}")}, "decision": {"decision": "allow"}});
            log.append(record.as_object().cloned().unwrap_or_default()).unwrap();
        }
        if shutdown {
            log.checkpoint().unwrap();
        }
        std::fs::read_to_string(self.log()).unwrap()
    }

    fn verify(&self, extra: &[&str]) -> Output {
        let log = self.log().display().to_string();
        let mut args = vec!["audit", "verify", log.as_str(), "--key"];
        let key = self.arg("audit.key.pub");
        args.push(&key);
        args.extend_from_slice(extra);
        run(&args)
    }
}

fn cut(log: &str, records: usize) -> String {
    log.lines().take(records).map(|line| format!("{line}\n")).collect()
}

/// The attacker's rewrite, with no key: each record edited by `edit`, the
/// chain recomputed by an unkeyed `AuditLog`, checkpoints given the new
/// count and head under their old signatures.
fn rewrite(log: &str, out: &Path, edit: impl Fn(&mut Map<String, Value>)) {
    let rewritten = AuditLog::open(out, vec![], AuditOptions::default()).unwrap();
    let mut prev = "0".repeat(64);
    for (count, line) in log.lines().enumerate() {
        let mut record: Map<String, Value> = serde_json::from_str(line).unwrap();
        for chained in ["seq", "prev", "hash"] {
            record.remove(chained);
        }
        if record.get("kind") == Some(&json!("checkpoint")) {
            record.insert("count".into(), count.into());
            record.insert("head".into(), prev.clone().into());
        }
        edit(&mut record);
        rewritten.append(record).unwrap();
        let written = std::fs::read_to_string(out).unwrap();
        let last: Value = serde_json::from_str(written.lines().last().unwrap_or_default()).unwrap();
        prev = last["hash"].as_str().unwrap_or_default().to_owned();
    }
}

/// Replaces the setup's log by a rewrite in which decision r2 became a deny.
fn forge(setup: &Setup, log: &str) {
    let forged = setup.path("forged.jsonl");
    rewrite(log, &forged, |record| {
        if record.get("request").and_then(|r| r.get("id")) == Some(&json!("r2")) {
            record.insert("decision".into(), json!({"decision": "deny"}));
        }
    });
    std::fs::rename(&forged, setup.log()).unwrap();
}

#[test]
fn verify_with_the_key_says_what_is_signed_and_what_is_not() {
    let setup = Setup::new();
    setup.write_log(true);
    let out = setup.verify(&[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("10 records, chain intact"), "{stdout}");
    assert!(stdout.contains("signed through record 10 (3 checkpoints verified)"), "{stdout}");
    assert!(stdout.contains("no unsigned tail"), "{stdout}");
    assert!(stdout.contains("audit.jsonl.state: its record 10 is in the log"), "{stdout}");

    let unkeyed = run(&["audit", "verify", &setup.log().display().to_string()]);
    assert!(unkeyed.status.success());
    assert!(text(&unkeyed.stdout).contains("10 records, chain intact but unauthenticated (no --key)"));

    // A crash leaves records after the last checkpoint: verify says how many.
    let crashed = Setup::new();
    crashed.write_log(false);
    let stdout = text(&crashed.verify(&[]).stdout);
    assert!(stdout.contains("unsigned tail: 1 records after the last checkpoint could be cut"), "{stdout}");
}

#[test]
fn verify_detects_a_cut_after_and_before_a_checkpoint() {
    let setup = Setup::new();
    let log = setup.write_log(true);
    for (kept, last) in [(8, "checkpoint"), (7, "decision")] {
        let shortened = cut(&log, kept);
        let record: Value = serde_json::from_str(shortened.lines().last().unwrap_or_default()).unwrap();
        assert_eq!(record["kind"], last);
        std::fs::write(setup.log(), shortened).unwrap();
        let out = setup.verify(&[]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains(&format!("TAMPERED: the log ends at record {kept}, but its state file names record 10")),
            "{stdout}"
        );
    }
    // The state file moved off the host still tells, with --state.
    let copy = setup.path("state-copy");
    std::fs::rename(audit_state_path(&setup.log()), &copy).unwrap();
    let local = text(&setup.verify(&[]).stdout);
    assert!(local.contains("no state file"), "without it the cut is invisible: {local}");
    let out = setup.verify(&["--state", &copy.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("records were cut"));
}

#[test]
fn verify_detects_a_rewrite_with_a_recomputed_chain() {
    let setup = Setup::new();
    forge(&setup, &setup.write_log(true));
    let unkeyed = run(&["audit", "verify", &setup.log().display().to_string()]);
    assert!(text(&unkeyed.stdout).contains("record 10: not the record the state file names"));
    std::fs::remove_file(audit_state_path(&setup.log())).unwrap();
    let unkeyed = run(&["audit", "verify", &setup.log().display().to_string()]);
    assert!(unkeyed.status.success(), "without key or state file the chain cannot tell");
    let out = setup.verify(&[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("TAMPERED: record 4: checkpoint signature does not verify"), "{stdout}");

    // Without its checkpoints, nothing is authenticated.
    let stripped = setup.path("stripped.jsonl");
    let signed = std::fs::read_to_string(setup.log()).unwrap();
    let decisions: String =
        signed.lines().filter(|l| !l.contains("\"checkpoint\"")).map(|l| format!("{l}\n")).collect();
    rewrite(&decisions, &stripped, |_| {});
    std::fs::rename(&stripped, setup.log()).unwrap();
    let out = setup.verify(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("UNAUTHENTICATED: no signed checkpoint in 7 records"), "{}", text(&out.stdout));
}

#[test]
fn verify_of_a_deleted_log_is_an_error_naming_what_the_state_file_knew() {
    let setup = Setup::new();
    setup.write_log(true);
    std::fs::remove_file(setup.log()).unwrap();
    let out = setup.verify(&[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot read") && stderr.contains("audit.jsonl.state names record 10"), "{stderr}");
    let elsewhere = setup.verify(&["--state", &setup.arg("no-such-copy")]);
    assert_eq!(elsewhere.status.code(), Some(2), "an explicit --state must exist");
}

/// `arbiter serve` on the setup's log; `extra` flags after the audit ones.
fn serve(setup: &Setup, extra: &[&str]) -> Child {
    let bundle = orders_daily_bundle().display().to_string();
    let (log, key) = (setup.log().display().to_string(), setup.arg("audit.key"));
    let mut args = vec!["serve", "--bundle", &bundle, "--anonymous", "--http", "127.0.0.1:0", "--no-grpc"];
    args.extend_from_slice(&["--audit-log", &log, "--audit-key", &key, "--audit-checkpoint-every", "3"]);
    args.extend_from_slice(extra);
    command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// The server's stderr, once it has exited (it must, within a minute).
fn refused(mut server: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            server.kill().unwrap();
            panic!("the server started on a log it must refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = server.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    text(&out.stderr)
}

#[test]
fn serve_refuses_a_tampered_log() {
    let setup = Setup::new();
    forge(&setup, &setup.write_log(true));
    let stderr = refused(serve(&setup, &[]));
    assert!(stderr.contains("record 4: checkpoint signature does not verify"), "{stderr}");
    assert!(stderr.contains("refusing to extend it"), "{stderr}");
}

#[test]
fn serve_refuses_a_vanished_log_unless_told_to_start_a_new_chain() {
    let setup = Setup::new();
    setup.write_log(true);
    std::fs::remove_file(setup.log()).unwrap();
    let stderr = refused(serve(&setup, &[]));
    assert!(stderr.contains("is gone, but") && stderr.contains("names its record 10"), "{stderr}");
    assert!(!setup.log().exists(), "no fresh chain was started");

    let mut server = serve(&setup, &["--audit-new-chain"]);
    let mut first = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut first).unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(first.starts_with("arbiter serving"), "{first}");
    let log = std::fs::read_to_string(setup.log()).unwrap();
    let started: Value = serde_json::from_str(log.lines().next().unwrap_or_default()).unwrap();
    assert_eq!(started["kind"], "chain_started");
    assert_eq!(started["details"]["previous"]["record"], 10);
    let out = setup.verify(&[]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}

#[test]
fn audit_flags_need_an_audit_log() {
    let bundle = orders_daily_bundle().display().to_string();
    let out =
        run(&["serve", "--bundle", &bundle, "--anonymous", "--http", "127.0.0.1:0", "--no-grpc", "--audit-required"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("need --audit-log"), "{}", text(&out.stderr));
}
