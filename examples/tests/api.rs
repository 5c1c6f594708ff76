//! The example app, started as a process the way the README starts it, driven over HTTP.

mod common;

use std::{
    io::{Read, Write},
    process::{Command, Stdio},
    time::Duration,
};

use common::{App, example_binary};

#[test]
fn caching_and_throttling_work_end_to_end_on_the_default_file_driver() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(dir.path(), &[]);

    let (status, miss, slow) = app.request("GET", "/users/17", "");
    assert_eq!(status, 200, "{miss}");
    assert!(
        miss.contains("x-cache: miss") && miss.contains("\"name\":\"User 17\""),
        "{miss}"
    );
    assert!(miss.contains("x-ratelimit-limit: 60"), "{miss}");
    let (_, hit, fast) = app.request("GET", "/users/17", "");
    assert!(hit.contains("x-cache: hit"), "{hit}");
    assert!(
        slow >= Duration::from_millis(300) && fast < slow,
        "miss {slow:?}, hit {fast:?}"
    );
    assert!(
        dir.path().join("storage/framework/cache").is_dir(),
        "the file driver by default"
    );

    let (status, forgot, _) = app.request("PUT", "/users/17", "");
    assert_eq!(status, 200);
    assert!(forgot.contains("\"forgotten\":true"), "{forgot}");
    let (_, again, _) = app.request("GET", "/users/17", "");
    assert!(again.contains("x-cache: miss"), "{again}");

    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(app.request("POST", "/login", "Accept-Language: pt-BR\r\n"));
    }
    let codes: Vec<u16> = statuses.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(codes, [200, 200, 200, 200, 200, 429, 429]);
    let limited = &statuses[5].1;
    assert!(limited.contains("retry-after: "), "{limited}");
    assert!(limited.contains("Muitas requisi"), "{limited}");
}

#[test]
fn reports_are_answered_from_the_response_cache_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(dir.path(), &[]);
    let (status, miss, slow) = app.request("GET", "/reports/7", "");
    assert_eq!(status, 200, "{miss}");
    assert!(
        miss.contains("x-cache: miss") && miss.contains("\"report\":7"),
        "{miss}"
    );
    let (status, hit, fast) = app.request("GET", "/reports/7", "");
    assert_eq!(status, 200, "{hit}");
    assert!(
        hit.contains("x-cache: hit") && hit.contains("age: "),
        "{hit}"
    );
    assert!(hit.contains("\"report\":7"), "{hit}");
    assert!(
        slow >= Duration::from_millis(300) && fast < slow,
        "miss {slow:?}, hit {fast:?}"
    );
}

