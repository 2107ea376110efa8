//! `mock-provider [--host 127.0.0.1] [--port 9999] [--client-id ID] [--client-secret S]
//! [--rotation single_use|keep_old|never]`: the demo provider for `scripts/dev.sh`.
//!
//! Prints one line, `mock-provider listening on http://127.0.0.1:<port>`, then serves
//! until killed. Refuses (exit 1) any host that is not a loopback address.

use std::io::Write;

use mock_provider::{Config, MockProvider, Rotation};

const USAGE: &str = "usage: mock-provider [--host 127.0.0.1] [--port 9999] [--client-id ID] \
                     [--client-secret S] [--rotation single_use|keep_old|never]";

fn usage_error(msg: &str) -> ! {
    eprintln!("mock-provider: {msg}\n{USAGE}");
    std::process::exit(2);
}

fn main() {
    let (mut host, mut port) = ("127.0.0.1".to_string(), "9999".to_string());
    let (mut client_id, mut client_secret) = ("demo-client".to_string(), "demo-secret".to_string());
    let mut rotation = Rotation::SingleUse;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            return;
        }
        let Some(value) = args.next() else {
            usage_error(&format!("{flag} needs a value"));
        };
        match flag.as_str() {
            "--host" => host = value,
            "--port" => port = value,
            "--client-id" => client_id = value,
            "--client-secret" => client_secret = value,
            "--rotation" => {
                rotation = Rotation::parse(&value).unwrap_or_else(|| {
                    usage_error("--rotation must be single_use, keep_old or never")
                })
            }
            _ => usage_error(&format!("unknown option {flag}")),
        }
    }
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mock = match MockProvider::start(&addr, &client_id, &client_secret) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("mock-provider: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    mock.set_config(Config {
        rotation,
        ..Config::default()
    });
    let mut out = std::io::stdout();
    let _ = writeln!(out, "mock-provider listening on {}", mock.base_url());
    let _ = out.flush();
    loop {
        std::thread::park();
    }
}
