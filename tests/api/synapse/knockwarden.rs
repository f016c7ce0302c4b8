//! The real `knockwarden` binary, configured for a test Synapse.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use super::process::{Proc, free_port};

pub struct Knockwarden {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    pub proc: Option<Proc>,
    pub as_token: String,
    pub bot: String,
}

impl Knockwarden {
    /// Writes the config and, with `knockwarden generate-registration`, the registration (which
    /// Synapse must read at its start). `policies` are (file name, YAML) pairs.
    pub fn configure(
        dir: &Path,
        server_name: &str,
        synapse_port: u16,
        control_room: &str,
        policies: &[(&str, String)],
        extra: &str,
    ) -> Knockwarden {
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        for (name, text) in policies {
            std::fs::write(dir.join("policies").join(name), text).unwrap();
        }
        let port = free_port();
        let config = format!(
            r#"homeserver:
  url: "http://127.0.0.1:{synapse_port}"
  server_name: "{server_name}"
appservice:
  listen: "127.0.0.1:{port}"
  registration: "registration.yaml"
database: "db"
policies: "policies"
control_room: "{control_room}"
moderators:
  power_level: 50
notify: all
log_format: pretty
{extra}"#
        );
        let path = dir.join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_knockwarden"))
            .args(["generate-registration", "-c"])
            .arg(&path)
            .env_remove("KNOCKWARDEN_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "generate-registration: {}", String::from_utf8_lossy(&out.stderr));
        let reg: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(dir.join("registration.yaml")).unwrap()).unwrap();
        Knockwarden {
            dir: dir.to_owned(),
            config: path,
            port,
            proc: None,
            as_token: reg["as_token"].as_str().unwrap().to_owned(),
            bot: format!("@knockwarden:{server_name}"),
        }
    }

    /// A knockwarden whose config (listening on `port`) and registration were written by the
    /// test itself, as an admin would, in `dir`.
    pub fn written(dir: &Path, config: &Path, registration: &Path, port: u16, server_name: &str) -> Knockwarden {
        let reg: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(registration).unwrap()).unwrap();
        Knockwarden {
            dir: dir.to_owned(),
            config: config.to_owned(),
            port,
            proc: None,
            as_token: reg["as_token"].as_str().unwrap().to_owned(),
            bot: format!("@knockwarden:{server_name}"),
        }
    }

    /// `knockwarden serve -c CONFIG` as this test's process would run it.
    pub fn serve_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_knockwarden"));
        cmd.args(["serve", "-c"]).arg(&self.config);
        cmd
    }

    /// Starts the binary and waits for `/health`.
    pub async fn start(&mut self) {
        let cmd = self.serve_command();
        self.start_command(cmd).await;
    }

    /// Starts `cmd` (a `knockwarden serve`) and waits for `/health`.
    pub async fn start_command(&mut self, mut cmd: Command) {
        cmd.env_remove("KNOCKWARDEN_CONFIG").env("RUST_LOG", "info,knockwarden=debug");
        let mut proc = Proc::spawn("knockwarden", cmd, &self.dir.join("knockwarden.log"));
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(res) = client.get(format!("http://127.0.0.1:{}/health", self.port)).send().await
                && res.status() == 200
            {
                self.proc = Some(proc);
                return;
            }
            if let Some(status) = proc.exited() {
                super::process::print_tail("knockwarden", &proc.log);
                panic!("knockwarden exited while starting ({status})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("knockwarden did not become healthy in 30 s");
    }

    /// SIGKILL: a crash.
    pub fn crash(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }
}
