//! How the CLI speaks: ✓ lines, one-line errors, progress for long work.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A step that worked.
pub(crate) fn ok(message: impl std::fmt::Display) {
    println!("✓ {message}");
}

/// The one line a failed command prints: the error and its causes, joined by `: `. A cause
/// whose text its parent already quotes is left out.
pub(crate) fn error(error: &anyhow::Error) {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    eprintln!("✗ error: {}", line.replace(['\n', '\r'], " "));
}

/// The exit codes of `jtc`, as its `--help` documents them.
pub(crate) const NOT_FOUND: u8 = 1;
const USAGE: u8 = 2;
const BACKEND: u8 = 3;

/// A command given something it cannot use (a malformed `--url`, say): exit code 2.
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The exit code of a failed command: 2 for usage and configuration errors (a bad variable, a
/// broken `.env`, a malformed argument, a key over the cache's limit), 3 for everything else,
/// which is the backend failing or out of reach.
pub(crate) fn exit_code(error: &anyhow::Error) -> std::process::ExitCode {
    let usage = error.chain().any(|cause| {
        cause.is::<dotenvy::Error>()
            || cause.is::<Usage>()
            || cause.downcast_ref::<jtc_cache::Error>().is_some_and(|e| {
                matches!(
                    e.kind(),
                    jtc_cache::ErrorKind::Config { .. } | jtc_cache::ErrorKind::KeyTooLong { .. }
                )
            })
    });
    std::process::ExitCode::from(if usage { USAGE } else { BACKEND })
}

/// Reports progress over folders (or `unit`s): a bar on a terminal, a few plain lines
/// otherwise.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    label: &'static str,
    unit: &'static str,
}

impl Progress {
    pub(crate) fn new(label: &'static str) -> Self {
        Self::of(label, "folders")
    }

    pub(crate) fn of(label: &'static str, unit: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let template = format!("{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{eta}})");
            bar.set_style(
                ProgressStyle::with_template(&template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(label);
            bar
        });
        Self { bar, label, unit }
    }

    /// The `progress(done, total)` callback to hand to a long operation.
    pub(crate) fn callback(&self) -> impl FnMut(usize, usize) + Send + 'static {
        let bar = self.bar.clone();
        let (label, unit) = (self.label, self.unit);
        let mut last_quarter = 0;
        move |done, total| {
            if let Some(bar) = &bar {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                return;
            }
            let quarter = (done * 4).checked_div(total).unwrap_or(4);
            if quarter > last_quarter {
                last_quarter = quarter;
                eprintln!("{label}: {done}/{total} {unit}");
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
