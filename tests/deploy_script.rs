//! `scripts/deploy.sh` against a fake `wrangler`: a first run does every step in
//! order, a second run finds everything done and changes nothing.
//!
//! Each test copies what the script reads (wrangler.toml, scripts/, migrations/,
//! docs/providers/) into a temporary directory, so the repository's wrangler.toml is
//! never touched, and puts a fake `wrangler` (bash) first on PATH. The fake records
//! every call in `state/calls.log` (for `secret put`, only the length and SHA-256 of
//! the value it got) and keeps the account's state in files: the databases, the
//! secrets, whether the Worker exists, which databases are migrated. The toolchain
//! check runs for real (rustup, node, npm); `node_modules/` is an empty directory,
//! so no `npm ci` runs. `cargo test --test deploy_script -- --nocapture` prints the
//! transcripts.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

const PLACEHOLDER_ID: &str = "00000000-0000-0000-0000-000000000000";
/// The id the fake's `d1 create` answers.
const CREATED_ID: &str = "5f0c2a9e-7b1d-4e8a-9c3f-2d6b1a0e4c77";
const WORKERS_DEV: &str = "https://oauth-broker.example-sub.workers.dev";
const DROPBOX_ID: &str = "dropbox-app-key-123";
const DROPBOX_SECRET: &str = "dropbox-client-secret-never-printed";
const PROVIDER_BINDINGS: [&str; 8] = [
    "GOOGLEDRIVE",
    "GCS",
    "ONEDRIVEV2",
    "SHAREPOINT",
    "MSGROUP",
    "BOX_COM",
    "DROPBOX",
    "PCLOUD",
];

