//! `schema.sql` is the full schema; `migrations/` must build exactly the same.

fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    without_comments
        .split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn migrations_build_the_same_schema_as_schema_sql() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = std::fs::read_to_string(root.join("schema.sql")).expect("schema.sql");
    let mut files: Vec<_> = std::fs::read_dir(root.join("migrations"))
        .expect("migrations/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let migrated: Vec<String> = files
        .iter()
        .flat_map(|f| statements(&std::fs::read_to_string(f).expect("migration")))
        .collect();
    assert_eq!(statements(&schema), migrated);
}
