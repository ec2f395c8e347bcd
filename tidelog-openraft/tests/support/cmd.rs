//! The key-value application's commands and replies, the same for both
//! openraft versions (plain serde types).

use serde::{Deserialize, Serialize};

/// Set `key` to `value`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Set {
    /// The key.
    pub key: String,
    /// The new value.
    pub value: String,
}

/// What one Raft entry carries: one write, or every write a proposer
/// gathered while the previous entry was being replicated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmd {
    /// One write.
    Set(Set),
    /// Several writes, applied in order.
    Batch(Vec<Set>),
}

impl From<Set> for Cmd {
    fn from(set: Set) -> Self {
        Cmd::Set(set)
    }
}

// openraft 0.10 logs commands with `Display`.
impl std::fmt::Display for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Set(s) => write!(f, "set {}", s.key),
            Cmd::Batch(sets) => write!(f, "batch of {}", sets.len()),
        }
    }
}

impl Cmd {
    /// The writes, in order.
    pub fn sets(&self) -> &[Set] {
        match self {
            Cmd::Set(set) => std::slice::from_ref(set),
            Cmd::Batch(sets) => sets,
        }
    }
}

/// The value each key held before its write, one per write of the command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Vec<Option<String>>);

/// The key-value map, and what applying a command does to it.
pub fn apply(map: &mut std::collections::BTreeMap<String, String>, cmd: &Cmd) -> Reply {
    Reply(cmd.sets().iter().map(|s| map.insert(s.key.clone(), s.value.clone())).collect())
}
