//! `/health` reports the OS (bundle) version the supervisor passes as `POSHUB_OS_VERSION`, so a
//! fleet tool compares the version it pushed with what runs (the hub's own `version` is the
//! binary's); null when the hub runs without a supervisor.

mod common;

use common::*;

/// Kills (SIGKILL) and reaps the hub when the test ends, passed or failed.
struct Killed(HubProcess);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_os_version_given_by_the_supervisor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Killed(HubProcess::spawn(dir.path(), &[("POSHUB_OS_VERSION", "1.4.0")]).await);
    let (code, h) = http_get(hub.0.http, "/health").await;
    assert_eq!(code, 200, "{h}");
    assert_eq!(h["osVersion"], "1.4.0", "{h}");
    drop(hub);

    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Killed(HubProcess::spawn(dir.path(), &[]).await);
    let (_, h) = http_get(hub.0.http, "/health").await;
    assert!(
        h.get("osVersion").is_some_and(serde_json::Value::is_null),
        "{h}"
    );
}
