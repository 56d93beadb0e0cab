//! What `/proc` says about the processes the bench measures: CPU time and resident
//! memory (Linux only).

use anyhow::Context as _;

/// CPU seconds (user + system) used so far.
#[derive(Debug, Default)]
pub(super) struct Cpu {
    pub(super) stack: f64,
    pub(super) emulator: f64,
    pub(super) clients: f64,
}

impl Cpu {
    /// The stack process `pid`, its descendants (the emulator) and this process.
    pub(super) fn read(pid: u32) -> anyhow::Result<Cpu> {
        let mut emulator = 0.0;
        let mut pending = children(pid);
        while let Some(child) = pending.pop() {
            // A descendant may end between listing and reading: it counts as nothing.
            emulator += cpu_seconds(&child.to_string()).unwrap_or(0.0);
            pending.extend(children(child));
        }
        Ok(Cpu {
            stack: cpu_seconds(&pid.to_string())?,
            emulator,
            clients: cpu_seconds("self")?,
        })
    }

    pub(super) fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            stack: self.stack - before.stack,
            emulator: self.emulator - before.emulator,
            clients: self.clients - before.clients,
        }
    }
}

/// `utime + stime` of `/proc/<pid>/stat`, in seconds.
fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (Linux only)"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("no CPU time in /proc/{pid}/stat"))
    };
    // Fields 14 and 15 of stat(5) (utime, stime) are the 12th and 13th after the name.
    Ok((ticks(11)? + ticks(12)?) / rustix::param::clock_ticks_per_second() as f64)
}

/// The direct children of `pid`, from every thread's `children` file.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// A process's resident memory, from `/proc/<pid>/status`.
pub(super) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (Linux only)"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}
