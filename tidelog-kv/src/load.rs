//! The load generator: concurrent clients writing unique keys with
//! fixed-size values through the leader, each recording what was
//! acknowledged and how long it took.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::client::Client;
use crate::support::cmd::Set;

/// What a load run saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Every acknowledged write: key → value.
    pub acked: BTreeMap<String, String>,
    /// Each acknowledged write's latency.
    pub latencies: Vec<Duration>,
    /// Writes that failed (not acknowledged; they may or may not be applied).
    pub failed: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// How long the clients ran.
    pub elapsed: Duration,
}

impl Report {
    /// Acknowledged writes per second.
    pub fn per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` (0..=1).
    pub fn quantile(&mut self, q: f64) -> Duration {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.latencies[((n as f64 * q) as usize).min(n - 1)]
    }
}

/// A value of `len` bytes, different per write.
fn value(client: usize, n: u64, len: usize) -> String {
    let mut v = format!("c{client}n{n}:");
    let fill = (b'a' + (n % 26) as u8) as char;
    while v.len() < len {
        v.push(fill);
    }
    v.truncate(len);
    v
}

/// Runs `clients` writers against `members` until `stop` turns true (or
/// each has made `max_per_client` writes), with `value_len`-byte values and
/// keys `PREFIX-cC-N`; `acks` counts the acknowledged writes as they come
/// (what a test awaits).
pub async fn run(
    members: &BTreeMap<u64, String>,
    clients: usize,
    value_len: usize,
    prefix: &str,
    max_per_client: u64,
    stop: watch::Receiver<bool>,
    acks: watch::Sender<u64>,
) -> Report {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let mut client = Client::new(members.clone());
        let stop = stop.clone();
        let prefix = prefix.to_string();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let mut report = Report::default();
            for n in 0..max_per_client {
                if *stop.borrow() {
                    break;
                }
                let set = Set { key: format!("{prefix}-c{c}-{n}"), value: value(c, n, value_len) };
                let t = Instant::now();
                match client.write(&set).await {
                    Ok(_) => {
                        report.latencies.push(t.elapsed());
                        report.acked.insert(set.key, set.value);
                        acks.send_modify(|n| *n += 1);
                    }
                    Err(e) => {
                        report.failed += 1;
                        report.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            report
        }));
    }
    let mut all = Report::default();
    for task in tasks {
        match task.await {
            Ok(r) => {
                all.acked.extend(r.acked);
                all.latencies.extend(r.latencies);
                all.failed += r.failed;
                if all.first_error.is_none() {
                    all.first_error = r.first_error;
                }
            }
            Err(e) => {
                all.failed += 1;
                all.first_error.get_or_insert_with(|| format!("client task: {e}"));
            }
        }
    }
    all.elapsed = started.elapsed();
    all
}
