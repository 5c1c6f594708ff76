//! Which server holds a key: a consistent-hash ring in the manner of ketama. Each server
//! owns [`POINTS`] points on a ring of `u32`, placed by hashing its address; a key belongs to
//! the first point at or after its own hash. Adding a server to N takes about 1/(N+1) of the
//! keys to it and moves no other key.
//!
//! The hash is BLAKE3, so every process, version and platform places keys the same way.

/// Points per server: enough for an even share (within a few percent) among a handful of
/// servers.
const POINTS: u32 = 160;

/// The ring of a fixed list of servers.
#[derive(Debug, Clone)]
pub(super) struct Ring {
    /// (point, server index), sorted by point.
    points: Vec<(u32, usize)>,
    servers: usize,
}

impl Ring {
    pub(super) fn new(servers: &[String]) -> Self {
        let mut points = Vec::with_capacity(servers.len() * POINTS as usize);
        for (index, server) in servers.iter().enumerate() {
            // Eight points per hash, as ketama takes four from each MD5.
            for round in 0..POINTS / 8 {
                let digest = blake3::hash(format!("{server}-{round}").as_bytes());
                for chunk in digest.as_bytes().chunks_exact(4) {
                    let point = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    points.push((point, index));
                }
            }
        }
        points.sort_unstable();
        Self {
            points,
            servers: servers.len(),
        }
    }

    /// The index of the server for `key`.
    pub(super) fn server_of(&self, key: &[u8]) -> usize {
        if self.servers <= 1 {
            return 0; // one server: no hashing
        }
        let digest = blake3::hash(key);
        let bytes = digest.as_bytes();
        let hash = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let at = self.points.partition_point(|&(point, _)| point < hash);
        self.points.get(at).unwrap_or(&self.points[0]).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:11211")).collect()
    }

    #[test]
    fn keys_spread_evenly() {
        let ring = Ring::new(&servers(4));
        let mut counts = [0usize; 4];
        for i in 0..40_000 {
            counts[ring.server_of(format!("key{i}").as_bytes())] += 1;
        }
        for count in counts {
            assert!((7_000..13_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn adding_a_server_moves_about_one_share_of_the_keys_and_only_to_it() {
        let (three, four) = (Ring::new(&servers(3)), Ring::new(&servers(4)));
        let keys = 40_000;
        let mut moved = 0;
        for i in 0..keys {
            let key = format!("key{i}");
            let (before, after) = (
                three.server_of(key.as_bytes()),
                four.server_of(key.as_bytes()),
            );
            if before != after {
                assert_eq!(after, 3, "a key moved between old servers");
                moved += 1;
            }
        }
        // One quarter of the keys is 10,000.
        assert!((7_000..13_000).contains(&moved), "{moved} of {keys} moved");
    }

    #[test]
    fn one_server_takes_everything() {
        let ring = Ring::new(&servers(1));
        assert!((0..100).all(|i| ring.server_of(format!("k{i}").as_bytes()) == 0));
    }
}
