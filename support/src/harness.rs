//! A real `nats-server` per test, on a free loopback port.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the `nats-server` binary is: `$NATS_SERVER`, else the one
/// `scripts/setup` installs in `.venv/bin`, else `nats-server` on `PATH`.
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nats-server");
    if venv.exists() { venv } else { PathBuf::from("nats-server") }
}

/// The workspace's Python (with nats-py), installed by `scripts/setup`.
pub fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() { venv } else { PathBuf::from("python3") }
}

/// A running `nats-server`, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    _config: Option<tempdir::TempFile>,
}

mod tempdir {
    use std::path::PathBuf;

    /// A file removed on drop.
    pub struct TempFile(pub PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl NatsServer {
    /// Starts a server on a free loopback port and waits until it accepts connections.
    pub fn start() -> NatsServer {
        Self::start_with_config("")
    }

    /// Starts a server with extra configuration-file lines (e.g. `max_payload: 4096`).
    pub fn start_with_config(config: &str) -> NatsServer {
        let port = free_port();
        let mut command = Command::new(nats_server_binary());
        command.args(["-a", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null());
        let config_file = (!config.is_empty()).then(|| {
            let path = std::env::temp_dir().join(format!("nats-micro-test-{}-{port}.conf", std::process::id()));
            std::fs::write(&path, config).expect("writing nats-server config");
            command.args(["-c", &path.to_string_lossy()]);
            tempdir::TempFile(path)
        });
        let child = command.spawn().unwrap_or_else(|err| {
            panic!("starting {}: {err} (run scripts/setup, or set NATS_SERVER)", nats_server_binary().display())
        });
        let server = NatsServer { child: Some(child), port, _config: config_file };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "nats-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connects a client.
    pub async fn connect(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.expect("connecting to the test nats-server")
    }

    /// Kills the server now.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}
