//! A real Synapse: installed from PyPI into a venv cached under `target/`, configured for free
//! loopback ports, started as a child process.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use super::process::{Proc, free_port};

/// The pinned Synapse.
pub const SYNAPSE: &str = "matrix-synapse==1.163.2";

/// The shared secret for registering test users.
pub const SHARED_SECRET: &str = "knockwarden-test-shared-secret";

/// The venv, under `target/` (reused when present).
fn venv_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("synapse-venv")
}

/// Installs Synapse into the cached venv unless it is there; returns its python. Several
/// tests may ask at once: a file lock lets one install while the others wait. Fails the test
/// (never skips it) when Synapse cannot be installed.
pub fn python() -> PathBuf {
    let venv = venv_dir();
    let marker = venv.join(format!(".installed-{SYNAPSE}"));
    let python = venv.join("bin/python");
    if marker.exists() {
        return python;
    }
    std::fs::create_dir_all(venv.parent().unwrap()).unwrap();
    let lock = std::fs::File::create(venv.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    if marker.exists() {
        return python;
    }
    let host_python = std::env::var("KNOCKWARDEN_PYTHON").unwrap_or_else(|_| "python3".into());
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot install Synapse: {what}: {e}"));
        if !out.status.success() {
            panic!(
                "cannot install Synapse: {what} failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new(&host_python).args(["-m", "venv"]).arg(&venv), &format!("{host_python} -m venv"));
    run(
        Command::new(venv.join("bin/pip")).args(["install", "--quiet", "--only-binary=:all:", SYNAPSE]),
        &format!("pip install --only-binary=:all: {SYNAPSE}"),
    );
    std::fs::write(&marker, "").unwrap();
    python
}

/// TLS material for federation: a test CA and a certificate for `localhost` it signed.
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    /// Makes a CA and a `localhost` certificate with `openssl`.
    pub fn generate(dir: &Path) -> Tls {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        std::fs::write(
            dir.join("leaf.cnf"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=knockwarden test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tls.crt",
            "-days",
            "2",
            "-extfile",
            "leaf.cnf",
        ]);
        Tls { ca: dir.join("ca.pem"), cert: dir.join("tls.crt"), key: dir.join("tls.key") }
    }
}

/// One Synapse.
pub struct Synapse {
    pub dir: PathBuf,
    pub server_name: String,
    pub port: u16,
    pub proc: Option<Proc>,
    config: PathBuf,
}

impl Synapse {
    /// Writes the config (for a fresh port; with `tls`, a federation listener and the name
    /// `localhost:PORT`). `registration` is the appservice's file, read when Synapse starts.
    pub fn configure(dir: &Path, registration: Option<&Path>, tls: Option<&Tls>) -> Synapse {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let (server_name, federation) = match tls {
            Some(tls) => {
                let fed = free_port();
                let listener = format!(
                    r#"  - port: {fed}
    type: http
    tls: true
    bind_addresses: ['127.0.0.1']
    resources:
      - names: [federation]
tls_certificate_path: "{cert}"
tls_private_key_path: "{key}"
federation_custom_ca_list: ["{ca}"]
ip_range_whitelist: ['127.0.0.0/8']
federation:
  destination_min_retry_interval: 1s
"#,
                    cert = tls.cert.display(),
                    key = tls.key.display(),
                    ca = tls.ca.display()
                );
                (format!("localhost:{fed}"), listener)
            }
            None => ("test.knockwarden.local".to_owned(), String::new()),
        };
        let appservices =
            registration.map(|r| format!("app_service_config_files: [\"{}\"]", r.display())).unwrap_or_default();
        let many = "{per_second: 1000, burst_count: 1000}";
        let d = dir.display();
        let config = format!(
            r#"server_name: "{server_name}"
pid_file: "{d}/homeserver.pid"
public_baseurl: "http://127.0.0.1:{port}/"
listeners:
  - port: {port}
    type: http
    tls: false
    bind_addresses: ['127.0.0.1']
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
{federation}
database:
  name: sqlite3
  args:
    database: "{d}/homeserver.db"
media_store_path: "{d}/media"
signing_key_path: "{d}/signing.key"
report_stats: false
registration_shared_secret: "{SHARED_SECRET}"
macaroon_secret_key: "knockwarden-test-macaroon"
form_secret: "knockwarden-test-form"
trusted_key_servers: []
suppress_key_server_warning: true
bcrypt_rounds: 4
{appservices}
rc_message: {many}
rc_registration: {many}
rc_room_creation: {many}
rc_joins_per_room: {many}
rc_login:
  address: {many}
  account: {many}
  failed_attempts: {many}
rc_joins:
  local: {many}
  remote: {many}
rc_invites:
  per_room: {many}
  per_user: {many}
  per_issuer: {many}
"#
        );
        let path = dir.join("homeserver.yaml");
        std::fs::write(&path, config).unwrap();
        Synapse { dir: dir.to_owned(), server_name, port, proc: None, config: path }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts Synapse and waits until it answers; fails the test with its log if it cannot.
    pub async fn start(&mut self) {
        if !self.dir.join("signing.key").exists() {
            let out = Command::new(python())
                .args(["-m", "synapse.app.homeserver", "-c"])
                .arg(&self.config)
                .arg("--generate-keys")
                .output()
                .expect("synapse runs");
            assert!(out.status.success(), "synapse --generate-keys: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut cmd = Command::new(python());
        cmd.args(["-m", "synapse.app.homeserver", "-c"]).arg(&self.config).current_dir(&self.dir);
        let name = format!("synapse {}", self.server_name);
        let mut proc = Proc::spawn(&name, cmd, &self.dir.join("synapse.log"));
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(res) = client.get(format!("{}/_matrix/client/versions", self.url())).send().await
                && res.status().is_success()
            {
                break;
            }
            if let Some(status) = proc.exited() {
                super::process::print_tail(&name, &proc.log);
                panic!("Synapse exited while starting ({status}); its log is above");
            }
            if tokio::time::Instant::now() > deadline {
                panic!("Synapse did not answer within 60 s (log: {})", proc.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.proc = Some(proc);
    }

    /// Lists an appservice registration in `homeserver.yaml` (read at the next start).
    pub fn add_appservice(&self, registration: &Path) {
        let mut config = std::fs::read_to_string(&self.config).unwrap();
        config.push_str(&format!("app_service_config_files: [\"{}\"]\n", registration.display()));
        std::fs::write(&self.config, config).unwrap();
    }

    /// SIGTERM, and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }
}
