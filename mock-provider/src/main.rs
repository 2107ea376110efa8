//! `mock-provider [--host 127.0.0.1] [--port 9999] [--client-id ID] [--client-secret S]
//! [--rotation single_use|keep_old|never]`: the demo provider for `scripts/dev.sh`.

use mock_provider::{Config, MockProvider, Rotation};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let host = opt("--host", "127.0.0.1");
    let port = opt("--port", "9999");
    let Some(rotation) = Rotation::parse(&opt("--rotation", "single_use")) else {
        eprintln!("mock-provider: --rotation must be single_use, keep_old or never");
        std::process::exit(2);
    };
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mock = match MockProvider::start(
        &addr,
        &opt("--client-id", "demo-client"),
        &opt("--client-secret", "demo-secret"),
    ) {
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
    println!("mock-provider listening on {}", mock.base_url());
    loop {
        std::thread::park();
    }
}
