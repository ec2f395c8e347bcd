//! Change data capture: one task appends, another follows the journal with
//! `subscribe`, seeing every durable record exactly once, in order. Then a
//! consumer restarts from the position it checkpointed and resumes there.
//!
//! ```sh
//! cargo run --release --example tail_follow                  # 20,000 events in a temp dir
//! cargo run --release --example tail_follow -- --records 1000000 --dir /data/cdc
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tidelog::{Journal, JournalOptions, Result};

/// An event: its sequence number and when it was appended (µs since start).
fn event(seq: u64, at_us: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&seq.to_le_bytes());
    out[8..].copy_from_slice(&at_us.to_le_bytes());
    out
}

fn parse(payload: &[u8]) -> (u64, u64) {
    let word = |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().expect("16-byte event"));
    (word(0), word(8))
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    sorted.get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let records: u64 = flag("--records").map_or(20_000, |v| v.parse().expect("--records N"));
    assert!(records >= 2, "--records must be at least 2");
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = flag("--dir").map_or_else(|| temp.path().join("cdc"), PathBuf::from);

    let journal = Journal::open(&dir, JournalOptions::default()).await?;
    let start_lsn = journal.next_lsn();
    let started = Instant::now();

    // The follower: a subscription never causes a sync; it sees records as
    // group commit makes them durable.
    let mut feed = journal.subscribe(start_lsn);
    let follower = tokio::spawn(async move {
        let (mut next_seq, mut lags, mut checkpoint) = (0u64, Vec::new(), start_lsn);
        while let Some(record) = feed.next().await {
            let record = record?;
            let (seq, at_us) = parse(record.payload());
            assert_eq!(seq, next_seq, "every durable record exactly once, in order");
            next_seq += 1;
            lags.push((started.elapsed().as_micros() as u64).saturating_sub(at_us));
            if seq == records / 2 - 1 {
                checkpoint = record.lsn(); // a consumer would persist this
            }
        }
        // The stream ends cleanly when the journal closes.
        Ok::<_, tidelog::Error>((next_seq, lags, checkpoint))
    });

    // The producer: written appends, made durable every 64 records (one
    // sync covers them all).
    let mut last = start_lsn;
    for seq in 0..records {
        last = journal.append_async(event(seq, started.elapsed().as_micros() as u64)).await?;
        if seq % 64 == 63 {
            journal.sync_through_async(last).await?;
        }
    }
    journal.sync_through_async(last).await?;
    let produced_in = started.elapsed();
    journal.close().await?;
    let (followed, mut lags, checkpoint) = follower.await.expect("follower task")?;
    assert_eq!(followed, records, "the follower saw every record");
    lags.sort_unstable();
    println!(
        "followed {followed} events appended in {:.2} s ({:.0}/s); append-to-follower lag p50 {} µs, p99 {} µs, max {} µs",
        produced_in.as_secs_f64(),
        records as f64 / produced_in.as_secs_f64(),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(0),
    );

    // A consumer restarting from its checkpoint resumes at the next event.
    let journal = Journal::open(&dir, JournalOptions::default()).await?;
    let mut resumed = journal.subscribe(checkpoint);
    let mut expect = records / 2;
    while expect < records {
        let record = tokio::time::timeout(Duration::from_secs(30), resumed.next())
            .await
            .expect("the resumed subscription delivers what is on disk")
            .expect("not ended")?;
        assert_eq!(parse(record.payload()).0, expect, "resumed right after the checkpoint");
        expect += 1;
    }
    println!("resumed from checkpoint LSN {checkpoint}: events {}..{records} delivered again, in order", records / 2);
    journal.close().await?;
    assert!(resumed.next().await.is_none(), "a subscription ends when its journal closes");
    Ok(())
}
