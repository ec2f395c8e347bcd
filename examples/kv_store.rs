//! An embedded async key-value store on tidelog: every `put`/`delete` is a
//! journal record, acknowledged once durable (group commit across tasks);
//! a snapshot written through `bulk::WritebackFile` lets the journal be cut
//! with `truncate_before`; start-up loads the snapshot and replays the rest.
//!
//! With no arguments it runs a crash-restart demo: a child process writes
//! from 8 tasks and prints each acknowledgement, is killed with SIGKILL at a
//! moment of the parent's choosing, and the parent reopens the store and
//! checks that every acknowledged write is there — several rounds, each
//! recovering from the last.
//!
//! ```sh
//! cargo run --release --example kv_store                       # the demo, in a temp dir
//! cargo run --release --example kv_store -- --rounds 5 --acks 20000 --dir /data/kv
//! ```
//!
//! A SIGKILL tests process death (the page cache survives), not power loss;
//! `docs/durability.md` says what each promises.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tidelog::bulk::{WritebackFile, WritebackOptions};
use tidelog::{Error, Journal, JournalOptions, Lsn, Result};

const SNAPSHOT: &str = "snapshot.kv";
const SNAPSHOT_MAGIC: &[u8; 8] = b"TLKVSNP1";

/// An operation, as one journal record.
#[derive(Debug, PartialEq)]
enum Op {
    Put { key: String, value: String },
    Delete { key: String },
}