#[test]
fn the_first_page_of_users_is_warmed_at_start_up_and_ready_says_when() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(dir.path(), &[("CACHE_DRIVER", "array")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let (status, response, _) = app.request("GET", "/ready", "");
        if status == 200 {
            break response;
        }
        assert_eq!(status, 503, "{response}");
        assert!(response.contains(r#""ready":false"#), "{response}");
        assert!(std::time::Instant::now() < deadline, "not ready in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ready.contains(r#""ready":true"#), "{ready}");
    assert!(
        ready.contains(r#""total":11"#) && ready.contains(r#""loaded":11"#),
        "{ready}"
    );
    let (status, user, took) = app.request("GET", "/users/1", "");
    assert_eq!(status, 200);
    assert!(user.contains("x-cache: hit"), "warmed: {user}");
    assert!(
        took < Duration::from_millis(300),
        "no 300 ms load: {took:?}"
    );
}

#[test]
fn the_stats_endpoint_counts_this_instances_cache_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(dir.path(), &[("CACHE_DRIVER", "array")]);
    app.request("GET", "/users/13", "");
    app.request("GET", "/users/13", "");
    let (status, response, _) = app.request("GET", "/_cache/stats", "");
    assert_eq!(status, 200, "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let stats: serde_json::Value = serde_json::from_str(body).unwrap();
    let count = |name: &str| {
        stats[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {body}"))
    };
    assert!(count("hits") >= 1 && count("misses") >= 1, "{body}");
    // The user stored once, plus one rate-limit hit per request (the layer counts in the cache).
    assert!(count("writes") >= 4, "{body}");
    assert_eq!(count("errors"), 0, "{body}");
}

#[test]
fn the_app_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::start(dir.path(), &[("CACHE_DRIVER", "array")]);
    assert_eq!(app.request("GET", "/users/1", "").0, 200);
    let status = Command::new("kill")
        .args(["-TERM", &app.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    app.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
    assert!(rest.contains("shut down"), "{rest}");
    assert!(app.child.wait().unwrap().success());
}

#[test]
fn a_bad_driver_is_one_line_and_a_non_zero_exit() {
    let output = Command::new(example_binary())
        .env("CACHE_DRIVER", "mongodb")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("CACHE_DRIVER"), "{err}");
}

/// `GET /metrics` after known traffic: exact counts of the cache and of both rate limiters,
/// and text that Prometheus' own checker accepts.
#[test]
fn the_metrics_endpoint_counts_known_traffic_exactly_and_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(dir.path(), &[("CACHE_DRIVER", "array")]);
    app.request("GET", "/users/13", ""); // `has` misses, `remember` misses and stores
    app.request("GET", "/users/13", ""); // both hit
    for _ in 0..6 {
        app.request("POST", "/login", ""); // 5 admitted, the 6th limited
    }
    let (status, response, _) = app.request("GET", "/metrics", "");
    assert_eq!(status, 200, "{response}");
    assert!(
        response.contains("content-type: text/plain; version=0.0.4"),
        "{response}"
    );
    let text = response.split("\r\n\r\n").nth(1).unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    };
    let cache = r#"cache="array""#;
    assert_eq!(
        value(&format!(r#"jtc_cache_gets_total{{{cache},result="miss"}}"#)),
        2.0
    );
    assert_eq!(
        value(&format!(r#"jtc_cache_gets_total{{{cache},result="hit"}}"#)),
        2.0
    );
    assert_eq!(
        value(&format!(
            r#"jtc_cache_writes_total{{{cache},op="remember"}}"#
        )),
        1.0
    );
    // The global limiter counts every request but /metrics in this cache: 8 hits.
    assert_eq!(
        value(&format!(r#"jtc_cache_writes_total{{{cache},op="hit"}}"#)),
        8.0
    );
    let requests = |limiter: &str, route: &str, result: &str| {
        value(&format!(
            r#"jtc_throttle_requests_total{{limiter="{limiter}",route="{route}",result="{result}"}}"#
        ))
    };
    assert_eq!(requests("login", "/login", "allowed"), 5.0);
    assert_eq!(requests("login", "/login", "limited"), 1.0);
    assert_eq!(requests("global", "/login", "allowed"), 6.0);
    assert_eq!(requests("global", "/users/{id}", "allowed"), 2.0);
    assert_eq!(requests("global", "/users/{id}", "limited"), 0.0);
    assert!(
        !text.contains("127.0.0.1") && !text.contains("user:13"),
        "{text}"
    );

    // Durations appear with the first calls: each operation's first call on a thread is timed.
    assert!(
        text.lines().any(|line| line.starts_with(
            r#"jtc_cache_operation_duration_seconds_count{cache="array",op="remember"}"#
        )),
        "no duration series after two requests:\n{text}"
    );

    let checked = promtool_check(text);
    assert!(checked.status.success(), "promtool: {checked:?}\n{text}");
}

fn promtool_check(text: &str) -> std::process::Output {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("promtool cannot run ({error}): `sudo apt-get install -y prometheus`")
        });
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    promtool.wait_with_output().unwrap()
}

/// Slowloris: 200 connections trickle their headers a line at a time. The app still answers
/// a normal client at once, and closes each trickling connection once its headers have taken
/// longer than `APP_HEADER_TIMEOUT_MS` (`axum::serve`'s defaults held them for as long as
/// the client cared to trickle).
#[test]
fn trickling_connections_are_closed_and_do_not_starve_other_clients() {
    use std::{net::TcpStream, time::Instant};

    let dir = tempfile::tempdir().unwrap();
    let app = App::start(dir.path(), &[("APP_HEADER_TIMEOUT_MS", "3000")]);
    let started = Instant::now();
    let mut trickling: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = TcpStream::connect(&app.address).unwrap();
            stream
                .write_all(b"GET /users/1 HTTP/1.1\r\nHost: test\r\n")
                .unwrap();
            stream
        })
        .collect();

    // One header line per connection every 250 ms, for up to 8 s; a connection the server
    // closed fails its write (or its read, below) and is no longer trickled on.
    let mut closed_at = vec![None::<Duration>; 200];
    let mut normal = None::<Duration>;
    while started.elapsed() < Duration::from_secs(8) && closed_at.iter().any(Option::is_none) {
        for (index, stream) in trickling.iter_mut().enumerate() {
            if closed_at[index].is_some() {
                continue;
            }
            if stream.write_all(b"X-Trickle: 1\r\n").is_err() || server_closed(stream) {
                closed_at[index] = Some(started.elapsed());
            }
        }
        if normal.is_none() {
            let (status, body, took) = app.request("GET", "/_cache/stats", "");
            assert_eq!(status, 200, "{body}");
            normal = Some(took);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // A starved client would wait at least until the trickling connections are closed (3 s);
    // the bound leaves a loaded machine room below that.
    let normal = normal.unwrap();
    assert!(
        normal < Duration::from_millis(2_500),
        "a normal client waited {normal:?}"
    );
    let still_open = closed_at.iter().filter(|at| at.is_none()).count();
    assert_eq!(still_open, 0, "trickling connections still open after 8 s");
    let earliest = closed_at.iter().flatten().min().unwrap();
    assert!(
        *earliest >= Duration::from_millis(2_900),
        "closed after the bound, not before: {earliest:?}"
    );
}

/// Whether the server has closed `stream` (or answered it and is closing): a read that
/// does not wait sees the end of the stream, a reset, or a response.
fn server_closed(stream: &mut std::net::TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buffer = [0u8; 256];
    let closed = match stream.read(&mut buffer) {
        Ok(_) => true, // 0: closed; more: a response (408) before closing
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}
