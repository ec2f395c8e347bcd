//! The native io_uring substrate (see issue: native driver). Placeholder
//! until the ring driver lands: construction reports why it is unavailable.

pub(crate) struct UringBackend;

impl UringBackend {
    pub(crate) fn new(_entries: u32) -> Result<Box<dyn super::Backend>, String> {
        Err("the native ring driver is not built yet".into())
    }
}
