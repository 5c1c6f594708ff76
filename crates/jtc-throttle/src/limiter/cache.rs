//! The cache store: counters in a shared `jtc_cache::Cache` (file, Redis, Redis Cluster), so
//! every app instance using the same cache shares one limit.

use jtc_cache::{Cache, Clock};

use super::{Algorithm, Decision, Quota};

/// Counting in a shared cache.
pub(crate) async fn hit_cache(
    cache: &Cache,
    clock: &dyn Clock,
    key: &str,
    quota: Quota,
) -> jtc_cache::Result<Decision> {
    match quota.algorithm {
        Algorithm::FixedWindow => {
            let hit = cache.hit(key, quota.window).await?;
            Ok(quota.fixed(hit.count.max(0).unsigned_abs(), hit.expires_in))
        }
        Algorithm::SlidingWindow => {
            let window = quota.window_ms();
            let now = clock.now_ms();
            let index = now / window;
            // One hash tag for both windows' keys, so a cluster keeps them on one node.
            let current_key = format!("{{{key}}}:{index}");
            let previous_key = format!("{{{key}}}:{}", index.wrapping_sub(1));
            let previous: u64 = cache
                .get::<i64>(&previous_key)
                .await?
                .unwrap_or(0)
                .max(0)
                .unsigned_abs();
            let hit = cache
                .hit(&current_key, quota.window.saturating_mul(2))
                .await?;
            let counted = hit.count.max(1).unsigned_abs();
            let decision = quota.sliding(previous, counted - 1, now % window);
            if !decision.allowed {
                cache.increment(&current_key, -1).await?;
            }
            Ok(decision)
        }
    }
}
