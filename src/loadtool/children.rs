//! The adapters under load run as child processes of this binary (`serve --config FILE`), so
//! their memory can be read from /proc and the load generator's own work is not counted in it.
//! A [`Server`] kills and reaps its process when dropped, on every path out of a run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Settings;

/// A loopback port free right now (bound and released; the child binds it moments later).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot read the bound port: {e}"))
}

/// A directory for one run's configuration files, logs and redb files; removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh directory under `base`, else under the system temp dir.
    pub fn new(base: Option<&Path>) -> Result<Self, String> {
        let base = base.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let dir = base.join(format!(
            "ondc-rating-bench-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self(dir))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Memory of a process, KiB, from /proc/PID/status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set size so far (VmHWM).
    pub hwm_kib: u64,
    /// Threads now.
    pub threads: u64,
}

/// Reads VmRSS and VmHWM of `pid`; None when the process is gone or /proc is unavailable.
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        threads: field("Threads:").unwrap_or(0),
    })
}

/// CPU time (user + system) `pid` has used so far, all its threads including finished ones,
/// from /proc/PID/stat (in clock ticks of 1/100 s, Linux's fixed USER_HZ); None when the process
/// is gone or /proc is unavailable.
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    cpu_time_in(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The CPU time of this process (the load tool itself).
pub fn own_cpu_time() -> Option<Duration> {
    cpu_time_in(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn cpu_time_in(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of the line; the slice starts at field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// A running adapter process.
pub struct Server {
    /// Role name used in reports ("buyer", "seller").
    pub name: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Writes `settings` to `dir/NAME.toml` and starts `serve` on it, logging to `dir/NAME.log`;
    /// returns once `/healthz` answers.
    pub async fn start(name: &str, settings: &Settings, dir: &Path) -> Result<Self, String> {
        settings
            .validate()
            .map_err(|e| format!("{name} settings: {e}"))?;
        let config = dir.join(format!("{name}.toml"));
        let text = toml::to_string(settings).map_err(|e| format!("{name} settings: {e}"))?;
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // The generated file is the configuration; `ONDC_RATING__SECTION__KEY` variables still
        // apply on top of it (to tune a run, e.g. ONDC_RATING__STORE__CACHE_MIB), while
        // REDIS_URL, which the tool takes as --redis-url, does not.
        cmd.env_remove("REDIS_URL");
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the {name} adapter: {e}"))?;
        let mut server = Self {
            name: name.to_owned(),
            base: format!("http://{}", settings.server.bind),
            child,
            log,
        };
        server.wait_until_up().await?;
        Ok(server)
    }

    async fn wait_until_up(&mut self) -> Result<(), String> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the {} adapter exited at start-up ({status}):\n{}",
                    self.name,
                    self.log_tail()
                ));
            }
            let up = http
                .get(format!("{}/healthz", self.base))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "the {} adapter did not answer /healthz within 30 s:\n{}",
            self.name,
            self.log_tail()
        ))
    }

    /// The last lines the process logged.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its memory now.
    pub fn memory(&self) -> Option<Memory> {
        memory_of(self.pid())
    }

    /// The CPU time it has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Memory samples of several processes, taken in the background until stopped.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// One sample: seconds since sampling started, then one reading per process (None: gone).
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub at_secs: f64,
    /// One reading per process, in the order given to [`Sampler::start`].
    pub memory: Vec<Option<Memory>>,
}

impl Sampler {
    /// Samples `pids` every `every`, starting now.
    pub fn start(pids: Vec<u32>, every: Duration) -> Self {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let out = samples.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let sample = Sample {
                    at_secs: started.elapsed().as_secs_f64(),
                    memory: pids.iter().map(|p| memory_of(*p)).collect(),
                };
                out.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
            }
        });
        Self {
            samples,
            stop,
            task,
        }
    }

    /// Stops sampling and returns the samples.
    pub async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *samples)
    }
}

/// Per process: the largest VmRSS sampled and the last reading.
pub fn summarise(samples: &[Sample], index: usize) -> (Option<u64>, Option<Memory>) {
    let max = samples
        .iter()
        .filter_map(|s| s.memory.get(index).copied().flatten())
        .map(|m| m.rss_kib)
        .max();
    let last = samples
        .iter()
        .rev()
        .find_map(|s| s.memory.get(index).copied().flatten());
    (max, last)
}

/// The machine's connections dropped because a listening socket's queue of connections waiting
/// to be accepted was full (`TcpExt: ListenOverflows` in /proc/net/netstat, of this network
/// namespace); None where it cannot be read. Each such client retries its SYN a second later.
pub fn listen_overflows() -> Option<u64> {
    listen_overflows_in(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

fn listen_overflows_in(netstat: &str) -> Option<u64> {
    let mut tcp_ext = netstat.lines().filter_map(|l| l.strip_prefix("TcpExt:"));
    let (names, values) = (tcp_ext.next()?, tcp_ext.next()?);
    let at = names
        .split_whitespace()
        .position(|name| name == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listen_overflows_and_counts_a_full_backlog() {
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
                       TcpExt: 0 417 419\n\
                       IpExt: InNoRoutes\n\
                       IpExt: 0\n";
        assert_eq!(listen_overflows_in(netstat), Some(417));
        assert_eq!(listen_overflows_in("IpExt: A\nIpExt: 1\n"), None);
        assert_eq!(listen_overflows_in("TcpExt: A B\nTcpExt: 1\n"), None);

        // The real counter: a listener with room for one waiting connection that nothing
        // accepts; the connections past it overflow its queue.
        let before = listen_overflows().expect("/proc/net/netstat is readable");
        let listener = crate::http::bind_listener("127.0.0.1:0", 1).unwrap();
        let address = listener.local_addr().unwrap();
        let held: Vec<_> = (0..4)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()
            })
            .collect();
        assert!(
            held.len() < 4,
            "the queue of one took {} connections",
            held.len()
        );
        assert!(listen_overflows().unwrap() > before);
    }

    #[test]
    fn reads_own_memory() {
        let m = memory_of(std::process::id()).expect("/proc is readable");
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
    }

    #[test]
    fn reads_cpu_time_past_a_command_name_with_spaces() {
        // utime 250 ticks, stime 50 ticks: 3 s.
        let line =
            "4242 (tokio (rt) worker) S 1 4242 4242 0 -1 4194560 1024 0 0 0 250 50 0 0 20 0 9";
        assert_eq!(cpu_time_in(line), Some(Duration::from_secs(3)));
        assert_eq!(cpu_time_in("4242 (x) S 1"), None);
        // Busy work shows up as CPU time (however the machine schedules it).
        let before = own_cpu_time().expect("/proc/self/stat is readable");
        let spin = Instant::now();
        while own_cpu_time().unwrap() < before + Duration::from_millis(30) {
            assert!(
                spin.elapsed() < Duration::from_secs(30),
                "CPU time never advanced"
            );
            for i in 0..100_000u64 {
                std::hint::black_box(i);
            }
        }
    }
}
