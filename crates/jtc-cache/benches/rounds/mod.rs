//! How many rounds a benchmark of alternating rounds runs, shared by those benchmarks.

/// `(rounds, scale)`: under `cargo bench`, `JTC_ROUNDS` rounds (default `default`) at full
/// size (scale 1); under `cargo test --benches` (no `--bench` argument), one round at a
/// twentieth of the size, to keep that quick.
pub(crate) fn rounds(default: usize) -> (usize, usize) {
    if !std::env::args().any(|a| a == "--bench") {
        return (1, 20);
    }
    let rounds = std::env::var("JTC_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    (rounds, 1)
}
