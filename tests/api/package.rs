//! The Debian package, installed. `scripts/package-deb.sh` runs this test on the release
//! package it built (`KNOCKWARDEN_DEB`); the default run packages the binary the tests use,
//! with cargo-deb (installed once into `target/cargo-deb` when it is not on the PATH, as the
//! Synapse suite installs Synapse), from the same `[package.metadata.deb]`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::doctor::setup_with_config;

fn dpkg_deb(args: &[&str], deb: &str) -> String {
    let out = Command::new("dpkg-deb").args(args).arg(deb).output().expect("dpkg-deb runs");
    assert!(out.status.success(), "dpkg-deb {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The cargo-deb this suite uses: the one on the PATH, else 3.8.0 installed into `target/`
/// (once; a file lock lets one test install while others wait). Fails the test, never skips it.
fn cargo_deb() -> PathBuf {
    if let Ok(out) = Command::new("cargo-deb").arg("--version").output()
        && out.status.success()
    {
        return PathBuf::from("cargo-deb");
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("cargo-deb");
    let bin = root.join("bin/cargo-deb");
    if bin.exists() {
        return bin;
    }
    std::fs::create_dir_all(&root).unwrap();
    let lock = std::fs::File::create(root.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["install", "cargo-deb", "--version", "3.8.0", "--locked", "--root"])
            .arg(&root)
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "cannot install cargo-deb: {}", String::from_utf8_lossy(&out.stderr));
    }
    bin
}

/// The package to check: `KNOCKWARDEN_DEB`, or one made now from the test build's binary.
fn package(dir: &Path) -> String {
    if let Ok(deb) = std::env::var("KNOCKWARDEN_DEB") {
        return deb;
    }
    let out = Command::new(cargo_deb())
        .args(["--no-build", "--profile", "dev", "--fast", "--strip", "--quiet", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("-o")
        .arg(dir)
        .output()
        .expect("cargo-deb runs");
    assert!(out.status.success(), "cargo deb: {}", String::from_utf8_lossy(&out.stderr));
    let deb = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file(), "cargo deb made no package: {deb}");
    deb
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_debian_package_runs_and_its_doctor_passes() {
    let made = tempfile::tempdir().unwrap();
    let deb = package(made.path());
    assert_eq!(
        dpkg_deb(&["--field"], &deb).lines().find(|l| l.starts_with("Version:")).map(|l| l.trim()),
        Some(format!("Version: {}-1", env!("CARGO_PKG_VERSION")).as_str())
    );
    let conffiles = dpkg_deb(&["--info"], &deb);
    assert!(conffiles.contains("/etc/knockwarden/config.yaml"), "the config is a conffile:\n{conffiles}");

    // Installed into a scratch root.
    let root = tempfile::tempdir().unwrap();
    let out = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = root.path();
    for file in [
        "usr/bin/knockwarden",
        "etc/knockwarden/config.yaml",
        "etc/knockwarden/policies/my-room.yaml",
        "usr/share/doc/knockwarden/README.md",
        "usr/share/doc/knockwarden/policies/examples/support.yaml",
        "usr/share/bash-completion/completions/knockwarden",
        "usr/share/zsh/vendor-completions/_knockwarden",
        "usr/share/fish/vendor_completions.d/knockwarden.fish",
    ] {
        assert!(r.join(file).is_file(), "{file} is not in the package");
    }
    let unit = ["lib/systemd/system/knockwarden.service", "usr/lib/systemd/system/knockwarden.service"]
        .iter()
        .map(|u| r.join(u))
        .find(|p| p.is_file())
        .expect("the systemd unit is in the package");
    let unit = std::fs::read_to_string(unit).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/knockwarden serve -c /etc/knockwarden/config.yaml"), "{unit}");
    assert!(unit.contains("Restart=on-failure") && unit.contains("User=knockwarden"), "{unit}");
    assert!(
        ["usr/share/man/man1/knockwarden.1", "usr/share/man/man1/knockwarden.1.gz"].iter().any(|m| r.join(m).is_file()),
        "the manual page is in the package"
    );

    let binary = r.join("usr/bin/knockwarden");
    let version = Command::new(&binary).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("knockwarden {}", env!("CARGO_PKG_VERSION")));

    // Its doctor, on the installed config with this machine's homeserver, room and paths.
    let installed = std::fs::read_to_string(r.join("etc/knockwarden/config.yaml")).unwrap();
    assert!(installed.contains("database: \"/var/lib/knockwarden/db\""), "{installed}");
    let s = setup_with_config(|hs_url, port| {
        installed
            .replace("url: \"http://127.0.0.1:8008\"", &format!("url: \"{hs_url}\""))
            .replace("server_name: \"example.org\"", "server_name: \"test.local\"")
            .replace("listen: \"127.0.0.1:9993\"", &format!("listen: \"127.0.0.1:{port}\""))
            .replace("control_room: \"!ctrl:example.org\"", "control_room: \"#control:test.local\"")
            .replace("/var/lib/knockwarden/db", "db")
    })
    .await;
    let (ok, out) = crate::helpers::doctor_of(Path::new(&binary), &s.config, &[]).await;
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with('✓')).count(), 9, "{out}");
}
