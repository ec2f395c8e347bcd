//! Open, append, sync, reopen, read back: the crate-level example.
//!
//! `cargo run --release --example quickstart`

use tidelog::{Journal, JournalOptions, Lsn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> tidelog::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = Journal::open(dir.path(), JournalOptions::default()).await?;
    println!("substrate: {:?}", journal.substrate());
    let lsn = journal.append_async(b"hello").await?; // written
    journal.sync_through_async(lsn).await?; // durable
    journal.append_durable_async(b"world").await?; // both, with group commit
    journal.close().await?;

    let journal = Journal::open(dir.path(), JournalOptions::default()).await?;
    println!("recovered up to LSN {}", journal.recovery_report().end_lsn());
    let mut reader = journal.reader(Lsn::ZERO)?;
    while let Some(record) = reader.next_record()? {
        println!("{:>6}  {}", record.lsn(), String::from_utf8_lossy(record.payload()));
    }
    journal.close().await
}
