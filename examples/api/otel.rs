//! Sends the app's spans — the cache's and the rate limiter's among them — to an
//! OpenTelemetry collector over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the
//! `otel` feature of the examples: `cargo run --release --example api --features otel`).
//! The exporter reads the standard `OTEL_EXPORTER_OTLP_*` variables itself.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, registry::LookupSpan};

/// The service name spans are reported under.
const SERVICE: &str = "jtc-example-api";

/// Flushes and stops the exporter when the app stops.
#[derive(Debug)]
pub(crate) struct Otel(Option<SdkTracerProvider>);

impl Otel {
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.0
            && let Err(error) = provider.shutdown()
        {
            eprintln!("✗ OpenTelemetry: the last spans were not sent: {error}");
        }
    }
}

/// The layer that exports spans, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. It takes the
/// cache's and the limiter's `debug` spans whatever `RUST_LOG` says for the console.
pub(crate) fn layer<S>() -> anyhow::Result<(Option<impl Layer<S>>, Otel)>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
        return Ok((None, Otel(None)));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder_empty().with_service_name(SERVICE).build())
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SERVICE))
        .with_filter(EnvFilter::new("info,jtc_cache=debug,jtc_throttle=debug"));
    Ok((Some(layer), Otel(Some(provider))))
}