impl Op {
    fn encode(&self) -> Vec<u8> {
        let (tag, key, value) = match self {
            Op::Put { key, value } => (b'P', key, value.as_str()),
            Op::Delete { key } => (b'D', key, ""),
        };
        let mut out = Vec::with_capacity(5 + key.len() + value.len());
        out.push(tag);
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(value.as_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Op> {
        let (&tag, rest) = bytes.split_first()?;
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let key = String::from_utf8(rest.get(4..4 + len)?.to_vec()).ok()?;
        let value = String::from_utf8(rest[4 + len..].to_vec()).ok()?;
        match tag {
            b'P' => Some(Op::Put { key, value }),
            b'D' if value.is_empty() => Some(Op::Delete { key }),
            _ => None,
        }
    }

    fn apply(self, map: &mut BTreeMap<String, String>) {
        match self {
            Op::Put { key, value } => map.insert(key, value),
            Op::Delete { key } => map.remove(&key),
        };
    }
}

/// What start-up found.
#[derive(Debug)]
struct Opened {
    snapshot_lsn: Lsn,
    replayed: u64,
    took_ms: u128,
}

/// The store: a map in memory, the journal on disk.
struct KvStore {
    dir: PathBuf,
    journal: Journal,
    map: Mutex<BTreeMap<String, String>>,
    snapshot_lock: tokio::sync::Mutex<()>,
}

impl KvStore {
    async fn open(dir: &Path) -> Result<(KvStore, Opened)> {
        let started = Instant::now();
        std::fs::create_dir_all(dir).map_err(|e| io_error("create store dir", dir, e))?;
        let (snapshot_lsn, mut map) = load_snapshot(&dir.join(SNAPSHOT))?;
        let journal = Journal::open(dir.join("wal"), JournalOptions::default()).await?;
        // Replay what the snapshot does not cover, in LSN order.
        let mut replayed = 0;
        let mut reader = journal.reader(snapshot_lsn)?;
        while let Some(record) = reader.next_record()? {
            let op = Op::decode(record.payload()).ok_or_else(|| Error::Corrupt {
                path: journal.dir().to_path_buf(),
                lsn: record.lsn(),
                reason: "not a kv_store record".into(),
            })?;
            op.apply(&mut map);
            replayed += 1;
        }
        let store = KvStore {
            dir: dir.to_path_buf(),
            journal,
            map: Mutex::new(map),
            snapshot_lock: tokio::sync::Mutex::new(()),
        };
        Ok((store, Opened { snapshot_lsn, replayed, took_ms: started.elapsed().as_millis() }))
    }

    /// Applies `op` and resolves once it is durable. The record is sequenced
    /// (`submit`) under the map's lock, so the map changes in LSN order and
    /// a snapshot taken under that lock matches one LSN exactly; the wait
    /// for durability happens outside it, so concurrent writers share syncs.
    async fn write(&self, op: Op) -> Result<Lsn> {
        let ticket = {
            let mut map = self.map.lock().unwrap();
            let ticket = self.journal.submit(op.encode())?;
            op.apply(&mut map);
            ticket
        };
        ticket.await
    }

    async fn put(&self, key: String, value: String) -> Result<Lsn> {
        self.write(Op::Put { key, value }).await
    }

    async fn delete(&self, key: String) -> Result<Lsn> {
        self.write(Op::Delete { key }).await
    }

    fn get(&self, key: &str) -> Option<String> {
        self.map.lock().unwrap().get(key).cloned()
    }

    /// Writes the map to the snapshot file and cuts the journal before it.
    /// Returns the LSN the snapshot covers.
    async fn snapshot(&self) -> Result<Lsn> {
        let _one_at_a_time = self.snapshot_lock.lock().await;
        let (lsn, copy) = {
            let map = self.map.lock().unwrap();
            (self.journal.next_lsn(), map.clone())
        };
        // Everything the snapshot holds must be durable in the journal
        // first: otherwise a crash could bring back a journal that ends
        // before the snapshot, and later records would be skipped on replay.
        self.journal.sync_through_async(lsn).await?;
        let mut file = WritebackFile::create(self.dir.join(SNAPSHOT), WritebackOptions::new().atomic(true)).await?;
        let mut body = Vec::with_capacity(64 << 10);
        body.extend_from_slice(SNAPSHOT_MAGIC);
        body.extend_from_slice(&lsn.as_u64().to_le_bytes());
        body.extend_from_slice(&(copy.len() as u64).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        for (key, value) in &copy {
            for part in [key.as_bytes(), value.as_bytes()] {
                body.extend_from_slice(&(part.len() as u32).to_le_bytes());
                body.extend_from_slice(part);
            }
            if body.len() >= 64 << 10 {
                crc.update(&body);
                file.write_all(&body).await?;
                body.clear();
            }
        }
        crc.update(&body);
        body.extend_from_slice(&crc.finalize().to_le_bytes());
        file.write_all(&body).await?;
        file.finish().await?; // durable, renamed into place, directory synced
        self.journal.truncate_before(lsn).await?;
        Ok(lsn)
    }

    async fn close(&self) -> Result<()> {
        self.journal.close().await
    }
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io { op, path: path.to_path_buf(), lsn: None, source: Arc::new(source) }
}

/// The snapshot's LSN and map (LSN zero and empty when there is none).
fn load_snapshot(path: &Path) -> Result<(Lsn, BTreeMap<String, String>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Lsn::ZERO, BTreeMap::new())),
        Err(e) => return Err(io_error("read snapshot", path, e)),
    };
    let corrupt = |reason: &str| Error::Corrupt { path: path.to_path_buf(), lsn: Lsn::ZERO, reason: reason.into() };
    if bytes.len() < 28 || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("not a snapshot"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
    let (lsn, count) = (Lsn::new(u64_at(8)), u64_at(16));
    let mut map = BTreeMap::new();
    let mut rest = &body[24..];
    let mut take = || -> Option<String> {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let s = String::from_utf8(rest.get(4..4 + len)?.to_vec()).ok()?;
        rest = &rest[4 + len..];
        Some(s)
    };
    for _ in 0..count {
        let (Some(k), Some(v)) = (take(), take()) else { return Err(corrupt("truncated entry")) };
        map.insert(k, v);
    }
    Ok((lsn, map))
}

/// The child: recover, then write from 8 tasks until killed, printing each
/// acknowledgement (`put KEY VALUE` / `del KEY`) once it is durable.
async fn child(dir: PathBuf, round: u64) -> Result<()> {
    let (store, opened) = KvStore::open(&dir).await?;
    let store = Arc::new(store);
    println!("ready {} {} {}", store.map.lock().unwrap().len(), opened.snapshot_lsn, opened.replayed);
    let writes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let (store, writes) = (store.clone(), writes.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                let key = format!("r{round}-t{task}-{i}");
                let value = format!("value of {key}");
                store.put(key.clone(), value.clone()).await?;
                println!("put {key} {value}");
                if i % 10 == 9 {
                    // Delete an earlier key of this task.
                    let gone = format!("r{round}-t{task}-{}", i - 5);
                    store.delete(gone.clone()).await?;
                    println!("del {gone}");
                }
                if writes.fetch_add(1, Relaxed) % 2000 == 1999 {
                    store.snapshot().await?;
                }
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await.expect("writer task")?;
    }
    Ok(())
}

/// What the parent learned from one child: every acknowledged write, and
/// per task the one write that may have been in flight when it died.
#[derive(Default)]
struct Acks {
    /// Key → acknowledged value (`None`: acknowledged delete).
    expected: HashMap<String, Option<String>>,
    /// Key → what the write in flight at the kill would have made it. Such
    /// a write may or may not have reached the journal.
    in_flight: HashMap<String, Option<String>>,
}

/// The write a task does after `i`'s put (`deleted`: after the delete that
/// followed it), mirroring [`child`].
fn next_write(round: u64, task: u64, i: u64, deleted: bool) -> (String, Option<String>) {
    if i % 10 == 9 && !deleted {
        (format!("r{round}-t{task}-{}", i - 5), None)
    } else {
        let key = format!("r{round}-t{task}-{}", i + 1);
        let value = format!("value of {key}");
        (key, Some(value))
    }
}

/// The child process, killed if the parent panics: none is left behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One crash round: run the child, kill it after `acks` acknowledgements,
/// and fold every acknowledgement it printed into `acks_seen`.
fn crash_round(dir: &Path, round: u64, acks: u64, acks_seen: &mut Acks) -> u64 {
    let child = Command::new(std::env::current_exe().expect("own path"))
        .args(["child", &dir.display().to_string(), &round.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stdout.take().expect("piped")).lines();
    let (mut seen, mut killed) = (0, false);
    // Per task: the last acknowledged put's index, and whether the delete
    // after it was acknowledged too.
    let mut last: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
    let task_and_index = |key: &str| -> (u64, u64) {
        let parts: Vec<&str> = key.split('-').collect();
        match parts.as_slice() {
            [_, task, i] => (task[1..].parse().expect("task"), i.parse().expect("index")),
            _ => panic!("unexpected key {key}"),
        }
    };
    for line in lines.by_ref() {
        let line = line.expect("child output");
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("ready"), Some(keys), Some(rest)) => {
                let (lsn, replayed) = rest.split_once(' ').unwrap_or((rest, "?"));
                println!(
                    "round {round}: child recovered {keys} keys (snapshot at LSN {lsn}, {replayed} records replayed)"
                );
            }
            (Some("put"), Some(key), Some(value)) => {
                acks_seen.expected.insert(key.to_string(), Some(value.to_string()));
                let (task, i) = task_and_index(key);
                last.insert(task, (i, false));
                seen += 1;
            }
            (Some("del"), Some(key), None) => {
                acks_seen.expected.insert(key.to_string(), None);
                let (task, _) = task_and_index(key);
                last.entry(task).and_modify(|l| l.1 = true);
                seen += 1;
            }
            _ => panic!("unexpected child output: {line}"),
        }
        if seen >= acks && !killed {
            child.0.kill().expect("SIGKILL the child"); // lines already printed still arrive
            killed = true;
        }
    }
    let status = child.0.wait().expect("reap the child");
    assert!(killed, "the child ended on its own ({status}) after {seen} acknowledgements");
    acks_seen.in_flight.clear();
    for task in 0..8 {
        let (key, value) = match last.get(&task) {
            Some(&(i, deleted)) => next_write(round, task, i, deleted),
            None => (format!("r{round}-t{task}-0"), Some(format!("value of r{round}-t{task}-0"))),
        };
        acks_seen.in_flight.insert(key, value);
    }
    seen
}

