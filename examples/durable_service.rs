//! A durable HTTP service: `POST /records` answers `201` only once the body
//! is on disk (`append_durable_async`), so a client that got its answer
//! knows the record survives power loss. Concurrent requests share syncs
//! through group commit.
//!
//! With no arguments it runs a demo in a temp dir: a built-in load
//! generator drives the service with group commit, then a variant that
//! serializes one sync per request (what a naive `write + fsync` handler
//! does), prints requests/s and latency for both, then restarts the first
//! service and reads every acknowledged record back over HTTP.
//!
//! ```sh
//! cargo run --release --example durable_service                      # the demo
//! cargo run --release --example durable_service -- --seconds 5 --connections 128
//! cargo run --release --example durable_service -- serve --addr 127.0.0.1:3000 --dir /tmp/svc
//! curl -d 'hello' localhost:3000/records             # -> 201, the record's LSN
//! curl 'localhost:3000/records?from=0&limit=10'      # LSN <tab> payload, one per line
//! curl localhost:3000/stats
//! ```
//!
//! `GET /records` pages with `from` = the last LSN of the previous page.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tidelog::{Journal, JournalOptions, Lsn};
use tokio::net::{TcpListener, TcpStream};

/// How the service makes a record durable.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// `append_durable_async` from every request: syncs are shared.
    GroupCommit,
    /// One request at a time appends and syncs (a lock around both).
    SyncPerRequest,
}

struct Service {
    journal: Journal,
    mode: Mode,
    serial: tokio::sync::Mutex<()>,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

impl Service {
    async fn handle(&self, req: Request<Incoming>) -> Result<Reply, Infallible> {
        Ok(match (req.method(), req.uri().path()) {
            (&Method::POST, "/records") => match req.into_body().collect().await {
                Ok(body) => self.append(body.to_bytes()).await,
                Err(e) => reply(StatusCode::BAD_REQUEST, format!("reading the body: {e}\n")),
            },
            (&Method::GET, "/records") => self.list(req.uri().query().unwrap_or("")),
            (&Method::GET, "/stats") => reply(StatusCode::OK, format!("{:#?}\n", self.journal.stats())),
            _ => reply(StatusCode::NOT_FOUND, "POST /records, GET /records?from=LSN&limit=N, GET /stats\n"),
        })
    }

    async fn append(&self, body: Bytes) -> Reply {
        let appended = match self.mode {
            Mode::GroupCommit => self.journal.append_durable_async(&body).await,
            Mode::SyncPerRequest => {
                let _one_at_a_time = self.serial.lock().await;
                self.journal.append_durable_async(&body).await
            }
        };
        match appended {
            Ok(lsn) => reply(StatusCode::CREATED, format!("{lsn}\n")),
            // Not durable: the client must not consider it stored.
            Err(e @ tidelog::Error::RecordTooLarge { .. }) => reply(StatusCode::PAYLOAD_TOO_LARGE, format!("{e}\n")),
            Err(e) => reply(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        }
    }

    fn list(&self, query: &str) -> Reply {
        let param =
            |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok());
        let from = Lsn::new(param("from").unwrap_or(0));
        let limit = param("limit").unwrap_or(100).min(10_000) as usize;
        match self.journal.read_batch(from, limit) {
            Ok((records, _)) => {
                let mut out = String::new();
                for r in records {
                    out.push_str(&format!("{}\t{}\n", r.lsn(), String::from_utf8_lossy(r.payload())));
                }
                reply(StatusCode::OK, out)
            }
            Err(e) => reply(StatusCode::BAD_REQUEST, format!("{e}\n")),
        }
    }
}

/// A running service: its address, and how to stop it.
struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<tidelog::Result<()>>,
}

impl Running {
    /// Stops accepting, then closes the journal (everything acknowledged
    /// is durable already; close syncs the rest).
    async fn stop(self) -> tidelog::Result<()> {
        let _ = self.stop.send(());
        self.task.await.expect("service task")
    }
}

async fn start(dir: &Path, addr: SocketAddr, mode: Mode) -> tidelog::Result<Running> {
    let journal = Journal::open(dir, JournalOptions::default()).await?;
    let listener = TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let service = Arc::new(Service { journal: journal.clone(), mode, serial: tokio::sync::Mutex::new(()) });
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let service = service.clone();
                    connections.spawn(async move {
                        let handler = hyper::service::service_fn(move |req| {
                            let service = service.clone();
                            async move { service.handle(req).await }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), handler)
                            .await;
                    });
                }
            }
        }
        connections.shutdown().await;
        journal.close().await
    });
    Ok(Running { addr, stop, task })
}

/// An HTTP/1 keep-alive connection to the service.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(connection);
        Client { sender }
    }

    async fn call(&mut self, method: Method, path: &str, body: Bytes) -> (StatusCode, Bytes) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "tidelog")
            .body(Full::new(body))
            .expect("request");
        self.sender.ready().await.expect("connection ready for the next request");
        let response = self.sender.send_request(req).await.expect("response");
        let status = response.status();
        (status, response.into_body().collect().await.expect("body").to_bytes())
    }
}

