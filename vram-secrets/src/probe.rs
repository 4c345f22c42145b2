//! Test-only probe: what each [`KeyBuf`](crate::buf::KeyBuf) held at the
//! moment it was freed (after its zeroization). Compiled only for this
//! crate's unit tests; no production code path can reach it.

use std::cell::RefCell;

thread_local! {
    static FREED: RefCell<Vec<(&'static str, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
}

/// Records a buffer's contents as it is freed.
pub(crate) fn freed(label: &'static str, bytes: &[u8]) {
    FREED.with(|f| f.borrow_mut().push((label, bytes.to_vec())));
}

/// Takes the buffers recorded on this thread so far.
pub(crate) fn take() -> Vec<(&'static str, Vec<u8>)> {
    FREED.with(|f| std::mem::take(&mut *f.borrow_mut()))
}
