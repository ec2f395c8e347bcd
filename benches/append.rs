//! In-process micro-benchmark of the append path: `submit` of 128-byte
//! records from one task (the cost of sequencing a record: one copy into the
//! log buffer), and `append_async` round trips, per substrate.
//!
//! `cargo bench --bench append` (plain harness: prints medians of 5 runs).

use std::time::Instant;

use tidelog::{Journal, JournalOptions, SubstrateChoice, SyncPolicy};

const RECORDS: usize = 200_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

async fn submit_ns(choice: SubstrateChoice) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = JournalOptions::new().substrate(choice).sync_policy(SyncPolicy::Never);
    let j = Journal::open(dir.path(), opts).await.expect("open");
    let payload = [0x42u8; 128];
    let t = Instant::now();
    let mut last = None;
    for _ in 0..RECORDS {
        last = Some(j.submit(payload).expect("submit"));
    }
    let per_record = t.elapsed().as_nanos() as f64 / RECORDS as f64;
    last.expect("one ticket").await.expect("written");
    j.close().await.expect("close");
    per_record
}

async fn written_us(choice: SubstrateChoice) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let j = Journal::open(dir.path(), JournalOptions::new().substrate(choice)).await.expect("open");
    let t = Instant::now();
    for _ in 0..5_000 {
        j.append_async([0x42u8; 128]).await.expect("append");
    }
    let per_record = t.elapsed().as_micros() as f64 / 5_000.0;
    j.close().await.expect("close");
    per_record
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    for choice in [SubstrateChoice::IoUring, SubstrateChoice::Blocking] {
        let submit = median((0..5).map(|_| rt.block_on(submit_ns(choice))).collect());
        let written = median((0..5).map(|_| rt.block_on(written_us(choice))).collect());
        println!(
            "{choice:?}: submit {submit:.0} ns/record ({:.2} M records/s); append_async (written) {written:.1} µs/record",
            1e3 / submit
        );
    }
}
