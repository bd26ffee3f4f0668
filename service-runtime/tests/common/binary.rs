//! The real `faas-runtime serve` as a child process on a free loopback port, with the
//! test HS256 secret, its log in a temporary file; killed on drop.

use std::process::{Child, Command};
use std::time::Duration;

use super::{SECRET, unique};

pub struct Binary {
    pub child: Child,
    pub base: String,
    log: std::path::PathBuf,
}

impl Binary {
    /// Serves `services` with `env` (on top of the secret, the port, `RUST_LOG=info` and no
    /// tenant rate limit); `{port}` in a value is replaced by the port it serves on.
    pub fn start(services: &str, env: &[(&str, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::env::temp_dir().join(format!("{}.log", unique("runtime-")));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_faas-runtime"));
        cmd.args(["serve", "--service", services])
            .env_clear()
            .env("FAAS_JWT_HS256_SECRET", SECRET)
            .env("FAAS_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            // Thousands of requests from one tenant: the rate limit has its own test.
            .env("FAAS_TENANT_RATE_LIMIT", "0");
        for (name, value) in env {
            cmd.env(name, value.replace("{port}", &port.to_string()));
        }
        let child = cmd
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `/readyz`; fails the test with the log when the process exits first.
    pub async fn wait_ready(&mut self, client: &reqwest::Client) {
        for _ in 0..600 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            if self.child.try_wait().unwrap().is_some() {
                panic!("the runtime did not start:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the runtime did not become ready:\n{}", self.logs());
    }

    /// SIGKILL: no drain, no acknowledgement, nothing given back.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
