//! The example app started as a process, the way the README starts it, and plain HTTP/1.1
//! requests to it over TCP. Shared by the example's test files.

#![allow(dead_code, unreachable_pub)] // each test file uses its own part

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The `api` example binary `cargo test` built beside this test.
pub fn example_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile = deps.parent().and_then(|d| d.parent()).unwrap();
    let binary = profile
        .join("examples")
        .join(format!("api{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: `cargo test` builds examples",
        binary.display()
    );
    binary
}

pub struct App {
    pub child: Child,
    pub address: String,
}

impl App {
    pub fn start(dir: &std::path::Path, vars: &[(&str, &str)]) -> Self {
        let mut child = Command::new(example_binary())
            .current_dir(dir)
            .env("APP_ADDR", "127.0.0.1:0")
            .env_remove("CACHE_DRIVER")
            .env_remove("RUST_LOG")
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Self { child, address }
    }

    /// One request; returns (status, headers+body text, elapsed).
    pub fn request(&self, method: &str, path: &str, headers: &str) -> (u16, String, Duration) {
        let started = Instant::now();
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n{headers}Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, response, started.elapsed())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