/// What a load run measured.
struct Load {
    acknowledged: Vec<(u64, Vec<u8>)>,
    per_second: f64,
    latencies_us: Vec<u64>,
}

/// `connections` clients POST 128-byte records for `seconds`.
async fn load(addr: SocketAddr, connections: usize, seconds: f64) -> Load {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..connections {
        clients.spawn(async move {
            let mut client = Client::connect(addr).await;
            let (mut acked, mut latencies) = (Vec::new(), Vec::new());
            for n in 0u64.. {
                if Instant::now() >= deadline {
                    break;
                }
                let payload = format!("connection {c:>4} request {n:>8} {}", "x".repeat(96)).into_bytes();
                let sent = Instant::now();
                let (status, body) = client.call(Method::POST, "/records", Bytes::from(payload.clone())).await;
                latencies.push(sent.elapsed().as_micros() as u64);
                assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
                let lsn = std::str::from_utf8(&body).expect("utf-8").trim().parse().expect("an LSN");
                acked.push((lsn, payload));
            }
            (acked, latencies)
        });
    }
    let (mut acknowledged, mut latencies_us) = (Vec::new(), Vec::new());
    while let Some(done) = clients.join_next().await {
        let (acked, latencies) = done.expect("client task");
        acknowledged.extend(acked);
        latencies_us.extend(latencies);
    }
    let per_second = acknowledged.len() as f64 / started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    Load { acknowledged, per_second, latencies_us }
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    sorted.get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or(0)
}

fn print_load(what: &str, l: &Load) {
    println!(
        "{what:<22} {:>9.0} requests/s   p50 {:>7} µs   p99 {:>7} µs   ({} acknowledged)",
        l.per_second,
        percentile(&l.latencies_us, 0.5),
        percentile(&l.latencies_us, 0.99),
        l.acknowledged.len()
    );
}

/// Reads every record back over HTTP, a page at a time.
async fn read_back(addr: SocketAddr) -> Vec<(u64, Vec<u8>)> {
    let mut client = Client::connect(addr).await;
    let (mut from, mut all) = (0u64, Vec::new());
    loop {
        let (status, body) = client.call(Method::GET, &format!("/records?from={from}&limit=5000"), Bytes::new()).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let page: Vec<(u64, Vec<u8>)> = std::str::from_utf8(&body)
            .expect("utf-8")
            .lines()
            .map(|line| {
                let (lsn, payload) = line.split_once('\t').expect("LSN <tab> payload");
                (lsn.parse().expect("LSN"), payload.as_bytes().to_vec())
            })
            .collect();
        match page.last() {
            Some(&(last, _)) => from = last,
            None => return all,
        }
        all.extend(page);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    if args.first().map(String::as_str) == Some("serve") {
        let addr: SocketAddr = flag("--addr").unwrap_or_else(|| "127.0.0.1:3000".into()).parse().expect("--addr");
        let dir = PathBuf::from(flag("--dir").expect("serve needs --dir DIR"));
        let running = start(&dir, addr, Mode::GroupCommit).await.expect("start the service");
        println!("serving {} on http://{} (Ctrl-C stops)", dir.display(), running.addr);
        tokio::signal::ctrl_c().await.expect("ctrl-c");
        running.stop().await.expect("close the journal");
        return;
    }
    let seconds: f64 = flag("--seconds").map_or(3.0, |v| v.parse().expect("--seconds S"));
    let connections: usize = flag("--connections").map_or(64, |v| v.parse().expect("--connections N"));
    let temp = tempfile::tempdir().expect("temp dir");
    let localhost: SocketAddr = "127.0.0.1:0".parse().expect("address");
    println!("{connections} keep-alive connections, 128-byte POSTs, {seconds} s each, in {}", temp.path().display());

    let group_dir = temp.path().join("group-commit");
    let running = start(&group_dir, localhost, Mode::GroupCommit).await.expect("start");
    let group = load(running.addr, connections, seconds).await;
    running.stop().await.expect("stop");
    print_load("group commit", &group);

    let serial_dir = temp.path().join("sync-per-request");
    let running = start(&serial_dir, localhost, Mode::SyncPerRequest).await.expect("start");
    let serial = load(running.addr, connections, seconds).await;
    running.stop().await.expect("stop");
    print_load("one sync per request", &serial);
    println!("group commit: {:.1}× the requests/s", group.per_second / serial.per_second.max(f64::MIN_POSITIVE));

    // Restart the first service: every acknowledged record is there.
    let running = start(&group_dir, localhost, Mode::GroupCommit).await.expect("restart");
    let stored: BTreeSet<(u64, Vec<u8>)> = read_back(running.addr).await.into_iter().collect();
    running.stop().await.expect("stop");
    let missing = group.acknowledged.iter().filter(|r| !stored.contains(r)).count();
    println!(
        "restarted: {} records read back over HTTP, {} of {} acknowledged missing",
        stored.len(),
        missing,
        group.acknowledged.len()
    );
    if missing > 0 {
        std::process::exit(1);
    }
}
