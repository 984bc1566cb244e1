//! The lab's processes: each service started from the binary next to `qkdn` (or on `PATH`), in
//! its own process group so a terminal's Ctrl-C reaches only `qkdn`, which then stops them in
//! order with SIGTERM (SIGKILL after a grace period), its output appended to its log file.
//! Each one's pid is recorded in `<data-dir>/lab.pids` as it starts, so that a lab started
//! after one that was killed (SIGKILL, a crash) first stops what that one left running.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running service.
pub(crate) struct LabProcess {
    /// Its name (`controller`, `agent-a`, ...).
    pub(crate) name: String,
    /// Its log file.
    pub(crate) log: PathBuf,
    /// `/readyz` on its management port.
    pub(crate) readyz: String,
    child: Child,
    exited: Option<String>,
}

/// The path of binary `name`: next to the running `qkdn`, else found on `PATH`.
pub(crate) fn binary(name: &str) -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join(name)));
    match beside {
        Some(p) if p.exists() => p,
        _ => PathBuf::from(name),
    }
}

/// The file of the pids of a lab's processes.
pub(crate) fn pids_file(dir: &Path) -> PathBuf {
    dir.join("lab.pids")
}

/// Stops the processes a lab in `dir` left running (it was killed before it could stop them):
/// those recorded in its pids file that still run with a configuration from `dir`. Returns
/// their names.
pub(crate) fn stop_leftovers(dir: &Path) -> Vec<String> {
    let file = pids_file(dir);
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let config_dir = dir.join("config").display().to_string();
    let mut left = Vec::new();
    for line in text.lines() {
        let Some((pid, name)) = line.split_once(' ') else { continue };
        let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) else {
            continue;
        };
        // Still ours (the pid was not reused by another program): its command names our config.
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.as_raw_nonzero()))
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default();
        if cmdline.contains(&config_dir) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            left.push((pid, name.to_owned()));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (pid, _) in &left {
        let alive = || std::path::Path::new(&format!("/proc/{}", pid.as_raw_nonzero())).exists();
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive() {
            let _ = rustix::process::kill_process(*pid, rustix::process::Signal::KILL);
        }
    }
    let _ = std::fs::remove_file(&file);
    left.into_iter().map(|(_, name)| name).collect()
}

impl LabProcess {
    /// Starts `program --config config`, its output appended to `log`, its pid recorded in
    /// `pids`.
    pub(crate) fn start(
        name: &str,
        program: &str,
        config: &Path,
        log: &Path,
        readyz: String,
        pids: &Path,
    ) -> Result<LabProcess, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let path = binary(program);
        let child = Command::new(&path)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                format!("{}: {e} (build it with `cargo build --release`)", path.display())
            })?;
        let recorded = OpenOptions::new().create(true).append(true).open(pids).and_then(|mut f| {
            use std::io::Write as _;
            writeln!(f, "{} {name}", child.id())
        });
        recorded.map_err(|e| format!("{}: {e}", pids.display()))?;
        Ok(LabProcess {
            name: name.to_owned(),
            log: log.to_path_buf(),
            readyz,
            child,
            exited: None,
        })
    }

    /// Why it ended, if it has (checked now).
    pub(crate) fn exited(&mut self) -> Option<String> {
        if self.exited.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exited = Some(status.to_string());
        }
        self.exited.clone()
    }

    /// The last lines of its log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&mut self) {
        if self.exited().is_none()
            && let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }

    /// Waits up to `grace` for it to end, then kills it; true when it ended by itself.
    pub(crate) fn wait_or_kill(&mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
