//! The CLI for scripts: `--json`, the documented exit codes, `clear --tags`, the confirmation
//! that only a terminal sees, completions and the manual page. All on the built binary.

mod common;

use std::process::Command;

use common::{jtc, seed_entries, stderr, stdout};

fn json(output: &std::process::Output) -> serde_json::Value {
    let text = stdout(output);
    assert_eq!(text.trim_end().lines().count(), 1, "one document: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn json_output_is_one_document_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    seed_entries(dir.path());

    let config = jtc(dir.path(), &["cache", "config", "--json"], &[]);
    let config = json(&config);
    assert_eq!(config["driver"], "file");
    assert_eq!(config["file_path"], "storage/framework/cache");

    let got = json(&jtc(dir.path(), &["cache", "get", "user:1", "--json"], &[]));
    assert_eq!(got, serde_json::json!({"name": "Ana", "id": 1}));

    let stats = json(&jtc(dir.path(), &["cache", "stats", "--json"], &[]));
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(stats["hit_ratio"], 0.5);
    assert!(
        stats["source"].as_str().unwrap().contains("round trip"),
        "{stats}"
    );
}

#[test]
fn exit_codes_say_found_not_found_usage_and_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    seed_entries(dir.path());
    let code = |args: &[&str], vars: &[(&str, &str)]| jtc(dir.path(), args, vars).status.code();

    assert_eq!(code(&["cache", "get", "hits"], &[]), Some(0));
    assert_eq!(code(&["cache", "get", "nope"], &[]), Some(1));
    assert_eq!(code(&["cache", "forget", "nope"], &[]), Some(1));
    assert_eq!(code(&["cache", "forget", "hits"], &[]), Some(0));
    assert_eq!(code(&["cache", "nonsense"], &[]), Some(2), "usage");
    assert_eq!(
        code(&["cache", "test"], &[("CACHE_DRIVER", "nope")]),
        Some(2),
        "configuration"
    );
    let unreachable = [
        ("CACHE_DRIVER", "redis"),
        ("REDIS_URL", "redis://127.0.0.1:1/0"),
    ];
    let down = jtc(dir.path(), &["cache", "get", "k"], &unreachable);
    assert_eq!(down.status.code(), Some(3), "{}", stderr(&down));
    let missing_json = jtc(dir.path(), &["cache", "get", "nope", "--json"], &[]);
    assert_eq!(missing_json.status.code(), Some(1));
    assert!(
        stdout(&missing_json).is_empty(),
        "nothing on stdout for a missing key"
    );
}

#[test]
fn clear_with_tags_flushes_only_those_tags() {
    let dir = tempfile::tempdir().unwrap();
    let root = seed_entries(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = jtc_cache::Cache::new(jtc_cache::FileDriver::new(&root).unwrap());
    let minute = std::time::Duration::from_secs(60);
    runtime.block_on(async {
        cache.tags(&["users"]).put("a", &1, minute).await.unwrap();
        cache.tags(&["posts"]).put("b", &2, minute).await.unwrap();
    });

    let cleared = jtc(
        dir.path(),
        &["cache", "clear", "--tags", "users,other"],
        &[],
    );
    assert!(cleared.status.success(), "{}", stderr(&cleared));
    assert!(
        stdout(&cleared).contains("Tags flushed: users, other"),
        "{}",
        stdout(&cleared)
    );
    runtime.block_on(async {
        assert_eq!(cache.tags(&["users"]).get::<i32>("a").await.unwrap(), None);
        assert_eq!(
            cache.tags(&["posts"]).get::<i32>("b").await.unwrap(),
            Some(2)
        );
        assert_eq!(
            cache.get::<i64>("hits").await.unwrap(),
            Some(42),
            "untagged stay"
        );
    });
}

/// Runs `jtc <args>` on a pseudo-terminal (util-linux `script`), typing `answer`.
fn on_a_terminal(dir: &std::path::Path, args: &str, answer: &str) -> String {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_jtc"));
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir)
        .env_remove("CACHE_DRIVER")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) runs; apt-get install util-linux");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn clear_asks_on_a_terminal_and_never_in_a_script() {
    let dir = tempfile::tempdir().unwrap();
    seed_entries(dir.path());
    let declined = on_a_terminal(dir.path(), "cache clear", "n\n");
    assert!(
        declined.contains("[y/N]") && declined.contains("Nothing was cleared"),
        "{declined}"
    );
    assert_eq!(
        jtc(dir.path(), &["cache", "get", "hits"], &[])
            .status
            .code(),
        Some(0)
    );

    let forced = on_a_terminal(dir.path(), "cache clear --force", "");
    assert!(
        !forced.contains("[y/N]") && forced.contains("Cache cleared"),
        "{forced}"
    );

    seed_entries(dir.path());
    let scripted = jtc(dir.path(), &["cache", "clear"], &[]); // stdin is not a terminal
    assert!(
        stdout(&scripted).contains("Cache cleared"),
        "{}",
        stdout(&scripted)
    );
    assert!(!stdout(&scripted).contains("[y/N]"));
    assert_eq!(
        jtc(dir.path(), &["cache", "get", "hits"], &[])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn clear_on_the_array_driver_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    let output = jtc(
        dir.path(),
        &["cache", "clear"],
        &[("CACHE_DRIVER", "array")],
    );
    assert!(output.status.success());
    assert!(
        stdout(&output).contains("nothing to clear"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn completions_and_the_manual_page_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_jtc()"),
        ("zsh", "#compdef jtc"),
        ("fish", "complete -c jtc"),
    ] {
        let output = jtc(dir.path(), &["completions", shell], &[]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        assert!(
            script.contains(marker) && script.contains("cache"),
            "{shell}: {script}"
        );
    }
    let man = jtc(dir.path(), &["man"], &[]);
    let page = stdout(&man);
    assert!(
        page.contains(".TH jtc 1") && page.contains("Exit codes"),
        "{page}"
    );
}
