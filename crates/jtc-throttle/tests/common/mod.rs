//! Helpers for the throttle tests: requests with a peer address, and a real server on TCP.

#![allow(dead_code, unreachable_pub)]

use std::{net::SocketAddr, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tower::ServiceExt;

/// A request from `peer` with `headers`, as `axum::serve` with connect info would hand it over.
pub fn request(path: &str, peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Body::empty()).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

/// Sends one request through the router in process.
pub async fn send(app: &Router, request: Request<Body>) -> Response<Body> {
    app.clone().oneshot(request).await.unwrap()
}

pub fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

pub async fn json(response: Response<Body>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}"))
}

/// Serves `app` on a free port of 127.0.0.1 with peer addresses; stops with the runtime.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    address
}

/// One HTTP/1.1 request over a fresh TCP connection; returns the status code.
pub async fn get_status(address: SocketAddr, path: &str) -> StatusCode {
    status_with(address, path, &[]).await
}

/// One `GET path` with `headers` over a fresh TCP connection; returns the status code.
pub async fn status_with(address: SocketAddr, path: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .expect("the server answers")
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    let code = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    StatusCode::from_u16(code.parse().unwrap()).unwrap()
}

/// Fires `total` requests at once, spread over `addresses`, and counts the statuses.
pub async fn burst(addresses: &[SocketAddr], path: &str, total: usize) -> (usize, usize, usize) {
    let tasks: Vec<_> = (0..total)
        .map(|i| {
            let address = addresses[i % addresses.len()];
            let path = path.to_owned();
            tokio::spawn(async move { get_status(address, &path).await })
        })
        .collect();
    let (mut ok, mut limited, mut other) = (0, 0, 0);
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            _ => other += 1,
        }
    }
    (ok, limited, other)
}
