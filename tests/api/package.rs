//! The Debian package, installed: built by `scripts/package-deb.sh`, which runs this test with
//! `KNOCKWARDEN_DEB` set (it needs the release build, so it is outside the default run).

use std::{path::Path, process::Command};

use crate::doctor::setup_with_config;

fn dpkg_deb(args: &[&str], deb: &str) -> String {
    let out = Command::new("dpkg-deb").args(args).arg(deb).output().expect("dpkg-deb runs");
    assert!(out.status.success(), "dpkg-deb {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Debian package: scripts/package-deb.sh builds it and runs this test"]
async fn installed_debian_package_runs_and_its_doctor_passes() {
    let deb = std::env::var("KNOCKWARDEN_DEB").expect("KNOCKWARDEN_DEB: the .deb to check");
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
