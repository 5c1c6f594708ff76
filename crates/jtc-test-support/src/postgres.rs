//! A PostgreSQL server for tests: `initdb` into a temporary folder and `postgres` on a free
//! port of 127.0.0.1, trust authentication, no durability (a test database needs none).
//! Never the machine's own server. Run as root (CI), the server runs as the `postgres` user,
//! which PostgreSQL insists on.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use crate::{free_port, watch};

const INSTALL_HINT: &str = "PostgreSQL's server programs (initdb, postgres) are missing; install \
     them with `apt-get install postgresql` (Debian/Ubuntu)";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A `postgres` process owned by a test, with its own data folder.
#[derive(Debug)]
pub struct PostgresServer {
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    user: Option<(u32, u32)>,
    durable: bool,
    log_statements: bool,
}

impl PostgresServer {
    /// Creates a database cluster and starts its server on a free port, with no durability
    /// (fast: commits are not waited for on disk).
    pub fn start() -> Self {
        Self::start_with(false, false)
    }

    /// As [`start`](Self::start), durable as a production server: a commit is acknowledged
    /// only once its WAL is flushed, so it survives [`stop`](Self::stop) (a crash).
    pub fn start_durable() -> Self {
        Self::start_with(true, false)
    }

    /// As [`start`](Self::start), logging every statement the server runs to a file that
    /// [`log`](Self::log) reads: to count what a client sends.
    pub fn start_logging_statements() -> Self {
        Self::start_with(false, true)
    }

    /// The server's log so far (with [`start_logging_statements`](Self::start_logging_statements)).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn start_with(durable: bool, log_statements: bool) -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("a temporary folder for PostgreSQL");
        let user = server_user();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("hand the data folder to the postgres user");
        }
        let data = dir.path().join("data");
        let output = as_user(Command::new(bin.join("initdb")), user)
            .args([
                "-D",
                path(&data),
                "-U",
                "jtc",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("initdb: {e}; {INSTALL_HINT}"));
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = Self {
            child: None,
            port: free_port(),
            bin,
            dir,
            user,
            durable,
            log_statements,
        };
        server.launch();
        server
    }

    /// `postgres://jtc@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://jtc@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: as a crash) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data (after crash recovery).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Runs `psql -c <sql>` against the server and returns its output (tuples only).
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "jtc"])
            .args(["-d", "postgres", "-At", "-c", sql])
            .output()
            .unwrap_or_else(|e| panic!("psql: {e}; {INSTALL_HINT}"));
        assert!(
            output.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn launch(&mut self) {
        let data = self.dir.path().join("data");
        let port = self.port.to_string();
        let mut command = as_user(Command::new(self.bin.join("postgres")), self.user);
        command
            .args(["-D", path(&data), "-p", &port, "-k", path(self.dir.path())])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ])
            .args(["-c", "log_min_messages=fatal"]);
        if !self.durable {
            command
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"]);
        }
        command.stdin(Stdio::null()).stdout(Stdio::null());
        if self.log_statements {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("server.log"))
                .expect("a server log file");
            command
                .args(["-c", "log_statement=all", "-c", "log_min_messages=log"])
                .stderr(log);
        } else {
            command.stderr(Stdio::null());
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut child = Self::spawn(&mut command);
        loop {
            if self.ready(&port) {
                self.child = Some(child);
                return;
            }
            // After a crash (`stop`), the old server's processes may hold its shared memory a
            // little longer, and a new postmaster then exits at once: start it again.
            if child.try_wait().is_ok_and(|status| status.is_some()) {
                thread::sleep(Duration::from_millis(100));
                child = Self::spawn(&mut command);
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start on port {port}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn(command: &mut Command) -> Child {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("postgres: {e}; {INSTALL_HINT}"));
        watch(child.id());
        child
    }

    fn ready(&self, port: &str) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", port, "-U", "jtc", "-d", "postgres"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One server for a whole test binary: conformance cases each take a table of their own.
pub fn shared_postgres() -> &'static PostgresServer {
    static SERVER: OnceLock<PostgresServer> = OnceLock::new();
    SERVER.get_or_init(PostgresServer::start)
}

/// Where `initdb` and `postgres` live: Debian keeps them out of `PATH`.
fn bin_dir() -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| Some(e.ok()?.path().join("bin")))
                .filter(|bin| bin.join("postgres").exists())
                .collect();
            found.sort();
            found
        })
        .unwrap_or_default();
    if let Some(newest) = versions.last() {
        return newest.clone();
    }
    let output = Command::new("pg_config").arg("--bindir").output();
    match output {
        Ok(output) if output.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
        _ => panic!("{INSTALL_HINT}"),
    }
}

/// The `postgres` user's ids when this process runs as root (PostgreSQL refuses root).
fn server_user() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    if uid.split_whitespace().nth(1)? != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .unwrap_or_else(|| panic!("running as root without a postgres user; {INSTALL_HINT}"));
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().unwrap(), fields[3].parse().unwrap()))
}

fn as_user(mut command: Command, user: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = user {
        command.gid(gid).uid(uid);
    }
    command
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}
