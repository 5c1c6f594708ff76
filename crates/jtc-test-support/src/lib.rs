//! Real servers for tests, started on demand and stopped when dropped: Redis (a
//! `redis-server` process on a free port, a 3-master cluster, Sentinels), memcached,
//! PostgreSQL and a DynamoDB-compatible server (moto).
//!
//! Tests never use a server they did not start (a machine may run its own Redis on 6379) and
//! never skip: without `redis-server` on `PATH` they fail with the command that installs it.
//! A watchdog process kills each server if the test process dies without dropping it (a
//! timeout, an abort, a leaked `static`).

mod memcached;
mod moto;
mod postgres;
mod sentinel;

pub use memcached::{MemcachedServer, shared_memcached};
pub use moto::{MotoServer, moto_python, shared_moto};
pub use postgres::{PostgresServer, shared_postgres};
pub use sentinel::RedisSentinelSetup;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

const INSTALL_HINT: &str = "redis-server is not on PATH; install it with `apt-get install redis-server` \
     (Debian/Ubuntu; it brings redis-cli and redis-benchmark too)";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A `redis-server` process owned by a test.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    dir: tempfile::TempDir,
    tls: bool,
}

impl RedisServer {
    /// Starts a server on a free port of 127.0.0.1 with no persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (`["--requirepass", "x"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder for redis-server");
        let mut server = Self {
            child: None,
            port: free_port(),
            args: extra.iter().map(|a| (*a).to_owned()).collect(),
            dir,
            tls: false,
        };
        server.launch();
        server
    }

    /// Starts a server that speaks only TLS, with a certificate for `localhost` and
    /// `127.0.0.1` signed by a throw-away CA made with `openssl`. Returns the server and the
    /// CA certificate's path, for clients to trust (`SSL_CERT_FILE`).
    pub fn start_tls() -> (Self, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("a temporary folder for redis-server");
        let certs = make_certificates(dir.path());
        let path = |name: &str| dir.path().join(name).display().to_string();
        let port = free_port();
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &path("server.crt"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.crt"),
            "--tls-auth-clients",
            "no",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut server = Self {
            child: None,
            port,
            args,
            dir,
            tls: true,
        };
        server.launch();
        (server, certs)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (to pin it to a core in a benchmark, say).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its connections but answers nothing, as a
    /// machine that hangs does. [`resume`](Self::resume) thaws it.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaws a server frozen by [`pause`](Self::pause) (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("the server is running");
        // The shell's own `kill`, as the watchdog uses: no procps needed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{name} {}", child.id())])
            .status()
            .expect("sh runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Starts the server again on the same port with the same arguments.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Runs `redis-cli -p <port> <args>` and returns its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut full = Vec::with_capacity(args.len() + 2);
        for arg in &self.args {
            if arg == "--requirepass" {
                full.push("--no-auth-warning".to_owned());
            }
        }
        if let Some(password) = self.password() {
            full.extend(["-a".to_owned(), password]);
        }
        full.extend(args.iter().map(|a| (*a).to_owned()));
        redis_cli(self.port, &full)
    }

    fn password(&self) -> Option<String> {
        let at = self.args.iter().position(|a| a == "--requirepass")?;
        self.args.get(at + 1).cloned()
    }

    fn launch(&mut self) {
        let port = if self.tls {
            Vec::new()
        } else {
            vec!["--port".to_owned(), self.port.to_string()]
        };
        let child = Command::new("redis-server")
            .args(port)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args(["--loglevel", "warning", "--logfile", "redis.log"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("could not start redis-server: {e}"),
        };
        watch(child.id());
        self.child = Some(child);
        self.wait_until_ready();
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let ready = if self.tls {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                ping(self.port)
            };
            if ready {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!(
                    "redis-server on port {} exited ({status}):\n{log}",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer",
                self.port
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of masters without replicas, each a [`RedisServer`].
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes, joins them with `redis-cli --cluster create` and waits until
    /// every node reports `cluster_state:ok`.
    pub fn start(masters: usize) -> Self {
        Self::start_with(masters, Duration::from_secs(5), &[])
    }

    /// Like [`start`](Self::start), with the time after which the nodes flag a silent node
    /// as failed (`cluster-node-timeout`) and extra `redis-server` arguments for every node.
    pub fn start_with(masters: usize, node_timeout: Duration, extra: &[&str]) -> Self {
        let timeout = node_timeout.as_millis().to_string();
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &timeout,
        ];
        args.extend_from_slice(extra);
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| RedisServer::start_with(&args))
            .collect();
        let mut create: Vec<String> = vec!["--cluster".into(), "create".into()];
        create.extend(nodes.iter().map(RedisServer::address));
        create.extend([
            "--cluster-replicas".into(),
            "0".into(),
            "--cluster-yes".into(),
        ]);
        let output = redis_cli(nodes[0].port, &create);
        assert!(
            output.contains("[OK] All 16384 slots covered"),
            "cluster create failed:\n{output}"
        );
        let cluster = Self { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// Waits until every node reports `cluster_state:ok`.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !self
            .nodes
            .iter()
            .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>` of every node.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::address).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

/// Writes `ca.crt`, `server.crt` and `server.key` (for `localhost` and `127.0.0.1`) into
/// `dir` with `openssl`; returns the CA certificate's path.
fn make_certificates(dir: &std::path::Path) -> std::path::PathBuf {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(status) => assert!(status.success(), "openssl {args:?} failed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("openssl is not on PATH; install it with `apt-get install openssl`")
            }
            Err(e) => panic!("could not run openssl: {e}"),
        }
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=jtc test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    dir.join("ca.crt")
}

/// One server shared by every test of a test binary; tests keep apart by key prefix.
pub fn shared_server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// One 3-master cluster shared by every test of a test binary.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(3))
}

/// A prefix no other test of this process uses: `test:<pid>:<n>:`.
pub fn unique_prefix(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{name}:{}:{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `redis-cli -p <port> <args>`, returning stdout and stderr, trimmed.
pub fn redis_cli(port: u16, args: &[String]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(output) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            text.trim().to_owned()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
        Err(e) => panic!("could not run redis-cli: {e}"),
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let port = listener.local_addr().expect("a bound address").port();
    // Cluster nodes also listen on port + 10000; keep that in range and free too.
    if port > 55_000 || TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
        return free_port();
    }
    port
}

/// Whether a Redis server answers `PING` on `port`.
fn ping(port: u16) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    // `-NOAUTH` means a password-protected server that is up.
    matches!(stream.read(&mut reply), Ok(n) if n > 0 && (reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH")))
}

/// Kills `pid` once this test process is gone, whatever way it went.
pub(crate) fn watch(pid: u32) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 1; done; kill -9 {pid} 2>/dev/null",
        parent = std::process::id()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
