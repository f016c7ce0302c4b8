//! Child processes started by the suite: killed when the test ends (or dies), and logs whose
//! tails are printed when a test fails.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A process this test started; it is stopped when dropped, and the kernel kills it if the
/// test process dies first.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        cmd.stdout(out.try_clone().unwrap()).stderr(out).stdin(Stdio::null());
        // SAFETY: prctl is async-signal-safe; it only asks for SIGKILL when the parent dies.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name: name.to_owned(), child: Some(child), log: log.to_owned() }
    }

    /// Whether it has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: sending a signal to our own child.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// SIGKILL, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal(libc::SIGTERM);
        for _ in 0..400 {
            if self.exited().is_some() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_tail(&self.name, &self.log);
        }
        self.stop();
    }
}

/// Prints the last lines of a log (on failure).
pub fn print_tail(name: &str, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(60)..];
    eprintln!("----- last {} lines of {name} ({}) -----", tail.len(), log.display());
    for l in tail {
        eprintln!("{l}");
    }
    eprintln!("----- end of {name} -----");
}

/// A free loopback port (bound and released; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
