//! The load side of `scripts/soak`: steady HTTP load on the example API, with a record of
//! every acknowledged write, checked at the end.
//!
//! ```sh
//! cargo run --release --example soak_load -- http://127.0.0.1:3000 180 32 out.csv \
//!     steady@0 redis-down@30 redis-back@40
//! ```
//!
//! Arguments: base URL, duration in seconds, concurrent connections, a CSV file for the
//! per-second record, then phases as `name@second`. Each worker loops: 80 % `GET
//! /users/{1..500}`, 20 % `POST /notes/{unique id}` with a random body. A `201` means the app
//! acknowledged the write; after the run every acknowledged note is read back, and any that
//! is missing or different is a lost write.
//!
//! Prints a Markdown table per phase: requests, status mix, connection errors, p50/p99.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// What happened in one second of the run.
#[derive(Debug, Default, Clone)]
struct Second {
    ok: u64,
    client_error: u64,
    too_many: u64,
    server_error: u64,
    failed: u64,
    latencies_us: Vec<u32>,
}

#[derive(Debug, Default)]
struct Record {
    seconds: Vec<Second>,
    acknowledged: Vec<(u64, String)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args {
        base,
        seconds,
        connections,
        csv,
        phases,
    } = Args::parse()?;

    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let record = Arc::new(Mutex::new(Record {
        seconds: vec![Second::default(); usize::try_from(seconds)? + 1],
        acknowledged: Vec::new(),
    }));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..connections)
        .map(|worker| {
            let (client, base, record) = (client.clone(), base.clone(), Arc::clone(&record));
            tokio::spawn(async move {
                worker_loop(worker as u64, &client, &base, &record, started, deadline).await;
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }

    let record = Arc::try_unwrap(record)
        .map_err(|_| anyhow::anyhow!("workers still hold the record"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    write_csv(&csv, &record.seconds)?;
    print_phases(&record.seconds, &phases);
    let lost = verify(&client, &base, &record.acknowledged).await?;
    if !report_lost(record.acknowledged.len(), &lost) {
        std::process::exit(2);
    }
    Ok(())
}

/// The command line: `<base-url> <seconds> <connections> <csv> [phase@second ...]`.
struct Args {
    base: String,
    seconds: u64,
    connections: usize,
    csv: String,
    phases: Vec<(String, u64)>,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.len() < 4 {
            bail!("usage: soak_load <base-url> <seconds> <connections> <csv> [phase@second ...]");
        }
        let mut phases: Vec<(String, u64)> = args[4..]
            .iter()
            .map(|p| {
                let (name, at) = p.split_once('@').context("phases are name@second")?;
                Ok((name.to_owned(), at.parse()?))
            })
            .collect::<anyhow::Result<_>>()?;
        if phases.is_empty() {
            phases.push(("run".to_owned(), 0));
        }
        Ok(Self {
            base: args[0].trim_end_matches('/').to_owned(),
            seconds: args[1].parse().context("seconds")?,
            connections: args[2].parse().context("connections")?,
            csv: args[3].clone(),
            phases,
        })
    }
}

/// Prints how many acknowledged writes read back; `true` when none was lost.
fn report_lost(acknowledged: usize, lost: &[(u64, String)]) -> bool {
    println!(
        "\nacknowledged writes: {acknowledged}, read back intact: {}, lost: {}",
        acknowledged - lost.len(),
        lost.len()
    );
    for (id, why) in lost.iter().take(10) {
        println!("  lost note {id}: {why}");
    }
    lost.is_empty()
}

async fn worker_loop(
    worker: u64,
    client: &HttpClient,
    base: &str,
    record: &Mutex<Record>,
    started: Instant,
    deadline: Instant,
) {
    let mut state = worker.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut sequence = 0u64;
    while Instant::now() < deadline {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let write = state.is_multiple_of(5);
        let sent = Instant::now();
        let (result, note) = if write {
            sequence += 1;
            let id = worker * 1_000_000_000 + sequence;
            let body = format!("note {id} {state:x}");
            let request = http::Request::post(format!("{base}/notes/{id}"))
                .body(Full::new(Bytes::from(body.clone())))
                .expect("a valid request");
            (send(client, request).await, Some((id, body)))
        } else {
            let request = http::Request::get(format!("{base}/users/{}", state % 500 + 1))
                .body(Full::new(Bytes::new()))
                .expect("a valid request");
            (send(client, request).await, None)
        };
        let failed = result.is_err();
        record_result(record, sent, started, &result, note);
        if failed {
            // The app is down or refusing connections: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Counts one response (or failure) in the second it was sent, and keeps an acknowledged
/// note for the read-back check.
fn record_result(
    record: &Mutex<Record>,
    sent: Instant,
    started: Instant,
    result: &anyhow::Result<u16>,
    note: Option<(u64, String)>,
) {
    let latency = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
    let second = usize::try_from(sent.duration_since(started).as_secs()).unwrap_or(0);
    let mut record = record.lock().expect("record lock");
    let Some(bucket) = record.seconds.get_mut(second) else {
        return;
    };
    match result {
        Ok(status) => {
            let status = *status;
            bucket.latencies_us.push(latency);
            match status {
                200..=299 => bucket.ok += 1,
                429 => bucket.too_many += 1,
                400..=499 => bucket.client_error += 1,
                _ => bucket.server_error += 1,
            }
            if status == 201
                && let Some(note) = note
            {
                record.acknowledged.push(note);
            }
        }
        Err(_) => bucket.failed += 1,
    }
}

async fn send(client: &HttpClient, request: http::Request<Full<Bytes>>) -> anyhow::Result<u16> {
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .context("timed out")??;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

/// Reads every acknowledged note back; returns the ones missing or changed.
async fn verify(
    client: &HttpClient,
    base: &str,
    acknowledged: &[(u64, String)],
) -> anyhow::Result<Vec<(u64, String)>> {
    let mut lost = Vec::new();
    for chunk in acknowledged.chunks(64) {
        let checks = chunk.iter().map(|(id, body)| async move {
            let request = http::Request::get(format!("{base}/notes/{id}"))
                .body(Full::new(Bytes::new()))
                .expect("a valid request");
            let response = client.request(request).await;
            let verdict = match response {
                Ok(response) if response.status() == 200 => {
                    let stored = response.into_body().collect().await.map(|b| b.to_bytes());
                    match stored {
                        Ok(stored) if stored == body.as_bytes() => None,
                        Ok(stored) => Some(format!("changed to {stored:?}")),
                        Err(e) => Some(format!("unreadable: {e}")),
                    }
                }
                Ok(response) => Some(format!("status {}", response.status())),
                Err(e) => Some(format!("request failed: {e}")),
            };
            verdict.map(|why| (*id, why))
        });
        lost.extend(
            futures::future::join_all(checks)
                .await
                .into_iter()
                .flatten(),
        );
    }
    Ok(lost)
}

fn write_csv(path: &str, seconds: &[Second]) -> anyhow::Result<()> {
    let mut out = String::from("second,ok,429,4xx,5xx,connection_errors,p99_ms\n");
    for (i, s) in seconds.iter().enumerate() {
        let _ = writeln!(
            out,
            "{i},{},{},{},{},{},{:.1}",
            s.ok,
            s.too_many,
            s.client_error,
            s.server_error,
            s.failed,
            percentile(&mut s.latencies_us.clone(), 0.99)
        );
    }
    std::fs::write(path, out).with_context(|| format!("failed to write {path}"))
}

fn print_phases(seconds: &[Second], phases: &[(String, u64)]) {
    println!(
        "| phase | seconds | requests | 2xx | 429 | 4xx | 5xx | connection errors | p50 ms | p99 ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for (i, (name, from)) in phases.iter().enumerate() {
        let to = phases
            .get(i + 1)
            .map_or(seconds.len() as u64, |(_, at)| *at)
            .min(seconds.len() as u64);
        let span = &seconds[usize::try_from(*from).unwrap_or(0)..usize::try_from(to).unwrap_or(0)];
        let mut merged = Second::default();
        for s in span {
            merged.ok += s.ok;
            merged.too_many += s.too_many;
            merged.client_error += s.client_error;
            merged.server_error += s.server_error;
            merged.failed += s.failed;
            merged.latencies_us.extend_from_slice(&s.latencies_us);
        }
        let requests = merged.ok + merged.too_many + merged.client_error + merged.server_error;
        *totals.entry("requests").or_default() += requests;
        println!(
            "| {name} | {from}–{to} | {requests} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            merged.ok,
            merged.too_many,
            merged.client_error,
            merged.server_error,
            merged.failed,
            percentile(&mut merged.latencies_us.clone(), 0.50),
            percentile(&mut merged.latencies_us, 0.99),
        );
    }
    println!(
        "\ntotal answered requests: {}",
        totals.get("requests").copied().unwrap_or(0)
    );
}

/// The `q` quantile of the latencies, in milliseconds.
fn percentile(latencies_us: &mut [u32], q: f64) -> f64 {
    if latencies_us.is_empty() {
        return 0.0;
    }
    latencies_us.sort_unstable();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((latencies_us.len() as f64 - 1.0) * q).round() as usize;
    f64::from(latencies_us[index]) / 1000.0
}
