//! What a bench run reports: the median of each configuration across
//! rounds, the table with its ratios, and the JSON document.

use std::collections::BTreeSet;
use std::path::Path;

use super::Sample;

/// What `SubstrateChoice::Auto` picked for one I/O variant, and why (or
/// why a journal could not open).
pub(crate) struct AutoPick {
    /// The variant as rows name it after the substrate ("", " direct+dsync zero").
    pub(crate) variant: String,
    pub(crate) pick: Result<(tidelog::Substrate, String), String>,
}

/// The medians across rounds of one configuration.
pub(crate) struct Cell {
    pub(crate) system: String,
    pub(crate) mode: String,
    pub(crate) tasks: usize,
    pub(crate) record: usize,
    rounds: usize,
    samples: u64,
    pub(crate) rate: f64,
    p50: u64,
    p99: u64,
    max: u64,
    cpu_us_per_op: f64,
    records_per_sync: f64,
    /// The median share of io_uring requests punted to io-wq, where known.
    punted: Option<f64>,
}

fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

impl Cell {
    fn from_samples(group: &[&Sample]) -> Cell {
        let first = group[0];
        Cell {
            system: first.system.clone(),
            mode: first.mode.clone(),
            tasks: first.tasks,
            record: first.record,
            rounds: group.len(),
            samples: group.iter().map(|s| s.hist.len()).sum(),
            rate: median(group.iter().map(|s| s.ops as f64 / s.secs).collect()),
            p50: median(group.iter().map(|s| s.hist.value_at_quantile(0.5)).collect()),
            p99: median(group.iter().map(|s| s.hist.value_at_quantile(0.99)).collect()),
            max: group.iter().map(|s| s.hist.max()).max().unwrap_or(0),
            cpu_us_per_op: median(group.iter().map(|s| s.cpu_secs * 1e6 / s.ops.max(1) as f64).collect()),
            records_per_sync: median(group.iter().map(|s| s.records_per_sync).collect()),
            punted: {
                let known: Vec<f64> = group.iter().filter_map(|s| s.punted).collect();
                (!known.is_empty()).then(|| median(known))
            },
        }
    }
}

