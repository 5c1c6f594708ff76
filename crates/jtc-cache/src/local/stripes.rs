//! Stripes: counters spread over several cache lines, each thread adding to its own, so that
//! counting on a hot path does not make every core fight over one line. A thread's stripe is
//! assigned round robin on first use.

use std::{
    cell::Cell,
    sync::atomic::{AtomicUsize, Ordering},
};

/// How many stripes a striped counter has.
pub(crate) const STRIPES: usize = 16;

/// This thread's stripe, assigned round robin on first use.
#[inline]
pub(crate) fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|stripe| {
        let mut index = stripe.get();
        if index == usize::MAX {
            index = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            stripe.set(index);
        }
        index
    })
}
