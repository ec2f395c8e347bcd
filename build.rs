//! One cfg for "the Linux-only code is compiled": `tidelog_linux`, set on
//! Linux unless `--cfg tidelog_portable` asks for the crate as it compiles
//! on other Unixes (no io_uring, statx, sync_file_range, fallocate,
//! O_DIRECT or Linux-only flags), so that CI can run the fallback paths.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tidelog_linux)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CARGO_CFG_TIDELOG_PORTABLE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let portable = std::env::var_os("CARGO_CFG_TIDELOG_PORTABLE").is_some();
    if linux && !portable {
        println!("cargo::rustc-cfg=tidelog_linux");
    }
}
