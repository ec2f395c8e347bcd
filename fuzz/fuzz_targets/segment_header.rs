//! Segment header decoding: never a panic; an accepted header re-encodes to
//! its bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| tidelog::testing::fuzz_segment_header(bytes));
