//! A real `nats-server` per test, on a free loopback port; one that can be
//! killed and restarted on the same port, and a cluster of them.

use std::io::{Read, Write};
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
    /// Extra command-line arguments, kept for [`NatsServer::restart`].
    args: Vec<String>,
    monitor_port: Option<u16>,
    _config: Option<tempdir::TempFile>,
    /// The JetStream store directory, removed on drop.
    _store: Option<tempdir::TempDir>,
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

    /// A directory removed, with what it holds, on drop.
    pub struct TempDir(pub PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
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
        let mut server =
            NatsServer { child: Some(child), port, args: Vec::new(), monitor_port: None, _config: config_file, _store: None };
        wait_listening(port);
        server.assert_running();
        server
    }

    /// Starts a server with JetStream (`-js`), its store in a fresh temporary
    /// directory (`-sd`) removed on drop; the server restarts with the same store.
    pub fn start_jetstream() -> NatsServer {
        let port = free_port();
        let store = std::env::temp_dir().join(format!("nats-micro-js-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        std::fs::create_dir_all(&store).expect("creating the JetStream store directory");
        let args = vec!["-js".to_owned(), "-sd".to_owned(), store.to_string_lossy().into_owned()];
        let mut server =
            NatsServer { child: None, port, args, monitor_port: None, _config: None, _store: Some(tempdir::TempDir(store)) };
        server.restart();
        server
    }

    /// Starts a server on a given loopback port with extra arguments (e.g.
    /// `--cluster`), and an HTTP monitoring port for [`NatsServer::monitor`].
    pub fn start_on(port: u16, args: &[String]) -> NatsServer {
        let mut server =
            NatsServer { child: None, port, args: args.to_vec(), monitor_port: Some(free_port()), _config: None, _store: None };
        server.restart();
        server
    }

    /// Starts the server again, on the same port with the same arguments,
    /// after [`NatsServer::stop`] (clients reconnect to it by themselves).
    pub fn restart(&mut self) {
        self.stop();
        let mut command = Command::new(nats_server_binary());
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]).args(&self.args);
        if let Some(monitor) = self.monitor_port {
            command.args(["-m", &monitor.to_string()]);
        }
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let child = command.spawn().unwrap_or_else(|err| {
            panic!("starting {}: {err} (run scripts/setup, or set NATS_SERVER)", nats_server_binary().display())
        });
        self.child = Some(child);
        wait_listening(self.port);
        self.assert_running();
    }

    /// Panics when the server this handle started has exited (its port was
    /// taken): what listens there is then someone else.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
            panic!("nats-server on port {} exited at start ({status}): the port was taken", self.port);
        }
    }

    /// The body of a monitoring endpoint (`/varz`, `/routez`, `/connz`), for
    /// a server started with [`NatsServer::start_on`].
    pub fn monitor(&self, path: &str) -> String {
        let port = self.monitor_port.expect("a server started with NatsServer::start_on has a monitoring port");
        let started = Instant::now();
        loop {
            let attempt = TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
                let mut response = String::new();
                stream.read_to_string(&mut response)?;
                Ok(response)
            });
            match attempt {
                Ok(response) => return response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default(),
                Err(err) => {
                    assert!(started.elapsed() < Duration::from_secs(10), "monitoring port {port}: {err}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
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

/// A cluster of loopback `nats-server`s, each routed to all others; each
/// node can be killed and restarted.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until every node has a route to every other.
    pub fn start(size: usize) -> NatsCluster {
        let cluster_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes_from = |own: u16| {
            let others = cluster_ports.iter().filter(|port| **port != own);
            others.map(|port| format!("nats://127.0.0.1:{port}")).collect::<Vec<_>>().join(",")
        };
        let nodes = cluster_ports
            .iter()
            .enumerate()
            .map(|(index, cluster_port)| {
                let args = [
                    "--cluster_name".to_owned(),
                    "nats-micro-test".to_owned(),
                    "--cluster".to_owned(),
                    format!("nats://127.0.0.1:{cluster_port}"),
                    "--routes".to_owned(),
                    routes_from(*cluster_port),
                    "--name".to_owned(),
                    format!("node-{index}"),
                ];
                NatsServer::start_on(free_port(), &args)
            })
            .collect();
        let cluster = NatsCluster { nodes };
        cluster.wait_routed();
        cluster
    }

    /// Waits until every running node has routes to all the others.
    pub fn wait_routed(&self) {
        let started = Instant::now();
        let want = self.nodes.len() - 1;
        loop {
            // Recent servers pool several routes per peer: at least one each.
            let routed = self.nodes.iter().all(|node| {
                let routez = node.monitor("/routez");
                let count = routez.split("\"num_routes\":").nth(1).and_then(|rest| {
                    rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse::<usize>().ok())
                });
                count.is_some_and(|count| count >= want)
            });
            if routed {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "the cluster did not form its routes");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Node `index`.
    pub fn node(&mut self, index: usize) -> &mut NatsServer {
        &mut self.nodes[index]
    }

    /// Every node's URL, comma-separated.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }
}

fn wait_listening(port: u16) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "nats-server did not start on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nobody listens on now, and never handed out before in this
/// process: tests run in parallel threads, and two of them given the same
/// port before either server binds it would share one server.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}
