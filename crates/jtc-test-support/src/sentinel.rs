//! A Redis Sentinel setup for the Sentinel tests: a master, a replica and a Sentinel.

use std::{
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{INSTALL_HINT, RedisServer, free_port, redis_cli, watch};

/// A master, a replica of it, and a Redis Sentinel watching them under the name `mymaster`,
/// each a process of its own on a free port. The Sentinel is `redis-server --sentinel` (the
/// Debian package `redis-sentinel` runs the same binary).
#[derive(Debug)]
pub struct RedisSentinelSetup {
    /// The master at the start (a replica after a failover).
    pub master: RedisServer,
    /// The replica at the start (the master after a failover).
    pub replica: RedisServer,
    sentinel: Child,
    sentinel_port: u16,
    _dir: tempfile::TempDir,
}

impl RedisSentinelSetup {
    /// The name the Sentinel monitors the master under.
    pub const MASTER_NAME: &'static str = "mymaster";

    /// Starts the three processes and waits until the Sentinel knows the replica.
    pub fn start() -> Self {
        let master = RedisServer::start();
        let master_port = master.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port]);
        let dir = tempfile::tempdir().expect("a temporary folder for redis-sentinel");
        let sentinel_port = free_port();
        let conf = dir.path().join("sentinel.conf");
        let text = format!(
            "port {sentinel_port}\nbind 127.0.0.1\ndir {dir}\nlogfile sentinel.log\n\
             sentinel monitor {name} 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 10000\n",
            dir = dir.path().display(),
            name = Self::MASTER_NAME,
        );
        std::fs::write(&conf, text).expect("sentinel.conf is written");
        let sentinel = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{INSTALL_HINT} ({e})"));
        watch(sentinel.id());
        let setup = Self {
            master,
            replica,
            sentinel,
            sentinel_port,
            _dir: dir,
        };
        setup.wait_for(|s| {
            s.sentinel_cli(&["SENTINEL", "replicas", Self::MASTER_NAME])
                .contains(&s.replica.port().to_string())
        });
        setup
    }

    /// `127.0.0.1:<port>` of the Sentinel.
    pub fn sentinel_address(&self) -> String {
        format!("127.0.0.1:{}", self.sentinel_port)
    }

    /// Runs `redis-cli` against the Sentinel.
    pub fn sentinel_cli(&self, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        redis_cli(self.sentinel_port, &args)
    }

    /// The port of the server the Sentinel names as master now.
    pub fn master_port(&self) -> Option<u16> {
        let answer = self.sentinel_cli(&["SENTINEL", "get-master-addr-by-name", Self::MASTER_NAME]);
        answer.lines().nth(1)?.trim().parse().ok()
    }

    /// Asks the Sentinel to fail over now (`SENTINEL FAILOVER`).
    pub fn failover(&self) {
        let answer = self.sentinel_cli(&["SENTINEL", "FAILOVER", Self::MASTER_NAME]);
        assert_eq!(answer, "OK", "SENTINEL FAILOVER answered {answer}");
    }

    /// Waits (up to 30 s) until `ready` holds.
    pub fn wait_for(&self, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "the sentinel setup did not get there in 30 s"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisSentinelSetup {
    fn drop(&mut self) {
        let _ = self.sentinel.kill();
        let _ = self.sentinel.wait();
    }
}
