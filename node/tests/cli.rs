//! The `hubwire-node` command line: `token`, `probe`, `--help`, and configuration errors.

use std::process::Command;

use hubwire_node::core::auth::Authenticator;
use hubwire_node::core::config::Config;

fn node() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hubwire-node"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("HUBWIRE_")) {
        command.env_remove(key);
    }
    command
}

#[test]
fn token_prints_a_token_the_node_accepts_with_the_claims_asked_for() {
    let output = node()
        .env("HUBWIRE_JWT_SECRET", "cli-test-secret-of-at-least-32-bytes")
        .args(["token", "--user", "alice", "--name", "Alice", "--tenant", "t1"])
        .args(["--role", "admin", "--channel", "task-*"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let config = Config {
        jwt_secret: Some("cli-test-secret-of-at-least-32-bytes".into()),
        ..Config::default()
    };
    let principal = Authenticator::from_config(&config)
        .expect("authenticator")
        .verify(token.trim())
        .expect("the node accepts the token");
    assert_eq!(principal.user.as_str(), "alice");
    assert_eq!(principal.name.as_deref(), Some("Alice"));
    assert_eq!(principal.tenant.as_deref(), Some("t1"));
    assert_eq!(principal.roles, ["admin"]);
    assert_eq!(principal.channels, ["task-*"]);
}

#[test]
fn without_a_secret_token_and_node_share_the_generated_development_secret() {
    let dir = std::env::temp_dir().join(format!("hubwire-cli-{}", std::process::id()));
    let output = node()
        .env("HUBWIRE_DATA_DIR", &dir)
        .args(["token", "--user", "bob"])
        .output()
        .expect("runs");
    assert!(output.status.success());
    let secret = std::fs::read_to_string(dir.join("dev-jwt-secret")).expect("secret written");
    let config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let principal = Authenticator::from_config(&config)
        .expect("auth")
        .verify(&token)
        .expect("valid");
    assert_eq!(principal.user.as_str(), "bob");
    assert!(!secret.trim().is_empty());
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[test]
fn help_names_the_subcommands_and_bad_configuration_is_a_clear_error() {
    let help = node().arg("--help").output().expect("runs");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("token") && text.contains("--config"), "{text}");

    let file = std::env::temp_dir().join(format!("hubwire-cli-{}.toml", std::process::id()));
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nno_such_key = 1\n").expect("write");
    let bad = node().arg("--config").arg(&file).output().expect("runs");
    assert!(!bad.status.success());
    let error = String::from_utf8_lossy(&bad.stderr);
    assert!(error.contains("no_such_key"), "{error}");

    let env = node().env("HUBWIRE_KEEP_ALIVE_SECS", "soon").output().expect("runs");
    assert!(!env.status.success());
    assert!(String::from_utf8_lossy(&env.stderr).contains("HUBWIRE_KEEP_ALIVE_SECS"));
    std::fs::remove_file(file).expect("cleanup");
}

#[test]
fn secrets_and_access_keys_shorter_than_32_bytes_are_refused_at_start_up() {
    for (variable, field) in [
        ("HUBWIRE_JWT_SECRET", "jwt_secret"),
        ("HUBWIRE_ACCESS_KEY", "access_key"),
    ] {
        let output = node()
            .env("HUBWIRE_LISTEN", "127.0.0.1:0")
            .env(variable, "only-31-bytes-long-secret-value")
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{variable}: the node must not start");
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(error.contains(field) && error.contains(variable), "{error}");
        assert!(
            error.contains("31 bytes is too short") && error.contains("at least 32"),
            "{error}"
        );
        assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
    }
}

#[test]
fn a_wrong_hub_definition_stops_the_node_naming_the_hub_and_the_field() {
    let dir = std::env::temp_dir().join(format!("hubwire-cli-hub-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cases = [
        (
            "methods = [{ name = \"Send\", operation = \"shout\", args = [] }]",
            "methods[0].operation",
            "unknown operation 'shout'",
        ),
        (
            "methods = [{ name = \"Join\", operation = \"join_conversation\", args = [\"conversationId\", \"room\"] }]",
            "methods[0].args[1]",
            "no parameter 'room'",
        ),
        (
            "methods = [{ name = \"Ping\", operation = \"ping\" }, { name = \"PING\", operation = \"ping\" }]",
            "methods[1].name",
            "two methods named 'PING'",
        ),
    ];
    for (i, (methods, field, reason)) in cases.iter().enumerate() {
        let file = dir.join(format!("hub-{i}.toml"));
        let text =
            format!("listen = \"127.0.0.1:0\"\n[[hub]]\nkind = \"chat\"\npath = \"/hubs/messaging\"\n{methods}\n");
        std::fs::write(&file, text).expect("write");
        let output = node()
            .env("HUBWIRE_JWT_SECRET", "cli-test-secret-of-at-least-32-bytes")
            .env("HUBWIRE_DATA_DIR", &dir)
            .arg("--config")
            .arg(&file)
            .output()
            .expect("runs");
        assert!(!output.status.success(), "case {i}: the node must not start");
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(
            error.contains("hub definition /hubs/messaging") && error.contains(field) && error.contains(reason),
            "case {i}: {error}"
        );
        assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
    }
    std::fs::remove_dir_all(dir).expect("cleanup");
}

/// Every preset of `examples/` (the directories holding a `hubwire.toml`).
fn presets() -> Vec<std::path::PathBuf> {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .expect("examples/")
        .map(|entry| entry.expect("entry").path().join("hubwire.toml"))
        .filter(|file| file.exists())
        .collect();
    files.sort();
    files
}

#[test]
fn every_preset_starts_a_node_with_hubwire_node_dash_dash_config() {
    use std::io::{BufRead, BufReader};
    let presets = presets();
    assert_eq!(
        presets.len(),
        5,
        "ai-gateway, pet-services, social-chat, delivery-messaging, shopping-list: {presets:?}"
    );
    for file in presets {
        let dir = std::env::temp_dir().join(format!(
            "hubwire-cli-preset-{}-{}",
            std::process::id(),
            file.parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or("x")
        ));
        let mut child = node()
            .env("HUBWIRE_JWT_SECRET", "cli-test-secret-of-at-least-32-bytes")
            .env("HUBWIRE_LISTEN", "127.0.0.1:0")
            .env("HUBWIRE_DATA_DIR", &dir)
            .arg("--config")
            .arg(&file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("starts");
        let stdout = child.stdout.take().expect("stdout");
        let first = BufReader::new(stdout).lines().next().map(|l| l.expect("line"));
        child.kill().expect("kill");
        child.wait().expect("wait");
        let _ = std::fs::remove_dir_all(&dir);
        let line = first.unwrap_or_default();
        assert!(
            line.starts_with("hubwire-node listening on http://127.0.0.1:"),
            "{}: {line:?}",
            file.display()
        );
    }
}

#[test]
fn probe_exits_0_for_a_ready_node_and_1_for_none_or_a_missing_path() {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!("hubwire-cli-probe-{}", std::process::id()));
    let mut child = node()
        .env("HUBWIRE_JWT_SECRET", "cli-test-secret-of-at-least-32-bytes")
        .env("HUBWIRE_LISTEN", "127.0.0.1:0")
        .env("HUBWIRE_DATA_DIR", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .map(|l| l.expect("line"))
        .unwrap_or_default();
    let address = line.trim_start_matches("hubwire-node listening on http://").to_owned();
    let probe = |listen: &str, path: &str| {
        node()
            .env("HUBWIRE_LISTEN", listen)
            .env("HUBWIRE_DATA_DIR", &dir)
            .args(["probe", path])
            .output()
            .expect("runs")
    };
    let ready = probe(&address, "/readyz");
    let alive = probe(&address.replace("127.0.0.1", "0.0.0.0"), "/healthz");
    let missing = probe(&address, "/nothing-here");
    child.kill().expect("kill");
    child.wait().expect("wait");
    let gone = probe(&address, "/healthz");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stderr));
    assert!(
        alive.status.success(),
        "0.0.0.0 is probed on 127.0.0.1: {}",
        String::from_utf8_lossy(&alive.stderr)
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("answered 404"));
    assert_eq!(gone.status.code(), Some(1), "nothing listens any more");
}