/// Checks the reopened store against every acknowledgement; a write that
/// was in flight may have landed or not, and whichever it did becomes
/// what later rounds expect.
fn check(store: &KvStore, acks: &mut Acks) -> std::result::Result<(), String> {
    for (key, value) in &acks.expected {
        let got = store.get(key);
        if got != *value && acks.in_flight.get(key) != Some(&got) {
            return Err(format!("acknowledged {key} = {value:?}, found {got:?}"));
        }
    }
    for key in acks.in_flight.keys() {
        acks.expected.insert(key.clone(), store.get(key));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    if args.first().map(String::as_str) == Some("child") {
        let (dir, round) = (PathBuf::from(&args[1]), args[2].parse().expect("round"));
        if let Err(e) = runtime.block_on(child(dir, round)) {
            eprintln!("child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let flag = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let rounds: u64 = flag("--rounds").map_or(3, |v| v.parse().expect("--rounds N"));
    let acks: u64 = flag("--acks").map_or(5000, |v| v.parse().expect("--acks N"));
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = flag("--dir").map_or_else(|| temp.path().join("kv"), PathBuf::from);

    let mut seen_acks = Acks::default();
    for round in 1..=rounds {
        let seen = crash_round(&dir, round, acks, &mut seen_acks);
        let verdict = runtime.block_on(async {
            let (store, opened) = KvStore::open(&dir).await.expect("reopen after the kill");
            let keys = store.map.lock().unwrap().len();
            let verdict = check(&store, &mut seen_acks);
            store.close().await.expect("close");
            println!(
                "round {round}: SIGKILL after {seen} acknowledgements; reopened in {} ms \
                 (snapshot at LSN {}, {} records replayed): {keys} keys, {}",
                opened.took_ms,
                opened.snapshot_lsn,
                opened.replayed,
                match &verdict {
                    Ok(()) => format!("every acknowledged write present ({} keys written)", seen_acks.expected.len()),
                    Err(e) => format!("LOST: {e}"),
                }
            );
            verdict
        });
        if verdict.is_err() {
            std::process::exit(1);
        }
    }
    std::io::stdout().flush().ok();
}
