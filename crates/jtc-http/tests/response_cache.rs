//! `ResponseCacheLayer` over real HTTP (an axum server on a free port, requests over TCP) on
//! the array, file and Redis drivers: hits with `Age`, the storage rules both ways, `Vary`,
//! `304`, one handler run for 100 concurrent misses, `max_body`, forgetting, tags, and a
//! Redis that dies while the app keeps answering.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, header},
    response::IntoResponse,
    routing::get,
};
use http::Method;
use jtc_cache::{ArrayDriver, Cache, FileDriver, RedisDriver};
use jtc_http::{ResponseCache, ResponseCacheLayer};
use jtc_test_support::{RedisServer, shared_server, unique_prefix};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// How many times each handler ran, by path.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<HashMap<String, usize>>>);

impl Calls {
    fn count(&self, path: &str) {
        *self.0.lock().unwrap().entry(path.to_owned()).or_default() += 1;
    }

    fn of(&self, path: &str) -> usize {
        self.0.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn app(cache: Cache, calls: Calls) -> Router {
    let layer = ResponseCacheLayer::new(cache)
        .ttl(Duration::from_secs(30))
        .stale_while_revalidate(Duration::from_secs(30))
        .max_body(1024)
        .tags(|parts| {
            if parts.uri.path().starts_with("/tagged") {
                vec!["reports".to_owned()]
            } else {
                Vec::new()
            }
        });
    Router::new()
        .route(
            "/report/{id}",
            get(|State(calls): State<Calls>, Path(id): Path<String>| async move {
                calls.count("report");
                tokio::time::sleep(Duration::from_millis(50)).await;
                (
                    [(header::CACHE_CONTROL, "public, max-age=30")],
                    format!("report {id}"),
                )
            }),
        )
        .route(
            "/{rule}",
            get(|State(calls): State<Calls>, Path(rule): Path<String>, headers: HeaderMap| async move {
                calls.count(&rule);
                let language = headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                let mut response = format!("{rule} {language}").into_response();
                let fields = response.headers_mut();
                if rule == "short" {
                    // Fresh for a second; slow, so that a refresh is seen to run behind.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let body = format!("short {}", calls.of("short"));
                    return ([(header::CACHE_CONTROL, "max-age=1")], body).into_response();
                }
                match rule.as_str() {
                    "nostore" => fields.insert(header::CACHE_CONTROL, "no-store".parse().unwrap()),
                    "private" => fields.insert(header::CACHE_CONTROL, "private, max-age=30".parse().unwrap()),
                    "cookie" => fields.insert(header::SET_COOKIE, "session=1".parse().unwrap()),
                    "public" => fields.insert(header::CACHE_CONTROL, "public".parse().unwrap()),
                    "lang" => fields.insert(header::VARY, "Accept-Language".parse().unwrap()),
                    "star" => fields.insert(header::VARY, "*".parse().unwrap()),
                    "big" => {
                        return "x".repeat(2048).into_response();
                    }
                    "created" => {
                        return (http::StatusCode::CREATED, "made").into_response();
                    }
                    _ => None,
                };
                response
            }),
        )
        .route(
            "/tagged/{id}",
            get(|State(calls): State<Calls>| async move {
                calls.count("tagged");
                "tagged"
            }),
        )
        .layer(layer)
        .with_state(calls)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// A response as read off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn cache(&self) -> &str {
        self.header("x-cache").unwrap_or("")
    }
}

/// One request over a fresh TCP connection (HTTP/1.1, `Connection: close`).
async fn send(address: SocketAddr, method: &str, path: &str, fields: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in fields {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("the server answers")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn get_path(address: SocketAddr, path: &str) -> Reply {
    send(address, "GET", path, &[]).await
}

macro_rules! driver_cases {
    ($cache:expr) => {
        async fn started() -> (SocketAddr, Calls, Cache, Box<dyn std::any::Any + Send>) {
            let (cache, guard): (Cache, Box<dyn std::any::Any + Send>) = $cache;
            let calls = Calls::default();
            let address = serve(app(cache.clone(), calls.clone())).await;
            (address, calls, cache, guard)
        }

        #[tokio::test]
        async fn a_second_request_is_a_hit_with_its_age() {
            let (address, calls, _cache, _guard) = started().await;
            let first = get_path(address, "/report/7").await;
            assert_eq!((first.status, first.cache()), (200, "miss"));
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let second = get_path(address, "/report/7").await;
            assert_eq!((second.status, second.cache()), (200, "hit"));
            assert_eq!(second.body, "report 7");
            assert!(second.header("age").unwrap().parse::<u64>().unwrap() >= 1);
            assert_eq!(second.header("etag"), first.header("etag"));
            assert_eq!(calls.of("report"), 1);
            // Query parameters in another order are the same entry; HEAD reads GET's.
            get_path(address, "/report/8?b=2&a=1").await;
            assert_eq!(get_path(address, "/report/8?a=1&b=2").await.cache(), "hit");
            let head = send(address, "HEAD", "/report/8?a=1&b=2", &[]).await;
            assert_eq!((head.cache(), head.body.as_str()), ("hit", ""));
            assert_eq!(calls.of("report"), 2);
        }

        /// A miss reads the cache once and a hit once: a cache that answers at once (the
        /// array driver: the hit answered before any future exists) counts no read twice.
        #[tokio::test]
        async fn each_request_reads_the_cache_once() {
            let (address, _calls, cache, _guard) = started().await;
            let reads = |cache: &Cache| {
                let stats = cache.stats();
                (stats.hits, stats.misses)
            };
            let before = reads(&cache);
            assert_eq!(get_path(address, "/report/3").await.cache(), "miss");
            let after_miss = reads(&cache);
            assert_eq!(after_miss, (before.0, before.1 + 1), "a miss reads once");
            for i in 1..=3 {
                assert_eq!(get_path(address, "/report/3").await.cache(), "hit");
                assert_eq!(reads(&cache), (after_miss.0 + i, after_miss.1), "hit {i}");
            }
        }

        #[tokio::test]
        async fn what_may_not_be_stored_runs_the_handler_every_time() {
            let (address, calls, _cache, _guard) = started().await;
            for rule in ["nostore", "private", "cookie", "star", "created"] {
                for _ in 0..2 {
                    assert_eq!(get_path(address, &format!("/{rule}")).await.cache(), "miss");
                }
                assert_eq!(calls.of(rule), 2, "{rule}");
            }
            // Authorization: stored only when the response says public.
            let auth = [("authorization", "Bearer t")];
            for _ in 0..2 {
                send(address, "GET", "/plain", &auth).await;
            }
            assert_eq!(calls.of("plain"), 2, "not stored for an authorized request");
            send(address, "GET", "/public", &auth).await;
            assert_eq!(send(address, "GET", "/public", &auth).await.cache(), "hit");
            assert_eq!(calls.of("public"), 1);
        }

        #[tokio::test]
        async fn vary_keeps_one_entry_per_language() {
            let (address, calls, _cache, _guard) = started().await;
            for language in ["en", "fr", "en", "fr"] {
                let reply = send(address, "GET", "/lang", &[("accept-language", language)]).await;
                assert_eq!(reply.body, format!("lang {language}"));
            }
            assert_eq!(calls.of("lang"), 2);
        }

        #[tokio::test]
        async fn validators_and_request_directives() {
            let (address, calls, _cache, _guard) = started().await;
            let first = get_path(address, "/report/1").await;
            let etag = first.header("etag").unwrap().to_owned();
            let again = send(address, "GET", "/report/1", &[("if-none-match", &etag)]).await;
            assert_eq!((again.status, again.body.as_str()), (304, ""));
            let other = send(
                address,
                "GET",
                "/report/1",
                &[("if-none-match", "\"other\"")],
            )
            .await;
            assert_eq!(other.status, 200);
            assert_eq!(calls.of("report"), 1);
            let fresh = send(
                address,
                "GET",
                "/report/1",
                &[("cache-control", "no-cache")],
            )
            .await;
            assert_eq!(fresh.cache(), "miss");
            assert_eq!(calls.of("report"), 2, "no-cache runs the handler");
            let none = send(
                address,
                "GET",
                "/report/2",
                &[("cache-control", "only-if-cached")],
            )
            .await;
            assert_eq!(none.status, 504);
            assert_eq!(calls.of("report"), 2);
        }

        #[tokio::test]
        async fn a_stale_copy_is_served_at_once_and_refreshed_once_behind() {
            let (address, calls, _cache, _guard) = started().await;
            assert_eq!(get_path(address, "/short").await.body, "short 1");
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let stale: Vec<_> = (0..10)
                .map(|_| tokio::spawn(async move { get_path(address, "/short").await }))
                .collect();
            for reply in stale {
                let reply = reply.await.unwrap();
                assert_eq!((reply.cache(), reply.body.as_str()), ("stale", "short 1"));
            }
            // The refresh (200 ms of handler) lands behind; meanwhile the stale copy is served.
            // (A stale HEAD refreshes too: with the GET whose entry it reads.)
            let mut fresh = get_path(address, "/short").await;
            for _ in 0..100 {
                if fresh.cache() == "hit" {
                    break;
                }
                assert_eq!((fresh.cache(), fresh.body.as_str()), ("stale", "short 1"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                fresh = get_path(address, "/short").await;
            }
            assert_eq!((fresh.cache(), fresh.body.as_str()), ("hit", "short 2"));
            assert_eq!(
                calls.of("short"),
                2,
                "one refresh for all the stale answers"
            );
        }

        #[tokio::test]
        async fn a_stale_head_refreshes_the_get_entry() {
            let (address, calls, _cache, _guard) = started().await;
            assert_eq!(calls.of("short"), 0);
            get_path(address, "/short").await;
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let head = send(address, "HEAD", "/short", &[]).await;
            assert_eq!(head.cache(), "stale");
            let mut fresh = get_path(address, "/short").await;
            for _ in 0..100 {
                if fresh.cache() == "hit" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                fresh = get_path(address, "/short").await;
            }
            assert_eq!((fresh.cache(), fresh.body.as_str()), ("hit", "short 2"));
            assert_eq!(calls.of("short"), 2);
        }

        #[tokio::test]
        async fn a_hundred_concurrent_misses_run_the_handler_once() {
            let (address, calls, _cache, _guard) = started().await;
            let requests: Vec<_> = (0..100)
                .map(|_| tokio::spawn(async move { get_path(address, "/report/42").await }))
                .collect();
            for request in requests {
                assert_eq!(request.await.unwrap().body, "report 42");
            }
            assert_eq!(calls.of("report"), 1);
        }

        #[tokio::test]
        async fn large_bodies_pass_through_and_forget_and_tags_drop_entries() {
            let (address, calls, cache, _guard) = started().await;
            for _ in 0..2 {
                assert_eq!(get_path(address, "/big").await.body.len(), 2048);
            }
            assert_eq!(calls.of("big"), 2, "over max_body: not stored");

            get_path(address, "/report/5").await;
            assert!(
                ResponseCache::forget(&cache, Method::GET, "/report/5")
                    .await
                    .unwrap()
            );
            assert_eq!(get_path(address, "/report/5").await.cache(), "miss");
            assert_eq!(calls.of("report"), 2);

            get_path(address, "/tagged/1").await;
            assert_eq!(get_path(address, "/tagged/1").await.cache(), "hit");
            cache.tags(&["reports"]).flush().await.unwrap();
            assert_eq!(get_path(address, "/tagged/1").await.cache(), "miss");
            assert_eq!(calls.of("tagged"), 2);
        }
    };
}

mod array {
    use super::*;
    driver_cases!((Cache::new(ArrayDriver::new()), Box::new(())));
}

mod file {
    use super::*;
    driver_cases!({
        let dir = tempfile::tempdir().unwrap();
        (
            Cache::new(FileDriver::new(dir.path()).unwrap()),
            Box::new(dir),
        )
    });
}

mod redis {
    use super::*;
    driver_cases!({
        let driver = RedisDriver::connect(&shared_server().url(), &unique_prefix("http"))
            .await
            .unwrap();
        (Cache::new(driver), Box::new(()))
    });
}

/// Redis dies: every request is still answered by the handler, with its own status.
#[tokio::test]
async fn a_dead_redis_leaves_every_request_answered() {
    let mut server = RedisServer::start();
    let driver = RedisDriver::connect(&server.url(), "http:").await.unwrap();
    let calls = Calls::default();
    let address = serve(app(Cache::new(driver), calls.clone())).await;
    get_path(address, "/report/1").await;
    server.stop();
    for id in 0..5 {
        let reply = get_path(address, &format!("/report/{id}")).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, format!("report {id}").as_str())
        );
    }
    assert!(calls.of("report") >= 5);
}

/// Two app instances on one Redis, 50 concurrent misses of one key at each: the handler runs
/// once in all (the cache's fill lock across instances, one flight per key within each).
#[tokio::test]
async fn two_instances_on_one_redis_fill_a_key_once() {
    let prefix = unique_prefix("fleet");
    let mut addresses = Vec::new();
    let mut counters = Vec::new();
    for _ in 0..2 {
        let driver = RedisDriver::connect(&shared_server().url(), &prefix)
            .await
            .unwrap();
        let calls = Calls::default();
        addresses.push(serve(app(Cache::new(driver), calls.clone())).await);
        counters.push(calls);
    }
    let requests: Vec<_> = (0..100)
        .map(|i| {
            let address = addresses[i % 2];
            tokio::spawn(async move { get_path(address, "/report/99").await })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap().body, "report 99");
    }
    let ran: usize = counters.iter().map(|calls| calls.of("report")).sum();
    assert_eq!(ran, 1);
}

/// A URL far longer than a cache key may be is still cached (under its digest), and a URL
/// differing in its last byte is another entry.
#[tokio::test]
async fn a_huge_url_is_cached_under_its_digest() {
    let calls = Calls::default();
    let address = serve(app(Cache::new(ArrayDriver::new()), calls.clone())).await;
    let long = format!("/report/1?pad={}", "x".repeat(6_000));
    assert_eq!(get_path(address, &long).await.cache(), "miss");
    assert_eq!(get_path(address, &long).await.cache(), "hit");
    assert_eq!(get_path(address, &format!("{long}y")).await.cache(), "miss");
    assert_eq!(calls.of("report"), 2);
}
