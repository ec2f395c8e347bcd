//! Ratio and single-thread speed of lz4_flex and zstd on the payloads the
//! `compression` feature is for: 4 KiB records, compressed one at a time
//! (as the journal does), JSON-like text and random bytes. Deterministic
//! inputs; the figures are the median of five passes.

use std::time::Instant;

const RECORD: usize = 4096;
const RECORDS: usize = 4096; // 16 MiB per pass

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// JSON event lines, filled to exactly `RECORD` bytes.
fn json(rng: &mut Rng) -> Vec<u8> {
    const EVENTS: [&str; 5] = ["click", "view", "purchase", "signup", "logout"];
    const PAGES: [&str; 4] = ["/home", "/cart", "/product/detail", "/account/settings"];
    let mut out = String::with_capacity(RECORD + 256);
    while out.len() < RECORD {
        let r = rng.next();
        out.push_str(&format!(
            "{{\"id\":{},\"user\":\"user_{}\",\"event\":\"{}\",\"page\":\"{}\",\"ts\":{},\"latency_ms\":{}.{},\"ok\":{}}}\n",
            r % 1_000_000_000,
            (r >> 20) % 50_000,
            EVENTS[(r >> 8) as usize % EVENTS.len()],
            PAGES[(r >> 12) as usize % PAGES.len()],
            1_764_547_200_000u64 + (r >> 24) % 86_400_000,
            (r >> 30) % 900,
            (r >> 40) % 1000,
            (r >> 50) % 7 != 0,
        ));
    }
    out.truncate(RECORD);
    out.into_bytes()
}

fn random(rng: &mut Rng) -> Vec<u8> {
    (0..RECORD / 8).flat_map(|_| rng.next().to_le_bytes()).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn measure(name: &str, kind: &str, inputs: &[Vec<u8>], c: &dyn Fn(&[u8]) -> Vec<u8>, d: &dyn Fn(&[u8]) -> Vec<u8>) {
    let bytes = (inputs.len() * RECORD) as f64;
    let (mut cs, mut ds, mut stored) = (Vec::new(), Vec::new(), 0usize);
    for _ in 0..5 {
        let t = Instant::now();
        let packed: Vec<Vec<u8>> = inputs.iter().map(|i| c(i)).collect();
        cs.push(bytes / t.elapsed().as_secs_f64() / 1e6);
        stored = packed.iter().map(Vec::len).sum();
        let t = Instant::now();
        for (p, i) in packed.iter().zip(inputs) {
            assert_eq!(&d(p), i);
        }
        ds.push(bytes / t.elapsed().as_secs_f64() / 1e6);
    }
    println!(
        "{name:<12} {kind:<7} ratio {:>5.2}  compress {:>6.0} MB/s  decompress {:>6.0} MB/s",
        bytes / stored as f64,
        median(cs),
        median(ds)
    );
}

fn main() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let sets = [
        ("json", (0..RECORDS).map(|_| json(&mut rng)).collect::<Vec<_>>()),
        ("random", (0..RECORDS).map(|_| random(&mut rng)).collect()),
    ];
    println!("{}", String::from_utf8_lossy(&sets[0].1[0][..300]));
    for (kind, inputs) in &sets {
        measure("lz4_flex", kind, inputs, &|i| lz4_flex::block::compress(i), &|p| {
            lz4_flex::block::decompress(p, RECORD).unwrap()
        });
        for level in [1, 3] {
            let name = format!("zstd -{level}");
            measure(&name, kind, inputs, &|i| zstd::bulk::compress(i, level).unwrap(), &|p| {
                zstd::bulk::decompress(p, RECORD).unwrap()
            });
            // A context per thread, reused: what a journal would keep.
            let cctx = std::cell::RefCell::new(zstd::bulk::Compressor::new(level).unwrap());
            let dctx = std::cell::RefCell::new(zstd::bulk::Decompressor::new().unwrap());
            let name = format!("zstd -{level} ctx");
            measure(&name, kind, inputs, &|i| cctx.borrow_mut().compress(i).unwrap(), &|p| {
                dctx.borrow_mut().decompress(p, RECORD).unwrap()
            });
        }
    }
}
