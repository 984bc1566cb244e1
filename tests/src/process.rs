//! Service processes: where the binaries are, starting one with its log in a file, reading
//! back the addresses it bound (services listen on port 0 and say where in their "started"
//! line), waiting for it to be ready, and killing it (politely with SIGTERM or with SIGKILL,
//! as a crash would).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A port free right now on loopback, for the few addresses other processes must be given
/// before the service that binds it starts (an agent's peer service, which its neighbours
/// name in their configurations). Everything else binds port 0 and is read back
/// ([`Process::start_service`]). Below Linux's ephemeral range (32768 and up), so that no
/// outgoing connection takes it before the service binds it; each call of this process gets a
/// different one.
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

/// The addresses a service said it listens on, by name (`restconf`, `api`, `management`,
/// `kms`, `peer`), read from its "started" log line.
#[derive(Debug, Clone, Default)]
pub struct Listening(BTreeMap<String, SocketAddr>);

impl Listening {
    /// Reads the `name=address` fields of a log line (fields that are not addresses, such as
    /// `node=` or `kms=none`, are left out).
    fn of_line(line: &str) -> Listening {
        let fields = line.split_whitespace().filter_map(|field| {
            let (name, value) = field.split_once('=')?;
            Some((name.to_owned(), value.parse().ok()?))
        });
        Listening(fields.collect())
    }

    /// The port of listener `name`, or a panic naming what the service said.
    pub fn port(&self, name: &str) -> u16 {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("the service named no `{name}` address: {:?}", self.0))
            .port()
    }

    /// The flags that bind the same API and management addresses again (for restarts, so that
    /// clients and other services that were given them find the service where it was).
    fn pinning_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(api) = self.0.get("api").or_else(|| self.0.get("restconf")) {
            flags.extend(["--listen".to_owned(), api.to_string()]);
        }
        if let Some(management) = self.0.get("management") {
            flags.extend(["--management-listen".to_owned(), management.to_string()]);
        }
        flags
    }
}

/// A running process; killed when dropped.
pub struct Process {
    /// The child.
    pub child: Child,
    /// Its log file (stderr, appended across restarts).
    pub log: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    /// Where its log was when it was last started: its "started" line comes after.
    log_start: u64,
    /// A service's "started" message and the addresses it said it bound (empty for a plain
    /// process).
    started_message: Option<&'static str>,
    listening: Listening,
}

impl Process {
    /// Starts `program` with `args`, stderr appended to `log`, at debug level.
    pub fn start(program: &Path, args: &[String], log: &Path) -> Process {
        let log_start = log_length(log);
        let child = spawn(program, args, log);
        Process {
            child,
            log: log.to_path_buf(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            log_start,
            started_message: None,
            listening: Listening::default(),
        }
    }

    /// Starts a service whose configuration binds its listeners where it likes (port 0),
    /// waits for its `started_message` line and reads the addresses back from it, then (a qkdn
    /// service with a management listener) waits until its `/readyz` answers 200. Restarts bind the same API and management
    /// addresses again (as flags).
    pub fn start_service(
        program: &Path,
        args: &[String],
        log: &Path,
        started_message: &'static str,
    ) -> Process {
        let mut process = Process::start(program, args, log);
        process.started_message = Some(started_message);
        process.wait_started();
        process.args.extend(process.listening.pinning_flags());
        process
    }

    /// The addresses the service said it listens on.
    pub fn listening(&self) -> &Listening {
        &self.listening
    }

    /// The port of its listener `name` (see [`Listening`]).
    pub fn port(&self, name: &str) -> u16 {
        self.listening.port(name)
    }

    /// Kills it the way a crash would (SIGKILL) and waits for it.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again with the same arguments (after [`kill_hard`](Self::kill_hard), which it
    /// does itself if need be); a service is waited for until it is ready again, on the same
    /// addresses.
    pub fn restart(&mut self) {
        self.kill_hard();
        self.log_start = log_length(&self.log);
        self.child = spawn(&self.program, &self.args, &self.log);
        if self.started_message.is_some() {
            self.wait_started();
        }
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
        self.fail("did not become ready");
    }

    /// Waits for the started line written since the last start and reads its addresses.
    fn wait_started(&mut self) {
        let message = self.started_message.expect("a service");
        let deadline = Instant::now() + Duration::from_secs(30);
        let line = loop {
            let log = std::fs::read(&self.log).unwrap_or_default();
            let since = String::from_utf8_lossy(log.get(self.log_start as usize..).unwrap_or(&[]))
                .into_owned();
            if let Some(line) = since.lines().find(|l| l.contains(message)) {
                break line.to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("exited ({status}) before it started"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("did not log \"{message}\""));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.listening = Listening::of_line(&line);
        // A qkdn service says when it is ready on its management listener; a plain server
        // serves once its line is out (its listener was bound before).
        if let Some(management) = self.listening.0.get("management") {
            self.wait_ready(&format!("http://{management}/readyz"));
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{} {what}; its log ends with:\n{}", self.program.display(), self.log_tail(4000));
    }
}

fn log_length(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Child {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    Command::new(program)
        .args(args)
        .env(
            "RUST_LOG",
            "debug,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info,reqwest=info",
        )
        // Other tools' QKDN_* variables are not configuration and must not disturb a service.
        .env("QKDN_UNRELATED_TOOL_SETTING", "1")
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