/// One [`Cell`] per configuration, in the order first measured.
pub(super) fn medians(samples: &[Sample]) -> Vec<Cell> {
    let mut keys: Vec<(String, String, usize, usize)> = Vec::new();
    for s in samples {
        let key = (s.system.clone(), s.mode.clone(), s.tasks, s.record);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.iter()
        .map(|(sys, m, t, r)| {
            let group: Vec<&Sample> =
                samples.iter().filter(|s| (&s.system, &s.mode, s.tasks, s.record) == (sys, m, *t, *r)).collect();
            Cell::from_samples(&group)
        })
        .collect()
}

pub(super) fn print_table(cells: &[Cell], picks: &[AutoPick]) {
    // The native/fallback ratio of each IoUring row: against the Blocking
    // row of the same variant, mode, tasks and record size.
    let blocking_twin = |c: &Cell| {
        let variant = c.system.strip_prefix("tidelog IoUring")?;
        let twin = format!("tidelog Blocking{}", variant.trim_start_matches("+SQPOLL"));
        cells.iter().find(|b| b.system == twin && (&b.mode, b.tasks, b.record) == (&c.mode, c.tasks, c.record))
    };
    let auto_row = |c: &Cell| {
        picks
            .iter()
            .any(|p| matches!(&p.pick, Ok((substrate, _)) if c.system == format!("tidelog {substrate:?}{}", p.variant)))
    };
    println!(
        "{:<30} {:>8} {:>5} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>7} {:>4}",
        "system",
        "mode",
        "tasks",
        "bytes",
        "ops/s",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "max µs",
        "cpu µs/op",
        "rec/sync",
        "io/blk",
        "punted",
        "auto"
    );
    for c in cells {
        let ratio = blocking_twin(c).map_or(String::new(), |b| format!("{:.2}x", c.rate / b.rate));
        let punted = match (c.punted, c.system.starts_with("tidelog IoUring")) {
            (Some(share), _) => format!("{:.0}%", share * 100.0),
            (None, true) => "unknown".into(),
            (None, false) => String::new(),
        };
        println!(
            "{:<30} {:>8} {:>5} {:>7} {:>10.0} {:>8.1} {:>8} {:>8} {:>8} {:>9.2} {:>8.1} {:>7} {:>7} {:>4}",
            c.system,
            c.mode,
            c.tasks,
            c.record,
            c.rate,
            c.rate * c.record as f64 / 1e6,
            c.p50,
            c.p99,
            c.max,
            c.cpu_us_per_op,
            c.records_per_sync,
            ratio,
            punted,
            if auto_row(c) { "*" } else { "" },
        );
    }
    for p in picks {
        let variant = variant_name(&p.variant);
        match &p.pick {
            Ok((substrate, why)) => println!("Auto picks {substrate:?} for {variant} here: {why}"),
            Err(e) => println!("Auto could not open a {variant} journal here: {e}"),
        }
    }
    // `sys` names a substrate and its I/O variant exactly ("IoUring",
    // "Blocking direct"), so "IoUring" never matches "IoUring direct".
    let find = |sys: &str, mode: &str, tasks: usize, record: usize| {
        cells.iter().find(|c| {
            c.system.strip_prefix("tidelog ") == Some(sys) && c.mode == mode && c.tasks == tasks && c.record == record
        })
    };
    let variants: BTreeSet<&str> = cells
        .iter()
        .filter_map(|c| c.system.strip_prefix("tidelog "))
        .filter_map(|s| s.split_once(' '))
        .map(|(_, v)| v)
        .collect();
    for c in cells.iter().filter(|c| c.mode == "submit") {
        println!("{} submit, {} tasks: {:.0} ns per record (aggregate)", c.system, c.tasks, 1e9 / c.rate);
    }
    let records: BTreeSet<usize> = cells.iter().map(|c| c.record).collect();
    let tasks: BTreeSet<usize> = cells.iter().map(|c| c.tasks).collect();
    let modes: BTreeSet<&str> = cells.iter().map(|c| c.mode.as_str()).collect();
    for &record in &records {
        let raw = cells.iter().find(|c| c.system.starts_with("raw") && c.record == record);
        for sys in ["IoUring", "Blocking"] {
            let Some(one) = find(sys, "durable", 1, record) else { continue };
            if let Some(raw) = raw {
                println!(
                    "{sys}, {record} B: durable 1-task p50 / raw p50 = {:.2}",
                    one.p50 as f64 / raw.p50.max(1) as f64
                );
            }
            for &t in tasks.iter().filter(|&&t| t > 1) {
                if let Some(many) = find(sys, "durable", t, record) {
                    println!("{sys}, {record} B: durable {t} tasks / 1 task = {:.1}x", many.rate / one.rate);
                }
            }
        }
        for &mode in &modes {
            for &t in &tasks {
                if let (Some(n), Some(b)) = (find("IoUring", mode, t, record), find("Blocking", mode, t, record)) {
                    println!("IoUring / Blocking, {mode}, {record} B, {t} tasks: {:.2}x", n.rate / b.rate);
                }
                for sys in ["IoUring", "Blocking"] {
                    for v in &variants {
                        let (Some(var), Some(plain)) =
                            (find(&format!("{sys} {v}"), mode, t, record), find(sys, mode, t, record))
                        else {
                            continue;
                        };
                        println!("{sys} {v} / buffered, {mode}, {record} B, {t} tasks: {:.2}x", var.rate / plain.rate);
                    }
                }
            }
        }
        let bandwidth = cells.iter().find(|c| c.system == "raw O_DIRECT pwrite" && c.record == record);
        for c in cells
            .iter()
            .filter(|c| c.system.contains("direct") && c.mode == "durable" && c.system.starts_with("tidelog"))
            .filter(|c| c.record == record)
        {
            if let Some(bw) = bandwidth {
                println!(
                    "{}, {record} B, {} tasks: durable MB/s / raw O_DIRECT bandwidth = {:.2}",
                    c.system,
                    c.tasks,
                    c.rate / bw.rate
                );
            }
        }
    }
}

pub(super) fn write_json(path: &Path, cells: &[Cell], picks: &[AutoPick], dir: &Path) -> Result<(), String> {
    let auto: Vec<serde_json::Value> = picks
        .iter()
        .map(|p| match &p.pick {
            Ok((substrate, why)) => {
                serde_json::json!({ "variant": variant_name(&p.variant), "substrate": format!("{substrate:?}"), "reason": why })
            }
            Err(e) => serde_json::json!({ "variant": variant_name(&p.variant), "error": e }),
        })
        .collect();
    let rows: Vec<serde_json::Value> = cells
        .iter()
        .map(|c| {
            serde_json::json!({
                "system": c.system, "mode": c.mode, "tasks": c.tasks, "record_bytes": c.record,
                "rounds": c.rounds, "samples": c.samples, "ops_per_sec": c.rate,
                "p50_us": c.p50, "p99_us": c.p99, "max_us": c.max,
                "cpu_us_per_op": c.cpu_us_per_op, "records_per_sync": c.records_per_sync,
                "punted_share": c.punted,
            })
        })
        .collect();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let doc = serde_json::json!({
        "dir": dir.display().to_string(),
        "kernel": kernel.trim(),
        "filesystem": tidelog::StorageClass::of(dir).map_or_else(|e| e.to_string(), |c| c.name()),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "figures": "medians across rounds; max is the largest seen",
        "cells": rows,
        "auto": auto,
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A row's I/O variant as a person reads it: "buffered" for the default,
/// "buffered zero" for a preallocation alone, else as the rows name it.
fn variant_name(variant: &str) -> String {
    let v = variant.trim();
    if v.is_empty() {
        "buffered".to_string()
    } else if v == "zero" || v == "none" {
        format!("buffered {v}")
    } else {
        v.to_string()
    }
}
