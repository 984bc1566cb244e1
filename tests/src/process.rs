//! Service processes: where the binaries are, starting one with its log in a file, waiting for
//! it to be ready, and killing it (politely with SIGTERM or with SIGKILL, as a crash would).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A port free right now on loopback, below Linux's ephemeral range (32768 and up), so that
/// no outgoing connection takes it before the service binds it; each call of this process
/// gets a different one.
pub fn free_port() -> u16 {
    free_port_block(1)
}

/// The first of `n` consecutive ports free right now on loopback (as [`free_port`]); the block
/// is taken from this process's counter at once, so no other call gets a port inside it.
pub fn free_port_block(n: u32) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = 12_000 + (std::process::id() % 500) * 36;
    loop {
        let first = start + NEXT.fetch_add(n, Ordering::Relaxed) % 20_000;
        if (first..first + n).all(|p| TcpListener::bind(("127.0.0.1", p as u16)).is_ok()) {
            return first as u16;
        }
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A binary of the workspace, built by the same `cargo test` run (next to the test
/// executable's `deps/` folder; examples in `examples/`). `cargo test --workspace` builds a
/// package's binaries for its own integration tests: each service crate keeps one
/// (`tests/binary.rs`) so that its binary is there for these tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    let candidates = [profile.join(name), profile.join("examples").join(name)];
    for c in &candidates {
        if c.exists() {
            return c.clone();
        }
    }
    panic!(
        "{name} is not built (looked at {candidates:?}); run the tests with `cargo test --workspace`, \
         which builds every service binary first"
    );
}

/// A running service; killed when dropped.
pub struct Process {
    /// The child.
    pub child: Child,
    /// Its log file (stderr, appended across restarts).
    pub log: PathBuf,
    program: PathBuf,
    args: Vec<String>,
}

impl Process {
    /// Starts `program` with `args`, stderr appended to `log`, at debug level.
    pub fn start(program: &Path, args: &[String], log: &Path) -> Process {
        let child = spawn(program, args, log);
        Process {
            child,
            log: log.to_path_buf(),
            program: program.to_path_buf(),
            args: args.to_vec(),
        }
    }

    /// Kills it the way a crash would (SIGKILL) and waits for it.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again with the same arguments (after [`kill_hard`](Self::kill_hard)).
    pub fn restart(&mut self) {
        self.kill_hard();
        self.child = spawn(&self.program, &self.args, &self.log);
    }

    /// The last `chars` characters of its log.
    pub fn log_tail(&self, chars: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.chars().rev().take(chars).collect::<Vec<_>>().into_iter().rev().collect()
    }

    /// Waits until `url` answers 200, or panics with the end of the log.
    pub fn wait_ready(&self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if status_of(url) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not become ready; its log ends with:\n{}",
            self.program.display(),
            self.log_tail(4000)
        );
    }
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Child {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    Command::new(program)
        .args(args)
        .env(
            "RUST_LOG",
            "debug,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info,reqwest=info",
        )
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// The status of a plain HTTP GET (None when nothing answers), from synchronous code.
pub fn status_of(url: &str) -> Option<u16> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        runtime.block_on(async {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().ok()?;
            client.get(url).send().await.ok().map(|r| r.status().as_u16())
        })
    })
    .join()
    .ok()
    .flatten()
}

/// A test's directory: removed when dropped, unless `QKDN_TEST_KEEP` is set (then its path is
/// printed, to read the services' logs after a failure).
pub struct TestDir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl TestDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A new [`TestDir`].
pub fn test_dir() -> TestDir {
    let dir = tempfile::tempdir().unwrap();
    if std::env::var_os("QKDN_TEST_KEEP").is_some() {
        let path = dir.keep();
        eprintln!("test files kept in {}", path.display());
        return TestDir { path, _temp: None };
    }
    TestDir { path: dir.path().to_path_buf(), _temp: Some(dir) }
}
