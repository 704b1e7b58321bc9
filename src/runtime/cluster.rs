//! Cluster set-up from timely's own flags: `-w` threads per process, `-n` processes,
//! `-p` this process's index, `-H` a hostfile with one `host:port` per process (`-h`
//! is help, as everywhere).

use std::path::PathBuf;

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};

/// Timely's cluster flags, parsed by clap so they sit beside tidemark's own.
#[derive(Clone, Debug, clap::Args)]
pub struct ClusterArgs {
    /// Worker threads in this process (default: every core of this machine).
    #[arg(short = 'w', long = "workers", default_value_t = default_workers())]
    pub workers: usize,
    /// Number of processes in the cluster.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    pub processes: usize,
    /// This process's index, 0..processes.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    pub process: usize,
    /// Hostfile: one `host:port` line per process, in process order (default: localhost:2101+i).
    #[arg(short = 'H', long = "hostfile")]
    pub hostfile: Option<PathBuf>,
}

/// The cores this process may use (`std::thread::available_parallelism`), 1 if unknown.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for ClusterArgs {
    fn default() -> Self {
        ClusterArgs {
            workers: 1,
            processes: 1,
            process: 0,
            hostfile: None,
        }
    }
}

impl ClusterArgs {
    /// The timely configuration these flags describe.
    pub fn timely_config(&self) -> Result<timely::Config> {
        if self.workers == 0 {
            bail!("-w/--workers must be at least 1");
        }
        if self.processes == 0 || self.process >= self.processes {
            bail!(
                "-p/--process must be below -n/--processes ({}), got {}",
                self.processes,
                self.process
            );
        }
        let communication = if self.processes == 1 {
            if self.workers == 1 {
                timely::CommunicationConfig::Thread
            } else {
                timely::CommunicationConfig::Process(self.workers)
            }
        } else {
            let addresses = self.addresses()?;
            timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses,
                report: false,
                zerocopy: false,
            }
        };
        Ok(timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        })
    }

    /// The `host:port` of every process: the hostfile's lines, or localhost:2101+i.
    pub fn addresses(&self) -> Result<Vec<String>> {
        match &self.hostfile {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading hostfile {}", path.display()))?;
                let hosts: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect();
                if hosts.len() < self.processes {
                    bail!(
                        "hostfile {} lists {} hosts but -n is {}: give one host:port line per process",
                        path.display(),
                        hosts.len(),
                        self.processes
                    );
                }
                Ok(hosts)
            }
            None => Ok((0..self.processes)
                .map(|i| format!("localhost:{}", 2101 + i))
                .collect()),
        }
    }

    /// Total number of workers across all processes.
    pub fn total_workers(&self) -> usize {
        self.workers * self.processes
    }
}

/// The exit status of a process that lost a peer.
pub const EXIT_LOST_PEER: i32 = 3;

/// Turns the loss of a peer process into one clear error line and exit status
/// [`EXIT_LOST_PEER`], instead of timely's cascade of panics (its network threads
/// panic with "timely communication error" when a connection breaks, and every worker
/// then fails). Exiting at once is safe: the checkpoint is crash-proof, and the peer's
/// partial work cannot complete a logical time without it.
pub fn exit_on_lost_peer(addresses: Vec<String>, me: usize) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        let lost = message.contains("timely communication error")
            || message.contains("MergeQueue poisoned")
            || message.contains("Send thread panic")
            || message.contains("Recv thread panic");
        if !lost {
            default(info);
            return;
        }
        if REPORTED.swap(true, Ordering::SeqCst) {
            // Another thread is reporting the same loss and exiting.
            loop {
                std::thread::park();
            }
        }
        let peer = std::thread::current()
            .name()
            .and_then(|name| {
                name.strip_prefix("timely:recv-")
                    .or_else(|| name.strip_prefix("timely:send-"))
            })
            .and_then(|index| index.parse::<usize>().ok());
        let who = match peer {
            Some(index) => format!(
                "process {index} ({})",
                addresses.get(index).map_or("?", String::as_str)
            ),
            None => "a peer process".to_string(),
        };
        let detail = message
            .strip_prefix("timely communication error: ")
            .unwrap_or(message);
        eprintln!(
            "error: process {me} lost its connection to {who}: {detail}. This process stops now. \
             Every logical time the cluster completed is checkpointed in OUT: when every process \
             can run again, start each one with the same command to resume."
        );
        std::process::exit(EXIT_LOST_PEER);
    }));
}
