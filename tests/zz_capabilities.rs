//! What this machine offered the suite, said where a person sees it: the
//! line is written past the test harness's capture, and this file's name
//! makes it the last of the crate's test binaries. Under `TIDELOG_REQUIRE`,
//! every capability it names must be present, or this fails too.

use std::io::Write;

use tidelog::testing::{capability_report, required, Capability};

#[test]
fn report_what_this_machine_offers_the_suite() {
    let asked = std::env::var("TIDELOG_REQUIRE").unwrap_or_default();
    let line = format!(
        "tidelog test capabilities: {}; TIDELOG_REQUIRE={}\n",
        capability_report(),
        if asked.is_empty() { "(unset: missing capabilities skip, saying so)" } else { asked.as_str() }
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    for cap in Capability::ALL.into_iter().filter(|&c| required(c)) {
        if let Err(why) = cap.present() {
            panic!("TIDELOG_REQUIRE asks for {}, which is missing here: {why}", cap.name());
        }
    }
}
