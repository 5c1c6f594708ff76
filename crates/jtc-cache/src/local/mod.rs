//! Building blocks for state kept in this process, shared by the in-memory driver and the
//! Redis near cache: a sharded hash table ([`table`]), a clock cheap to read far from an
//! expiry ([`clock`]), and per-thread counter stripes ([`stripes`]). None of them knows a
//! driver.

pub(crate) mod clock;
pub(crate) mod stripes;
pub(crate) mod table;
