//! The crash-test child (`tidelog append-until-killed`) seen from the
//! parent: run it until it has acknowledged enough records, cut it off
//! (SIGKILL, or a filesystem shutdown first), and check what survived.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Must match the child's payload (`tidelog-cli/src/child.rs`).
pub fn payload(tag: u32, task: u32, n: u64) -> Vec<u8> {
    let mut p = format!("tag {tag} task {task} n {n} ").into_bytes();
    let fill = ((n * 131 + u64::from(task) * 977) % 6000) as usize;
    p.extend(std::iter::repeat_n(b'a' + (n % 26) as u8, fill));
    p
}

/// Must match the child's `--large` payload (`tidelog-cli/src/child.rs`).
pub fn large_payload(tag: u32, task: u32, n: u64) -> Vec<u8> {
    let mut p = payload(tag, task, n);
    p.resize(270_000 + ((n * 4099 + u64::from(task) * 131) % 8192) as usize, b'A' + (n % 26) as u8);
    p
}

/// One acknowledged record: (tag, task, n, lsn).
pub type Ack = (u32, u32, u64, u64);

/// Kills the child if the test panics first: no process is left behind.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a child appending from four tasks into `dir` (`extra`: more child
/// flags) until it has acknowledged `want` records; then stops it (SIGSTOP,
/// waited for), runs `cut`, kills it, and returns every acknowledgement it
/// printed — including those printed between the moment `want` was reached
/// and the stop.
pub fn run_child(
    dir: &Path,
    substrate: &str,
    direct: bool,
    tag: u32,
    extra: &[&str],
    want: usize,
    cut: impl FnOnce(),
) -> Vec<Ack> {
    let mut child = Appender::spawn(dir, substrate, direct, tag, extra);
    child.wait_for(want);
    child.stop_cut_kill(cut)
}

/// A running crash-test child and the acknowledgements it printed so far.
pub struct Appender {
    child: Reaper,
    tag: u32,
    lines: mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
    acks: Vec<Ack>,
    /// Held until the child printed its first line (see `super::SPAWN`).
    no_open: Option<std::sync::MutexGuard<'static, ()>>,
}

impl Appender {
    /// Starts a child appending from four tasks into `dir` (`extra`: more
    /// child flags).
    pub fn spawn(dir: &Path, substrate: &str, direct: bool, tag: u32, extra: &[&str]) -> Appender {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidelog"));
        cmd.arg("append-until-killed").arg(dir).args(["--substrate", substrate, "--tag", &tag.to_string()]).args(extra);
        if direct {
            cmd.arg("--direct");
        }
        // See `super::SPAWN`: no journal of this process opens until the
        // child has printed its first line, long after its exec closed the
        // copies of our descriptors.
        let no_open = super::SPAWN.lock().unwrap_or_else(|p| p.into_inner());
        let mut child = Reaper(cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn the child"));
        let stdout = child.0.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Appender { child, tag, lines, reader, acks: Vec::new(), no_open: Some(no_open) }
    }

    /// Waits (60 s at most, then fails loudly) until the child has
    /// acknowledged `want` records in all.
    pub fn wait_for(&mut self, want: usize) {
        while self.acks.len() < want {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => self.acks.push(parse_ack(self.tag, &line)),
                Err(e) => panic!("the child acknowledged only {} of {want} records within 60 s: {e}", self.acks.len()),
            }
            drop(self.no_open.take());
        }
    }

    /// The acknowledgements received so far.
    pub fn acks(&self) -> &[Ack] {
        &self.acks
    }

    /// Stops the child (SIGSTOP, waited for), runs `cut`, kills it, and
    /// returns every acknowledgement it printed.
    pub fn stop_cut_kill(mut self, cut: impl FnOnce()) -> Vec<Ack> {
        // Freeze the child before the cut, and wait until every thread of
        // it has stopped: whatever it printed is then in the pipe, and
        // nothing it does afterwards is counted. A cut that let it run on
        // would count acknowledgements of syncs that raced the cut — on
        // ext4 an fdatasync racing a GOINGDOWN shutdown can return success
        // for data whose extent conversion the shutdown abandoned, which no
        // real power cut allows (the process is dead too).
        let pid = self.child.0.id() as libc::pid_t;
        // SAFETY: plain syscalls on our own child's pid; it is not reaped
        // yet (only `child.0.wait()` below reaps it), so the pid cannot be
        // reused.
        unsafe {
            assert_eq!(libc::kill(pid, libc::SIGSTOP), 0, "SIGSTOP the child");
            let mut status = 0;
            let waited = libc::waitpid(pid, &mut status, libc::WUNTRACED);
            assert!(waited == pid && libc::WIFSTOPPED(status), "the child stopped (status {status:#x})");
        }
        cut();
        self.child.0.kill().expect("SIGKILL the child");
        self.child.0.wait().expect("reap the child");
        let Appender { lines, reader, mut acks, tag, .. } = self;
        reader.join().expect("stdout reader");
        // Lines still in the pipe were printed before the child stopped.
        acks.extend(lines.try_iter().map(|line| parse_ack(tag, &line)));
        acks
    }
}

/// One line of the child's: "ack TASK N LSN".
fn parse_ack(tag: u32, line: &str) -> Ack {
    let f: Vec<&str> = line.split_whitespace().collect();
    assert!(f.len() == 4 && f[0] == "ack", "unexpected child output {line:?}");
    (tag, f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// The acknowledged records that are not in `records` (LSN → payload)
/// exactly as acknowledged.
pub fn lost(records: &HashMap<u64, Vec<u8>>, acked: &[Ack]) -> Vec<Ack> {
    lost_of(records, acked, payload)
}

/// [`lost`] for records made by `make` (`payload`, `large_payload`).
pub fn lost_of(records: &HashMap<u64, Vec<u8>>, acked: &[Ack], make: fn(u32, u32, u64) -> Vec<u8>) -> Vec<Ack> {
    acked.iter().filter(|&&(tag, task, n, lsn)| records.get(&lsn) != Some(&make(tag, task, n))).copied().collect()
}
