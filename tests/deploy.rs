//! The configuration shipped in deploy/ stays valid: the compose and Kubernetes
//! gateway.toml files pass `portcullis check` (with their container host names pointed at
//! loopback, since only the container network resolves them).

mod common;
use common::*;
use std::process::Command;

fn check(dir: &TempDir, text: &str) {
    let cfg = dir.write("gateway.toml", text);
    let out = Command::new(BIN)
        .args(["check", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        text
    );
}

#[test]
fn compose_gateway_toml_is_valid() {
    let dir = TempDir::new("deploy-compose");
    std::fs::create_dir_all(dir.path("secrets")).unwrap();
    dir.write("secrets/session.keys", &gen_key());
    dir.write(
        "users.toml",
        &std::fs::read_to_string("deploy/compose/users.toml").unwrap(),
    );
    let text = std::fs::read_to_string("deploy/compose/gateway.toml").unwrap();
    assert!(text.contains("store = \"redis\""));
    check(&dir, &text.replace("\"echo:3000\"", "\"127.0.0.1:3000\""));
}

#[test]
fn kubernetes_configmap_gateway_toml_is_valid() {
    let dir = TempDir::new("deploy-k8s");
    let yaml = std::fs::read_to_string("deploy/kubernetes/configmap.yaml").unwrap();
    // The block scalars under `data:` (indented four spaces).
    let block = |key: &str| -> String {
        let start = yaml.find(&format!("  {key}: |\n")).expect(key);
        yaml[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| l.strip_prefix("    ").unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    std::fs::create_dir_all(dir.path("secrets")).unwrap();
    dir.write("secrets/session.keys", &gen_key());
    dir.write("secrets/admin.token", "a-long-random-admin-token-0123\n");
    dir.write("secrets/redis.password", "redis-pw\n");
    let (crt, key) = write_cert(&dir);
    std::fs::rename(crt, dir.path("secrets/tls.crt")).unwrap();
    std::fs::rename(key, dir.path("secrets/tls.key")).unwrap();
    dir.write("users.toml", &block("users.toml"));
    let text = block("gateway.toml");
    assert!(text.contains("[redis]") && text.contains("[tls]"));
    check(
        &dir,
        &text.replace("app.default.svc.cluster.local:8000", "127.0.0.1:8000"),
    );
}
