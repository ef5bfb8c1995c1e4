//! The HTTP API's inputs: a method, one of the routes, and a fuzzed path suffix, query and body,
//! sent with the admin token as a raw HTTP/1.1 request to a real hub. Every answer must be a
//! well-formed response with a client-error or success status (bad input is never a 500), and
//! the hub must still serve terminals afterwards. `/admin/backup` is left out: every call writes
//! a copy of the database, which a long run would pile up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poshub_fuzz::{hub, still_alive, ADMIN_TOKEN, ANSWER_WITHIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
const ROUTES: [&str; 17] = [
    "/health",
    "/status",
    "/events",
    "/orders",
    "/orders/",
    "/kitchen-tickets",
    "/inventory",
    "/tables",
    "/table-locks",
    "/ticket-sequences",
    "/metrics",
    "/reset",
    "/admin/reset-leases",
    "/admin/drain",
    "/admin/dead-letters",
    "/admin/dead-letters/requeue",
    "/admin/registers",
];

/// Keeps the request line parseable (no spaces or line breaks in the target), so the input
/// reaches the routes rather than only hyper's request-line parser.
fn target_char(c: char) -> Option<char> {
    (c.is_ascii_graphic()).then_some(c)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let method = METHODS[data[0] as usize % METHODS.len()];
    let route = ROUTES[data[1] as usize % ROUTES.len()];
    let rest = String::from_utf8_lossy(&data[2..]);
    let (tail, body) = rest.split_once('\n').unwrap_or((&rest, ""));
    let target: String = route
        .chars()
        .chain(tail.chars().filter_map(target_char))
        .collect();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let h = hub();
    h.rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(h.http)
            .await
            .expect("connect to the HTTP port");
        s.write_all(request.as_bytes()).await.expect("send request");
        let mut answer = Vec::new();
        tokio::time::timeout(ANSWER_WITHIN, s.read_to_end(&mut answer))
            .await
            .expect("the hub answers in time")
            .expect("read the answer");
        let head = String::from_utf8_lossy(&answer[..answer.len().min(32)]).into_owned();
        let status: u16 = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer to {method} {target}: {head:?}"));
        assert!(
            status < 500 || status == 503,
            "{method} {target} with body {body:?} answered {status}"
        );
        if route == "/reset" {
            still_alive(h.ws).await;
        }
    });
});
