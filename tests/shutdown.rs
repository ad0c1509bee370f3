//! Shutdown, black-box: the built binary in `--dev` with a deployment in flight gets SIGTERM and must exit 0,
//! logging no error or warning after the signal (no watcher may outlive the embedded cluster).
#![cfg(feature = "dev")]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A generous bound on the whole shutdown: the drain is bounded at 10 s, the actors at 5 s, the background tasks
/// at 5 s; an idle broker takes milliseconds.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Collects every line `r` produces, from a thread, until the stream ends.
fn collect(
    r: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            into.lock().unwrap().push(strip_ansi(&line));
        }
    })
}

/// The line without terminal colour codes, so that level names match whatever the log writer decides.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Sends SIGTERM the way an operator (or the kubelet) would, without unsafe code.
fn terminate(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -TERM {} failed", child.id());
}

/// The broker's process, killed when the test fails before it exits by itself.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The child's exit status once it has exited, or `None` after `deadline` (checked on a cadence, as
/// `common::eventually` does).
async fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let end = tokio::time::Instant::now() + deadline;
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    while tokio::time::Instant::now() < end {
        poll.tick().await;
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_and_exits_cleanly_in_dev_mode() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (api, metrics) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_kidp-broker"))
        .args([
            "--dev",
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics}"),
        ])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the broker starts");
    let mut broker = Broker(child);
    let child = &mut broker.0;
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let readers = [
        collect(child.stdout.take().unwrap(), lines.clone()),
        collect(child.stderr.take().unwrap(), lines.clone()),
    ];

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{api}");
    let ready_by = Instant::now() + Duration::from_secs(30);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        let ok = http
            .get(format!("{base}/readiness"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        if Instant::now() > ready_by || child.try_wait().unwrap().is_some() {
            panic!("broker not ready:\n{}", lines.lock().unwrap().join("\n"));
        }
        poll.tick().await;
    }

    // Deployments in flight: their actors are applying objects and retrying callbacks no one answers.
    for name in ["orders-db", "billing-db", "audit-db"] {
        let body = serde_json::json!({
            "resourceType": "database",
            "resourceName": name,
            "namespace": "team-platform",
            "team": "platform-team",
            "owner": "user@example.com",
            "callbackUrl": "http://127.0.0.1:9/cb",
            "spec": {
                "engine": "postgresql",
                "version": "15",
                "size": "medium",
                "highAvailability": true,
                "backup": {"enabled": true, "retention": "7d"}
            }
        });
        let r = http
            .post(format!("{base}/v1/provision"))
            .json(&body)
            .send()
            .await
            .expect("provision request");
        assert_eq!(
            r.status().as_u16(),
            202,
            "{}",
            r.text().await.unwrap_or_default()
        );
    }

    terminate(child);
    let status = wait_with_deadline(child, EXIT_DEADLINE).await;
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    for r in readers {
        r.join().unwrap();
    }
    let lines = lines.lock().unwrap();
    let log = lines.join("\n");
    // Shown with --nocapture: what the broker said from start to exit.
    eprintln!("{log}");
    let status = status.unwrap_or_else(|| panic!("no exit within {EXIT_DEADLINE:?}:\n{log}"));
    assert!(status.success(), "exit status {status}:\n{log}");
    let signal = lines
        .iter()
        .position(|l| l.contains("shutdown signal received"))
        .unwrap_or_else(|| panic!("no shutdown line:\n{log}"));
    assert!(
        lines[signal..]
            .iter()
            .any(|l| l.contains("shutdown complete")),
        "the shutdown did not run to its end:\n{log}"
    );
    let noisy: Vec<&String> = lines[signal..]
        .iter()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .collect();
    assert!(
        noisy.is_empty(),
        "errors or warnings after the signal:\n{log}"
    );
}