/// Answers like wrangler 4.86 where the script reads the answer; an unknown call
/// fails (and is recorded), so a new call cannot slip in unnoticed.
const FAKE_WRANGLER: &str = r#"#!/usr/bin/env bash
set -euo pipefail
state="${FAKE_WRANGLER_STATE:?}"
log="$state/calls.log"
created_id="5f0c2a9e-7b1d-4e8a-9c3f-2d6b1a0e4c77"
case "${1:-} ${2:-}" in
  "whoami "*)
    echo "$*" >>"$log"
    echo "Getting User settings..."
    if [ -e "$state/logged-out" ]; then
      echo 'You are not authenticated. Please run `wrangler login`.'
    else
      echo "👋 You are logged in with an OAuth Token, associated with the email operator@example.org."
    fi ;;
  "d1 list")
    echo "$*" >>"$log"
    cat "$state/d1.json" 2>/dev/null || echo "[]" ;;
  "d1 create")
    echo "$*" >>"$log"
    if [ -f "$state/d1.json" ]; then echo "✘ [ERROR] A database with that name already exists" >&2; exit 1; fi
    printf '[{"uuid":"%s","name":"%s","created_at":"2026-05-01T00:00:00.000Z","version":"production","num_tables":0,"file_size":0}]\n' \
      "$created_id" "$3" >"$state/d1.json"
    echo "✅ Successfully created DB '$3' in region WEUR"
    echo "Created your new D1 database."
    echo
    echo "To access your new D1 Database in your Worker, add the following snippet to your configuration file:"
    printf '[[d1_databases]]\nbinding = "oauth_broker"\ndatabase_name = "%s"\ndatabase_id = "%s"\n' "$3" "$created_id" ;;
  "d1 migrations")
    echo "$*" >>"$log"
    binding="$4" config=""
    while [ $# -gt 0 ]; do [ "$1" = -c ] && config="$2"; shift; done
    # Remote commands need the database's real id in the config.
    grep -q "database_id = \"$created_id\"" "$config" \
      || { echo "✘ [ERROR] Couldn't find a D1 DB with the name or binding '$binding'" >&2; exit 1; }
    if [ -e "$state/migrated-$binding" ]; then
      echo "✅ No migrations to apply!"
    else
      for f in migrations/*.sql; do echo "│ ${f#migrations/} │ ✅ │"; done
      touch "$state/migrated-$binding"
    fi ;;
  "secret list")
    echo "$*" >>"$log"
    if [ ! -e "$state/worker" ]; then
      printf '✘ [ERROR] Worker "oauth-broker" not found.\n\nIf this is a new Worker, run `wrangler deploy` first to create it.\n' >&2
      exit 1
    fi
    printf '['; sep=""
    while read -r name; do printf '%s\n  {"name": "%s", "type": "secret_text"}' "$sep" "$name"; sep=","; done \
      < <(cat "$state/secrets" 2>/dev/null || true)
    printf '\n]\n' ;;
  "secret put")
    value=$(cat; printf x); value="${value%x}"
    printf '%s <stdin: %s bytes, sha256 %s>\n' "$*" "$(printf '%s' "$value" | wc -c)" \
      "$(printf '%s' "$value" | sha256sum | cut -d' ' -f1)" >>"$log"
    grep -qx "$3" "$state/secrets" 2>/dev/null || echo "$3" >>"$state/secrets"
    touch "$state/worker"
    echo "🌀 Creating the secret for the Worker \"oauth-broker\""
    echo "✨ Success! Uploaded secret $3" ;;
  "deploy "*)
    echo "$*" >>"$log"
    touch "$state/worker"
    echo "Uploaded oauth-broker (1.02 sec)"
    echo "Deployed oauth-broker triggers (0.31 sec)"
    echo "  https://oauth-broker.example-sub.workers.dev"
    echo "  schedule: * * * * *"
    echo "Current Version ID: 0f1e2d3c-0000-4000-8000-000000000000" ;;
  *)
    echo "UNEXPECTED $*" >>"$log"
    echo "fake wrangler: unexpected call: $*" >&2
    exit 2 ;;
esac
"#;

/// Stands in for scripts/doctor.sh (the real one asks the deployed broker): records its argument.
const FAKE_DOCTOR: &str = r#"#!/usr/bin/env bash
echo "$*" >>"$FAKE_WRANGLER_STATE/doctor.log"
echo "doctor (fake): $1/admin/status looks fine"
"#;

struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let root = std::env::temp_dir().join(format!(
            "oauth-broker-deploy-{name}-{}-{nanos}",
            std::process::id()
        ));
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in [
            "scripts",
            "migrations",
            "docs/providers",
            "node_modules",
            "bin",
            "state",
        ] {
            std::fs::create_dir_all(root.join(dir)).expect("mkdir");
        }
        // Not the whole scripts/: the real scripts/doctor.sh would make network calls (a fake stands in).
        for file in [
            "wrangler.toml",
            "scripts/deploy.sh",
            "scripts/migrate.sh",
            "scripts/env.sh",
        ] {
            std::fs::copy(repo.join(file), root.join(file)).expect(file);
        }
        for dir in ["migrations", "docs/providers"] {
            for entry in std::fs::read_dir(repo.join(dir)).expect(dir) {
                let path = entry.expect("entry").path();
                std::fs::copy(&path, root.join(dir).join(path.file_name().expect("name")))
                    .expect("copy");
            }
        }
        let sandbox = Sandbox { root };
        sandbox.write_executable("bin/wrangler", FAKE_WRANGLER);
        sandbox.write_executable("scripts/doctor.sh", FAKE_DOCTOR);
        sandbox
    }

    fn write_executable(&self, path: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.root.join(path);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// Runs the script non-interactively; returns (success, stdout and stderr as one
    /// transcript).
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
        let path = format!(
            "{}:{}",
            self.root.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(r#""$@" 2>&1"#)
            .arg("bash")
            .arg("bash")
            .arg(self.root.join("scripts/deploy.sh"))
            .args(args)
            .env("PATH", path)
            .env("FAKE_WRANGLER_STATE", self.root.join("state"))
            .env_remove("WRANGLER")
            .env_remove("CLOUDFLARE_API_TOKEN")
            .stdin(Stdio::null());
        for b in PROVIDER_BINDINGS {
            cmd.env_remove(format!("CLIENT_ID_{b}"))
                .env_remove(format!("CLIENT_SECRET_{b}"));
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("run bash");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The fake's call log, each call without its `-c <config>` and the recorded
    /// stdin digest: `d1 migrations apply DB --remote`, `secret put SEALING_SECRET`.
    fn calls(&self) -> Vec<String> {
        self.raw_calls()
            .iter()
            .map(|line| {
                let line = line.split(" <stdin:").next().unwrap_or("");
                line.split(" -c ").next().unwrap_or("").to_string()
            })
            .collect()
    }

    fn raw_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("state/calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn toml(&self) -> String {
        std::fs::read_to_string(self.root.join("wrangler.toml")).expect("wrangler.toml")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn sha256_hex(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn print_transcript(title: &str, transcript: &str) {
    println!("===== {title} =====\n{transcript}===== end of {title} =====\n");
}

fn assert_has(transcript: &str, needle: &str) {
    assert!(
        transcript.contains(needle),
        "the transcript lacks {needle:?}:\n{transcript}"
    );
}

/// The [vars] table's lines, up to the next table.
fn vars_table(toml: &str) -> Vec<&str> {
    toml.lines()
        .skip_while(|l| l.trim() != "[vars]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .collect()
}

#[test]
fn first_run_does_every_step_once_and_a_second_run_changes_nothing() {
    let sb = Sandbox::new("twice");
    let original = sb.toml();
    assert!(
        original.contains(PLACEHOLDER_ID),
        "the checked-in wrangler.toml has the placeholder"
    );

    // First run: a fresh account, one provider in the environment.
    let (ok, first) = sb.run(
        &["--yes"],
        &[
            ("CLIENT_ID_DROPBOX", DROPBOX_ID),
            ("CLIENT_SECRET_DROPBOX", DROPBOX_SECRET),
        ],
    );
    print_transcript("first run", &first);
    assert!(ok, "the first run failed");
    assert_eq!(
        sb.calls(),
        [
            "whoami",
            "d1 list --json",
            "d1 create oauth-broker",
            "d1 migrations apply DB --remote",
            "secret list",
            "secret put SEALING_SECRET",
            "secret put CLIENT_SECRET_DROPBOX",
            "deploy",
        ],
        "the first run's wrangler calls, in order"
    );
    let raw = sb.raw_calls();
    // "1:" and 48 random bytes in base64.
    assert!(raw[5].contains("<stdin: 66 bytes, sha256 "), "{}", raw[5]);
    assert!(
        raw[6].ends_with(&format!("sha256 {}>", sha256_hex(DROPBOX_SECRET))),
        "the client secret went to `secret put` as given: {}",
        raw[6]
    );

    let after_first = sb.toml();
    let id_line = format!("CLIENT_ID_DROPBOX = \"{DROPBOX_ID}\"");
    assert!(
        vars_table(&after_first).contains(&id_line.as_str()),
        "CLIENT_ID_DROPBOX is in [vars]:\n{after_first}"
    );
    assert_eq!(
        after_first.replace(&format!("{id_line}\n"), ""),
        original.replace(PLACEHOLDER_ID, CREATED_ID),
        "wrangler.toml changed in exactly two places: the database id and CLIENT_ID_DROPBOX"
    );

    assert_has(
        &first,
        "[1/8 toolchain] already done: rustup + wasm32-unknown-unknown",
    );
    assert_has(
        &first,
        "[2/8 login] already done: logged in with an OAuth Token",
    );
    assert_has(
        &first,
        &format!("[3/8 database] done: created oauth-broker ({CREATED_ID})"),
    );
    assert_has(
        &first,
        "[4/8 migrations] done: bash scripts/migrate.sh --remote",
    );
    assert_has(
        &first,
        "migrate: DB (oauth-broker) remote: applied 0001_initial.sql",
    );
    assert_has(&first, "STORE A COPY OFFLINE NOW");
    assert_has(
        &first,
        "[5/8 SEALING_SECRET] done: generated SEALING_SECRET and put it",
    );
    assert_has(&first, "[6/8 providers] done: dropbox: CLIENT_ID_DROPBOX written to wrangler.toml [vars]; CLIENT_SECRET_DROPBOX put");
    assert_has(
        &first,
        "[6/8 providers] skipped: googledrive gcs onedrivev2 sharepoint msgroup box.com pcloud",
    );
    assert_has(
        &first,
        &format!("[7/8 deploy] done: deployed to {WORKERS_DEV}"),
    );
    assert_has(
        &first,
        &format!("[8/8 check] bash scripts/doctor.sh {WORKERS_DEV}"),
    );
    assert_has(
        &first,
        &format!("doctor (fake): {WORKERS_DEV}/admin/status looks fine"),
    );
    assert_has(
        &first,
        &format!("dropbox: register the redirect URI {WORKERS_DEV}/callback/dropbox"),
    );
    assert!(
        !first.contains(DROPBOX_SECRET),
        "the client secret was printed"
    );

    // Second run: everything is in place.
    let (ok, second) = sb.run(&["--yes"], &[]);
    print_transcript("second run", &second);
    assert!(ok, "the second run failed");
    assert_eq!(
        sb.calls()[8..],
        [
            "whoami",
            "d1 list --json",
            "d1 migrations apply DB --remote",
            "secret list",
            "deploy",
        ],
        "the second run creates nothing and puts no secret"
    );
    assert_eq!(
        sb.toml(),
        after_first,
        "the second run left wrangler.toml as it was"
    );
    assert_has(
        &second,
        &format!("[3/8 database] already done: oauth-broker ({CREATED_ID})"),
    );
    assert_has(
        &second,
        "[4/8 migrations] already done: every database up to date",
    );
    assert_has(
        &second,
        "[5/8 SEALING_SECRET] already done: SEALING_SECRET is set",
    );
    assert_has(&second, "[6/8 providers] already done: dropbox (CLIENT_ID_DROPBOX in wrangler.toml, CLIENT_SECRET_DROPBOX set)");
    assert_has(
        &second,
        "[7/8 deploy] deploying again (nothing above changed; --no-deploy skips this)",
    );
    assert_has(
        &second,
        &format!("[8/8 check] bash scripts/doctor.sh {WORKERS_DEV}"),
    );
    assert!(
        !second.contains("STORE A COPY OFFLINE"),
        "the sealing secret is shown only when it is made"
    );
    assert!(!second.contains(DROPBOX_SECRET));
    assert_eq!(
        std::fs::read_to_string(sb.root.join("state/doctor.log")).expect("the doctor ran"),
        format!("{WORKERS_DEV}\n{WORKERS_DEV}\n"),
        "the doctor checked the deployed URL after each run"
    );
}

#[test]
fn not_logged_in_stops_before_anything_is_created() {
    let sb = Sandbox::new("logged-out");
    std::fs::write(sb.root.join("state/logged-out"), "").expect("state");
    let original = sb.toml();
    let (ok, out) = sb.run(&["--yes"], &[]);
    print_transcript("not logged in", &out);
    assert!(!ok, "the script went on without a login");
    assert_eq!(sb.calls(), ["whoami"]);
    assert_has(
        &out,
        "[2/8 login] TO DO: not logged in to Cloudflare: run `npx wrangler login`",
    );
    assert_eq!(sb.toml(), original);
}

#[test]
fn a_database_id_already_set_is_never_changed() {
    let sb = Sandbox::new("id-set");
    // The account's oauth-broker has another id than the one wrangler.toml names.
    std::fs::write(
        sb.root.join("state/d1.json"),
        format!(r#"[{{"uuid":"{CREATED_ID}","name":"oauth-broker"}}]"#),
    )
    .expect("state");
    let other = "11111111-2222-4333-8444-555555555555";
    let toml = sb.toml().replace(PLACEHOLDER_ID, other);
    std::fs::write(sb.root.join("wrangler.toml"), &toml).expect("toml");
    let (ok, out) = sb.run(&["--yes", "--no-deploy"], &[]);
    print_transcript("database id already set", &out);
    assert!(!ok);
    assert_eq!(sb.calls(), ["whoami", "d1 list --json"]);
    assert_has(&out, &format!("[3/8 database] TO DO: wrangler.toml's DB database_id is {other}, but this account's oauth-broker is {CREATED_ID}"));
    assert_eq!(sb.toml(), toml);
}

#[test]
fn a_database_made_by_hand_is_found_and_its_id_written() {
    let sb = Sandbox::new("by-hand");
    std::fs::write(
        sb.root.join("state/d1.json"),
        format!(r#"[{{"uuid":"{CREATED_ID}","name":"oauth-broker"}}]"#),
    )
    .expect("state");
    let original = sb.toml();
    let (ok, out) = sb.run(&["--yes", "--no-deploy"], &[]);
    print_transcript("database made by hand", &out);
    assert!(ok);
    assert_eq!(
        sb.calls(),
        [
            "whoami",
            "d1 list --json",
            "d1 migrations apply DB --remote",
            "secret list",
            "secret put SEALING_SECRET",
        ]
    );
    assert_has(
        &out,
        &format!("[3/8 database] done: found oauth-broker ({CREATED_ID}) in the account"),
    );
    assert_has(&out, "[7/8 deploy] skipped (--no-deploy)");
    assert_eq!(sb.toml(), original.replace(PLACEHOLDER_ID, CREATED_ID));
}
