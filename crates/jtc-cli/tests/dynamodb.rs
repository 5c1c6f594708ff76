//! The `jtc` binary on the DynamoDB driver, against moto's server started by the test: the
//! settings from the environment (the AWS chain's variables included), `test`, `config`,
//! `clear` and `table`, and no secret in anything it prints.

mod common;

use common::{assert_one_line_failure, jtc, stderr, stdout};
use jtc_cache::{Cache, DynamoDbConfig, DynamoDbDriver};
use jtc_test_support::{MotoServer, free_port};

const SECRET: &str = "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRETKEY";

#[test]
fn the_cli_tests_shows_and_clears_a_dynamodb_cache() {
    let server = MotoServer::start();
    let endpoint = server.endpoint();
    let config = DynamoDbConfig::new("cli_cache")
        .endpoint(&endpoint)
        .region("eu-west-1")
        .credentials("AKIDCLI", SECRET)
        .prefix("cli:")
        // A fresh moto is slow over its first requests; a loaded machine slower still.
        .timeout(std::time::Duration::from_secs(30));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cache = runtime.block_on(async {
        DynamoDbDriver::create_table(&config).await.unwrap();
        let cache = Cache::new(DynamoDbDriver::from_config(&config).await.unwrap());
        cache
            .put("kept", &1, std::time::Duration::from_secs(60))
            .await
            .unwrap();
        cache
    });
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("CACHE_DRIVER", "dynamodb"),
        ("DYNAMODB_CACHE_TABLE", "cli_cache"),
        ("DYNAMODB_PREFIX", "cli:"),
        ("DYNAMODB_ENDPOINT", endpoint.as_str()),
        ("DYNAMODB_TIMEOUT_MS", "30000"),
        // The standard AWS chain: what a deployment sets.
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDCLI"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    let test = jtc(dir.path(), &["cache", "test"], &vars);
    assert!(test.status.success(), "{}", stderr(&test));
    assert!(
        stdout(&test).contains("driver: dynamodb"),
        "{}",
        stdout(&test)
    );
    let shown = jtc(dir.path(), &["cache", "config"], &vars);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(stdout(&shown).contains("cli_cache"), "{}", stdout(&shown));
    assert!(stdout(&shown).contains(&endpoint), "{}", stdout(&shown));
    let table = jtc(dir.path(), &["cache", "table"], &vars);
    assert!(stdout(&table).contains("aws dynamodb create-table --table-name cli_cache"));
    assert!(
        stdout(&table).contains("AttributeName=ttl"),
        "{}",
        stdout(&table)
    );
    let clear = jtc(dir.path(), &["cache", "clear", "--force"], &vars);
    assert!(clear.status.success(), "{}", stderr(&clear));
    for output in [&test, &shown, &table, &clear] {
        let all = format!("{}{}", stdout(output), stderr(output));
        assert!(!all.contains(SECRET), "a secret was printed: {all}");
    }
    // The app's cache (another process's handle) sees the clear within its generation check.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let kept: Option<i32> = runtime.block_on(cache.get("kept")).unwrap();
    assert_eq!(kept, None);
}

#[test]
fn bad_dynamodb_settings_and_an_unreachable_endpoint_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ("CACHE_DRIVER", "dynamodb");
    let creds = [
        ("AWS_ACCESS_KEY_ID", "AKIDCLI"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_REGION", "us-east-1"),
    ];
    let bad = [driver, ("DYNAMODB_CACHE_TABLE", "a b")];
    assert_one_line_failure(
        &jtc(dir.path(), &["cache", "test"], &bad),
        "DYNAMODB_CACHE_TABLE",
    );
    let port = free_port().to_string();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut down = vec![
        driver,
        ("DYNAMODB_ENDPOINT", endpoint.as_str()),
        ("DYNAMODB_TIMEOUT_MS", "500"),
    ];
    down.extend(creds);
    let output = jtc(dir.path(), &["cache", "test"], &down);
    assert_one_line_failure(&output, "dynamodb");
    assert!(!stderr(&output).contains(SECRET));
}
