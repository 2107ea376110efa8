//! The documentation keeps its shape: a README short enough to be an index,
//! facts written as facts (never a pointer into a tracker that is not in the
//! repository), and links that lead to pages that exist.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

const README_MAX_LINES: usize = 150;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (recursively), sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The 1-based lines of `text` that cite a tracker item: "issue", whitespace,
/// a digit (any case).
fn tracker_citations(text: &str) -> Vec<usize> {
    let lower = text.to_ascii_lowercase();
    let mut lines = Vec::new();
    for (at, _) in lower.match_indices("issue") {
        let rest = &lower[at + "issue".len()..];
        let digits = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if digits.len() < rest.len() && digits.starts_with(|c: char| c.is_ascii_digit()) {
            lines.push(lower[..at].matches('\n').count() + 1);
        }
    }
    lines
}

/// The targets of the inline Markdown links `[text](target)` outside fenced
/// code blocks, with their 1-based line.
fn markdown_links(text: &str) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(open) = rest.find("](") {
            let after = &rest[open + 2..];
            let Some(close) = after.find(')') else { break };
            links.push((n + 1, after[..close].trim().to_string()));
            rest = &after[close + 1..];
        }
    }
    links
}

/// Whether a link target leaves the repository (or stays on the same page).
fn is_external_or_anchor(target: &str) -> bool {
    target.is_empty()
        || target.starts_with('#')
        || target.contains("://")
        || target.starts_with("mailto:")
}

/// The anchors GitHub gives the headings of a Markdown page (outside fenced
/// code blocks): lower case, only letters, digits, `-`, `_` and spaces kept,
/// spaces as `-`; a repeated heading gets `-1`, `-2`, ….
fn heading_anchors(text: &str) -> Vec<String> {
    let mut anchors = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let title = line.trim_start_matches('#');
        if fenced || title.len() == line.len() || !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        anchors.push(if *n == 0 { slug } else { format!("{slug}-{n}") });
        *n += 1;
    }
    anchors
}

fn markdown_pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    pages.extend(
        files_under(&root().join("docs"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    pages
}

#[test]
fn no_file_in_src_docs_or_the_readme_cites_a_tracker_issue_instead_of_the_fact() {
    let mut files = files_under(&root().join("src"));
    files.extend(files_under(&root().join("docs")));
    files.push(root().join("README.md"));
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue; // not text
        };
        for line in tracker_citations(&text) {
            let shown = file.strip_prefix(root()).unwrap_or(&file).display();
            found.push(format!("{shown}:{line}"));
        }
    }
    assert!(
        found.is_empty(),
        "write the fact the tracker item stands for, not \"issue N\": {found:#?}"
    );
}

#[test]
fn the_readme_is_an_index_of_at_most_150_lines() {
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines (at most {README_MAX_LINES}): move the detail to its page under docs/"
    );
}

#[test]
fn the_readme_leads_each_reader_to_their_page_in_one_click() {
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    let targets: Vec<String> = markdown_links(&readme)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    for page in [
        "docs/operate.md",
        "docs/reference.md",
        "docs/architecture.md",
        "docs/clients/duplicati.md",
        "docs/clients/rclone.md",
        "docs/clients/akeeba.md",
        "docs/clients/oauth2.md",
        "docs/clients/device.md",
    ] {
        assert!(
            targets.iter().any(|t| t.split('#').next() == Some(page)),
            "README.md links nowhere to {page}"
        );
    }
}

#[test]
fn every_relative_link_in_the_readme_and_docs_points_to_an_existing_file_and_heading() {
    let mut broken = Vec::new();
    for page in markdown_pages() {
        let text = fs::read_to_string(&page).expect("markdown page");
        let dir = page.parent().expect("a page lives in a directory");
        for (line, target) in markdown_links(&text) {
            if is_external_or_anchor(&target) && !target.starts_with('#') {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.clone()
            } else {
                dir.join(path)
            };
            let shown = page.strip_prefix(root()).unwrap_or(&page).display();
            if !file.exists() {
                broken.push(format!("{shown}:{line}: {target} (no such file)"));
                continue;
            }
            let is_markdown = file.extension().is_some_and(|e| e == "md");
            if let (Some(anchor), true) = (anchor, is_markdown) {
                let linked = fs::read_to_string(&file).expect("linked page");
                if !heading_anchors(&linked).iter().any(|a| a == anchor) {
                    broken.push(format!("{shown}:{line}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn the_checks_themselves_see_what_they_look_for() {
    assert_eq!(
        tracker_citations("a\nsee Issue 15.\nissues 3\nissue\n 7"),
        vec![2, 4]
    );
    assert!(tracker_citations("tissue samples, issue-free, issue #").is_empty());
    assert_eq!(
        markdown_links("[a](x.md) and [b](y.md#z)\n```\n[c](no.md)\n```\n[d](#e)"),
        vec![
            (1, "x.md".to_string()),
            (1, "y.md#z".to_string()),
            (5, "#e".to_string())
        ]
    );
    assert_eq!(
        heading_anchors("# A page\n## Moving from Duplicati's own service\n```\n# not one\n```\n### `x.rs`: B — c\n## Moving from Duplicati's own service"),
        vec![
            "a-page",
            "moving-from-duplicatis-own-service",
            "xrs-b--c",
            "moving-from-duplicatis-own-service-1"
        ]
    );
    assert!(is_external_or_anchor("https://example.org/a"));
    assert!(!is_external_or_anchor("docs/operate.md"));
}

/// The files named in backquotes (`` `name.rs` ``) in the table rows of the
/// e2e suite's module doc (`tests/e2e/main.rs`), its index from feature to file.
fn e2e_index(main_rs: &str) -> Vec<String> {
    main_rs
        .lines()
        .filter_map(|l| l.strip_prefix("//! |"))
        .flat_map(|row| row.split('`').skip(1).step_by(2).map(str::to_string))
        .filter(|name| name.ends_with(".rs"))
        .collect()
}

#[test]
fn the_e2e_index_names_every_test_file_and_only_files_that_exist() {
    let dir = root().join("tests/e2e");
    let main_rs = fs::read_to_string(dir.join("main.rs")).expect("tests/e2e/main.rs");
    let index = e2e_index(&main_rs);
    let missing: Vec<&String> = index.iter().filter(|f| !dir.join(f).is_file()).collect();
    assert!(
        missing.is_empty(),
        "the e2e index names files that do not exist: {missing:?}"
    );
    let unindexed: Vec<String> = fs::read_dir(&dir)
        .expect("tests/e2e")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".rs") && f != "main.rs" && f != "harness.rs")
        .filter(|f| !index.contains(f))
        .collect();
    assert!(
        unindexed.is_empty(),
        "add a row for each to the index in tests/e2e/main.rs's module doc: {unindexed:?}"
    );
}
