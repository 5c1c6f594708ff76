//! Real memcached servers for tests: a `memcached` process on a free port of 127.0.0.1,
//! stopped when dropped (and by the watchdog if the test process dies first).

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use crate::{free_port, watch};

const INSTALL_HINT: &str =
    "memcached is not on PATH; install it with `apt-get install memcached` (Debian/Ubuntu)";

/// A `memcached` process owned by a test.
#[derive(Debug)]
pub struct MemcachedServer {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
}

impl MemcachedServer {
    /// Starts a server with 64 MiB of memory on a free port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `memcached` arguments (`["-I", "2m"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            args: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.launch();
        server
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (to pin it to a core in a benchmark, say).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit: everything it held is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, empty, on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Sends one text-protocol command (`"set k 0 0 1\r\nx"`, without the final CRLF) on a
    /// fresh connection and returns the reply up to its end marker (`END`, `STORED`, `HD`, ...),
    /// for checking what the server holds with no cache code in between.
    pub fn command(&self, command: &str) -> String {
        let mut stream = TcpStream::connect(self.address()).expect("memcached answers");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a read timeout");
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .expect("the command is sent");
        let mut reader = BufReader::new(stream);
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return reply;
            }
            reply.push_str(&line);
            let word = line.split_whitespace().next().unwrap_or("");
            let last = matches!(
                word,
                "END"
                    | "STORED"
                    | "NOT_STORED"
                    | "DELETED"
                    | "NOT_FOUND"
                    | "OK"
                    | "ERROR"
                    | "CLIENT_ERROR"
                    | "SERVER_ERROR"
                    | "HD"
                    | "EN"
                    | "NF"
                    | "NS"
                    | "EX"
            ) || (word.chars().all(|c| c.is_ascii_digit()) && !word.is_empty());
            // A `VA` reply ends after its data line.
            if word == "VA" {
                let mut data = String::new();
                let _ = reader.read_line(&mut data);
                reply.push_str(&data);
                return reply;
            }
            if last {
                return reply;
            }
        }
    }

    /// The value of `stat` from `stats` (`curr_items`, `cmd_get`, ...).
    pub fn stat(&self, name: &str) -> u64 {
        let stats = self.command("stats");
        stats
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("STAT") && words.next() == Some(name))
                    .then(|| words.next().and_then(|v| v.parse().ok()))
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no stat {name} in:\n{stats}"))
    }

    fn launch(&mut self) {
        let child = Command::new("memcached")
            .args(["-l", "127.0.0.1", "-p", &self.port.to_string(), "-U", "0"])
            .args(["-m", "64", "-c", "4096", "-t", "2"])
            .args(["-u", "nobody"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("could not start memcached: {e}"),
        };
        watch(child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.address()).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut log = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut err, &mut log);
                }
                panic!("memcached on port {} exited ({status}): {log}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "memcached on port {} did not answer",
                self.port
            );
            thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }
}

impl Drop for MemcachedServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One memcached shared by every test of a test binary; tests keep apart by prefix.
pub fn shared_memcached() -> &'static MemcachedServer {
    static SERVER: OnceLock<MemcachedServer> = OnceLock::new();
    SERVER.get_or_init(MemcachedServer::start)
}
