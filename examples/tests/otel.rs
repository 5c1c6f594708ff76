//! The example app built with the `otel` feature sends its spans over OTLP/HTTP to
//! `OTEL_EXPORTER_OTLP_ENDPOINT`: a collector stand-in records what arrives.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    process::Command,
    sync::{Arc, Mutex},
};

use common::App;

/// What the stand-in collector received: (request line, body).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An HTTP server on a free port that answers every request `200 OK` and keeps it.
fn collector() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let received = Received::default();
    let sink = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                sink.lock().unwrap().push((line.trim().to_owned(), body));
                let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                              content-length: 0\r\n\r\n";
                stream.write_all(answer.as_bytes()).unwrap();
            }
        }
    });
    (address, received)
}

#[test]
fn the_cache_spans_reach_an_otlp_collector_without_the_keys() {
    let (endpoint, received) = collector();
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::start(
        dir.path(),
        &[
            ("CACHE_DRIVER", "array"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ],
    );
    assert_eq!(app.request("GET", "/users/5", "").0, 200);
    assert_eq!(app.request("GET", "/users/5", "").0, 200);
    // A graceful stop flushes the spans still batched.
    let status = Command::new("kill")
        .args(["-TERM", &app.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(app.child.wait().unwrap().success());

    let received = received.lock().unwrap();
    assert!(!received.is_empty(), "nothing reached the collector");
    assert!(
        received
            .iter()
            .all(|(line, _)| line.starts_with("POST /v1/traces ")),
        "{received:?}"
    );
    let body: Vec<u8> = received.iter().flat_map(|(_, body)| body.clone()).collect();
    let contains = |text: &str| body.windows(text.len()).any(|w| w == text.as_bytes());
    for expected in [
        "jtc-example-api",
        "cache",
        "key_hash",
        "remember",
        "jtc-throttle: decision",
    ] {
        assert!(contains(expected), "no {expected:?} in the exported spans");
    }
    assert!(!contains("user:5"), "a raw cache key was exported");
}
