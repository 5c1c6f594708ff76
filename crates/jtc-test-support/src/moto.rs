//! A DynamoDB- and S3-compatible server for tests: moto's server (PyPI `moto[server]`, pinned in
//! `scripts/setup-moto`) on a free port of 127.0.0.1, stopped when dropped (and by the watchdog
//! if the test process dies first).
//!
//! moto's own `moto_server` command answers on several threads and keeps no lock around an
//! item, so two concurrent updates of one item can lose one: a test that counts concurrent
//! increments would fail for the server's sake. This server runs moto's application behind one
//! lock: connections are accepted on several threads (so a thousand concurrent clients wait
//! for their turn rather than overflow the listen queue, as they do with werkzeug's
//! `threaded=False`), and moto handles one request at a time — what DynamoDB's per-item
//! atomicity needs.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use crate::{free_port, watch};

const SERVER: &str = r#"
import sys, threading
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app, run_simple
moto = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()
def app(environ, start_response):
    with one_at_a_time:
        # The whole body is produced under the lock: moto's handlers run while it is read.
        return list(moto(environ, start_response))
run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True, request_handler=MotoRequestHandler)
"#;

/// The Python of the virtual environment holding moto: `$JTC_MOTO_VENV/bin/python`, by default
/// `~/.cache/jtc/moto-venv/bin/python` (where `scripts/setup-moto` puts it).
pub fn moto_python() -> PathBuf {
    let venv = std::env::var_os("JTC_MOTO_VENV").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/jtc/moto-venv")
        },
        PathBuf::from,
    );
    venv.join("bin/python")
}

/// A moto server process owned by a test.
#[derive(Debug)]
pub struct MotoServer {
    child: Option<Child>,
    port: u16,
    /// The server's stderr (werkzeug logs a line per request): read back if it dies.
    log: tempfile::NamedTempFile,
}

impl MotoServer {
    /// Starts a moto server that handles one request at a time, on a free port.
    pub fn start() -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            log: tempfile::NamedTempFile::new().expect("a log file for moto"),
        };
        server.launch();
        server
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`: the endpoint to give the AWS client.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates an S3 bucket on this server (with boto3, from moto's virtual environment: the
    /// object-store crate under test cannot create buckets).
    pub fn create_bucket(&self, name: &str) {
        let script = r#"
import sys, boto3, botocore
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
    aws_access_key_id="test", aws_secret_access_key="test",
    config=botocore.config.Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket=sys.argv[2])
"#;
        let output = Command::new(moto_python())
            .args(["-c", script, &self.endpoint(), name])
            .output()
            .expect("moto's Python runs");
        assert!(
            output.status.success(),
            "could not create bucket {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Kills the server (SIGKILL) and waits for it to exit: every table it held is gone.
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

    fn launch(&mut self) {
        let python = moto_python();
        assert!(
            python.exists(),
            "moto's server is not installed ({} is missing); run `scripts/setup-moto` \
             (a Python virtual environment with moto[server] from PyPI)",
            python.display()
        );
        let mut child = Command::new(&python)
            .args(["-c", SERVER, &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log.reopen().expect("moto's log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("could not start moto ({}): {e}", python.display()));
        watch(child.id());
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
                panic!("moto on port {} exited ({status}): {log}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "moto on port {} did not answer within 60 s",
                self.port
            );
            thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One moto server shared by every test of a test binary; tests keep apart by table or prefix.
pub fn shared_moto() -> &'static MotoServer {
    static SERVER: OnceLock<MotoServer> = OnceLock::new();
    SERVER.get_or_init(MotoServer::start)
}
