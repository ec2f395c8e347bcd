//! tidelog-openraft's test fixtures, included as they are: the key-value
//! application for both openraft versions and proposal batching for 0.9.
#![allow(dead_code, unreachable_pub, missing_docs)]
// openraft's traits fix the error types.
#![allow(clippy::result_large_err)]

#[path = "../../tidelog-openraft/tests/support/cmd.rs"]
pub mod cmd;
#[path = "../../tidelog-openraft/tests/support/kv.rs"]
pub mod kv;
#[path = "../../tidelog-openraft/tests/support/kv010.rs"]
pub mod kv010;
#[path = "../../tidelog-openraft/tests/support/propose.rs"]
pub mod propose;
