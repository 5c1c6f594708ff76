//! A failing backend is logged at most once a second. Alone in its test binary: `tracing`
//! caches per call site whether anyone listens, and tests of other files running at the same
//! time with no subscriber would make that answer "nobody".

use std::time::{Duration, Instant};

use jtc_cache::{Cache, RedisConfig, RedisDriver};
use jtc_test_support::RedisServer;

/// Counts the warnings the cache logs.
#[derive(Clone, Default)]
struct Warnings(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() == tracing::Level::WARN && meta.target().starts_with("jtc_cache") {
            let mut fields = String::new();
            event.record(
                &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                    fields.push_str(&format!("{}={value:?} ", field.name()));
                },
            );
            self.0.lock().unwrap().push(fields);
        }
    }
}

/// A five-second Redis outage under load — 16 concurrent calls at a time — logs a few lines, each saying how many failures
/// it stands for — not one line per failure.
#[tokio::test]
async fn an_outage_is_logged_at_most_once_a_second() {
    use tracing_subscriber::layer::SubscriberExt;

    let warnings = Warnings::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let mut server = RedisServer::start();
    let config = RedisConfig::from_url(server.url())
        .prefix("outage-log:")
        .command_timeout(Duration::from_millis(50));
    let cache = Cache::new(RedisDriver::from_config(&config).await.unwrap());
    server.stop();
    let until = Instant::now() + Duration::from_secs(5);
    let mut failures = 0u64;
    while Instant::now() < until {
        let calls = (0..16).map(|i| cache.get::<i32>(if i % 2 == 0 { "a" } else { "b" }));
        failures += futures::future::join_all(calls)
            .await
            .iter()
            .filter(|r| r.is_err())
            .count() as u64;
    }
    let lines = warnings.0.lock().unwrap().clone();
    assert!(failures > 100, "{failures} failures");
    assert!(
        (4..=7).contains(&lines.len()),
        "{} lines for {failures} failures: {lines:#?}",
        lines.len()
    );
    let counted: u64 = lines
        .iter()
        .filter_map(|l| {
            l.split("suppressed=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        counted + lines.len() as u64 <= failures,
        "{counted} + {}",
        lines.len()
    );
    assert!(
        counted >= failures / 2,
        "the lines account for the failures: {counted} of {failures}"
    );
    assert!(
        lines[0].contains("cache=\"redis\"")
            && lines[0].contains("driver=\"redis\"")
            && lines[0].contains("operation=\"get\""),
        "{}",
        lines[0]
    );
}
