//! The environment variables the code reads are the ones `.env.example` and
//! docs/configuration.md document, and no others: a new variable cannot ship undocumented,
//! and a removed one cannot linger in the docs.

use std::{collections::BTreeSet, fs, path::Path};

/// The prefixes of the variables jtc and its example app read.
const PREFIXES: [&str; 7] = [
    "CACHE_",
    "REDIS_",
    "APP_",
    "DB_",
    "DATABASE_",
    "MEMCACHED_",
    "DYNAMODB_",
];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

/// Upper-case words with one of our prefixes, as they appear between `delimiter`s in `text`
/// (string literals in code, backticks in Markdown) or at the start of `NAME=` lines.
fn names(text: &str, delimiter: char) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let quoted = text.split(delimiter).skip(1).step_by(2);
    let assigned = text.lines().filter_map(|line| {
        let line = line.trim_start_matches(['#', ' ']);
        line.split_once('=').map(|(name, _)| name)
    });
    for word in quoted.chain(assigned) {
        let is_name = PREFIXES.iter().any(|p| word.starts_with(p))
            && word.len() > 4
            && word
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if is_name {
            found.insert(word.to_owned());
        }
    }
    found
}

/// Every variable named in the non-test Rust sources of the crates and the examples.
fn read_by_code() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut folders = vec![workspace().join("examples")];
    for krate in fs::read_dir(workspace().join("crates")).unwrap() {
        folders.push(krate.unwrap().path().join("src"));
    }
    while let Some(folder) = folders.pop() {
        for item in fs::read_dir(&folder).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    folders.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).unwrap();
                // Unit tests name variables too, made-up ones included: skip them.
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                found.extend(names(code, '"'));
            }
        }
    }
    found
}

#[test]
fn every_variable_the_code_reads_is_documented_and_nothing_else() {
    let code = read_by_code();
    assert!(
        code.contains("CACHE_DRIVER") && code.contains("REDIS_URL"),
        "{code:?}"
    );
    let example = names(
        &fs::read_to_string(workspace().join(".env.example")).unwrap(),
        '`',
    );
    let docs = names(
        &fs::read_to_string(workspace().join("docs/configuration.md")).unwrap(),
        '`',
    );
    for (file, listed) in [(".env.example", &example), ("docs/configuration.md", &docs)] {
        let missing: Vec<_> = code.difference(listed).collect();
        assert!(missing.is_empty(), "{file} does not document {missing:?}");
        let stale: Vec<_> = listed.difference(&code).collect();
        assert!(
            stale.is_empty(),
            "{file} documents {stale:?}, which nothing reads"
        );
    }
}
