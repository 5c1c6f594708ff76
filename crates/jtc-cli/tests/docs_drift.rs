//! docs/architecture.md names every source, test and bench file of the workspace's crates: a
//! new file cannot land without its line, and a removed one cannot linger.

use std::{fs, path::Path};

fn crates() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Every `.rs` and `.lua` file under `crates/*/{src,tests,benches}`, as `crate/path`.
fn files() -> Vec<String> {
    let mut found = Vec::new();
    for krate in fs::read_dir(crates()).unwrap() {
        let krate = krate.unwrap().path();
        let mut folders: Vec<_> = ["src", "tests", "benches"]
            .iter()
            .map(|f| krate.join(f))
            .filter(|f| f.is_dir())
            .collect();
        while let Some(folder) = folders.pop() {
            for item in fs::read_dir(&folder).unwrap() {
                let path = item.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs" || e == "lua") {
                    let relative = path.strip_prefix(crates()).unwrap();
                    found.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn the_architecture_page_names_every_file_and_no_other() {
    let page = fs::read_to_string(crates().join("../docs/architecture.md")).unwrap();
    let files = files();
    assert!(files.len() > 100, "{files:?}");
    let missing: Vec<_> = files
        .iter()
        .filter(|file| !page.contains(&format!("`{file}`")))
        .collect();
    assert!(missing.is_empty(), "docs/architecture.md lacks {missing:?}");
    let named: Vec<&str> = page
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| {
            word.starts_with("jtc-") && (word.ends_with(".rs") || word.ends_with(".lua"))
        })
        .collect();
    let stale: Vec<_> = named
        .iter()
        .filter(|word| !files.iter().any(|file| file == *word))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/architecture.md names files that do not exist: {stale:?}"
    );
}
