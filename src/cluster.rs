//! Cluster set-up from timely's own flags: `-w` threads per process, `-n` processes,
//! `-p` this process's index, `-H` a hostfile with one `host:port` per process (`-h`
//! is help, as everywhere).

use std::path::PathBuf;

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
            let addresses = match &self.hostfile {
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
                    hosts
                }
                None => (0..self.processes)
                    .map(|i| format!("localhost:{}", 2101 + i))
                    .collect(),
            };
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

    /// Total number of workers across all processes.
    pub fn total_workers(&self) -> usize {
        self.workers * self.processes
    }
}
