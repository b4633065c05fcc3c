//! Process attribution for live capture (Linux procfs).
//!
//! This is the only module that touches the `procfs` crate. It answers two
//! questions for a connection captured on this host:
//!
//! 1. *Who owns this end?* The TCP tables (`/proc/net/tcp`, `tcp6`) give the
//!    socket inode of a (local, remote) pair; `/proc/PID/fd` maps the inode to a
//!    process ([`find_owners`]). IPv4 sockets of dual-stack sockets show as
//!    `::ffff:a.b.c.d` and are normalised.
//! 2. *What was it doing while it was silent?* [`Sampler`] reads the owner's
//!    state, CPU time and context switches (process and threads), and its
//!    socket queues, about once a second, keeping a bounded history per
//!    process; [`Sampler::verdict`] turns the samples inside a silence into a
//!    [`ProcessVerdict`] with numbers.
//! 3. *Why did it not send?* While a gap of the process is open,
//!    [`Sampler::sample_threads`] also keeps per-thread system call samples
//!    ([`super::threads`]); the verdict then carries their
//!    [`threads::diagnose`] diagnosis, naming the thread, call and descriptor.
//!    When the gap closes, [`Sampler::sample_at_close`] takes one more
//!    sample, kept apart as the verdict's `at_close` record: how the silence
//!    ended, never part of the diagnosis.
//!
//! Times are capture time ([`Timestamp`]) handed in by the caller: this module
//! never reads a clock.
//!
//! Caps: [`MAX_SAMPLES`] samples per process, [`MAX_PROCESSES`] processes,
//! [`MAX_THREADS`] threads per sample, [`MAX_DEEP_SAMPLES`] per-thread system
//! call samples per process, [`MAX_DEEP_PROCESSES`] processes read that way
//! per round; beyond them the oldest samples, new processes and extra threads
//! are not kept.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use procfs::process::{FDTarget, Process};
use procfs::ProcError;

use super::threads::{
    self, AtClose, CoarseFacts, Diagnosis, SyscallState, ThreadCpu, ThreadsSample,
};
use crate::model::{Endpoint, Timestamp};

/// The process that owns one end of a connection (live capture on that host).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessOwner {
    /// Process id.
    pub pid: i32,
    /// Command name (`comm`) of the process.
    pub command: String,
    /// Full command line, when readable (bounded).
    pub cmdline: Option<String>,
    /// Owner's user id.
    pub uid: u32,
    /// The user id's name in `/etc/passwd`, when it has one.
    pub user: Option<String>,
}

/// One thread of the silent process during a silence.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadActivity {
    /// Thread id.
    pub tid: i32,
    /// Thread name (`comm`).
    pub name: String,
    /// One state letter per sample during the silence (S, R, D, T, t, Z, X = gone).
    pub state_samples: String,
    /// CPU seconds (user + system) used during the silence.
    pub cpu_s: f64,
    /// The system call it was last seen in during the silence, with what it
    /// waits on ("accept4 on 127.0.0.1:8774 (listening)"), from the
    /// per-thread samples taken while the gap was open.
    pub syscall: Option<String>,
    /// The kernel function it last slept in (`wchan`).
    pub wchan: Option<String>,
}

/// What a process was doing during a silence, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activity {
    /// Asleep with (almost) no CPU: blocked in a call that does not service heartbeats.
    BlockedIdle,
    /// Running: busy with something else.
    Busy,
    /// Stopped (SIGSTOP, job control, a debugger).
    Stopped,
    /// In uninterruptible wait (disk, NFS).
    IoWait,
    /// Gone, or a zombie.
    Exited,
    /// The samples do not decide.
    Undetermined,
    /// The socket's process could not be found.
    NotAttributable,
}

impl Activity {
    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::BlockedIdle => "blocked-idle",
            Activity::Busy => "busy",
            Activity::Stopped => "stopped",
            Activity::IoWait => "io-wait",
            Activity::Exited => "exited",
            Activity::Undetermined => "undetermined",
            Activity::NotAttributable => "not-attributable",
        }
    }
}

impl std::fmt::Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What the silent side's process was doing during a silence (live only).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessVerdict {
    /// The verdict.
    pub verdict: Activity,
    /// One sentence: why this verdict, or why there is none.
    pub reason: String,
    /// Process id (absent when not attributable).
    pub pid: Option<i32>,
    /// Command name.
    pub command: Option<String>,
    /// oslo.messaging / client connection_name from Connection.Start-Ok.
    pub connection_name: Option<String>,
    /// One state letter per ~1 s sample of the process during the silence
    /// (S sleeping, R running, D uninterruptible/io, T stopped, t traced,
    /// Z zombie, X gone).
    pub state_samples: Option<String>,
    /// Wall seconds covered by the samples used for CPU figures.
    pub sampled_s: Option<f64>,
    /// CPU seconds (user + system, all threads) used during the silence.
    pub cpu_s_during_silence: Option<f64>,
    /// CPU seconds per wall second during the silence (1.0 = one core busy).
    pub cpu_share: Option<f64>,
    /// Voluntary context switches during the silence (main thread).
    pub voluntary_ctxt_switches: Option<u64>,
    /// Involuntary context switches during the silence (main thread).
    pub nonvoluntary_ctxt_switches: Option<u64>,
    /// Largest unread byte count in the socket's receive queue during the silence.
    pub socket_rx_queue_max: Option<u32>,
    /// Largest unsent byte count in the socket's send queue during the silence.
    pub socket_tx_queue_max: Option<u32>,
    /// Per-thread samples (at most 16 threads).
    pub threads: Vec<ThreadActivity>,
    /// Why the process left its heartbeats unsent, from the per-thread
    /// system call samples ([`threads::diagnose`]).
    pub diagnosis: Option<Diagnosis>,
    /// What its threads were doing when the gap closed
    /// ([`Sampler::sample_at_close`]); not part of the diagnosis.
    pub at_close: Option<AtClose>,
}

impl ProcessVerdict {
    /// A verdict with a reason and no samples yet.
    #[must_use]
    pub fn unsampled(verdict: Activity, reason: String) -> Self {
        ProcessVerdict {
            verdict,
            reason,
            pid: None,
            command: None,
            connection_name: None,
            state_samples: None,
            sampled_s: None,
            cpu_s_during_silence: None,
            cpu_share: None,
            voluntary_ctxt_switches: None,
            nonvoluntary_ctxt_switches: None,
            socket_rx_queue_max: None,
            socket_tx_queue_max: None,
            threads: Vec::new(),
            diagnosis: None,
            at_close: None,
        }
    }
}

/// Samples kept per process (about 5 minutes at one per second).
pub const MAX_SAMPLES: usize = 300;
/// Processes sampled at once.
pub const MAX_PROCESSES: usize = 256;
/// Threads recorded per sample.
pub const MAX_THREADS: usize = 16;
/// Socket queue samples kept per socket.
const MAX_SOCKET_SAMPLES: usize = 300;
/// Per-thread system call samples kept per process (about 2 minutes of an
/// open gap at one per second).
pub const MAX_DEEP_SAMPLES: usize = 120;
/// Processes whose threads' system calls are sampled in one round.
pub const MAX_DEEP_PROCESSES: usize = 16;
/// Longest command line kept.
const MAX_CMDLINE: usize = 200;

/// Why an end of a connection cannot be tied to a process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcInfoError {
    /// No such TCP socket on this host.
    #[error(
        "no TCP socket {local} -> {remote} on this host (that end is on another machine, or it closed before it \
         was looked up); run hbscope on that end's host to attribute it"
    )]
    NoSocket {
        /// The end looked up.
        local: Endpoint,
        /// Its peer.
        remote: Endpoint,
    },
    /// The socket exists but no readable process holds it.
    #[error(
        "socket {local} -> {remote} (inode {inode}) exists but its process could not be found{}",
        if *unreadable > 0 {
            format!(
                ": {unreadable} processes' /proc/PID/fd were not readable; run as root or with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"
            )
        } else {
            String::from(" (orphaned socket, or the process exited)")
        }
    )]
    NoProcess {
        /// The end looked up.
        local: Endpoint,
        /// Its peer.
        remote: Endpoint,
        /// The socket's inode.
        inode: u64,
        /// Processes whose fd table could not be read.
        unreadable: usize,
    },
    /// The TCP tables could not be read.
    #[error("cannot read /proc/net/tcp{{,6}} ({detail}); is /proc mounted?")]
    Tables {
        /// procfs's message.
        detail: String,
    },
    /// hbscope's own /proc/self could not be read.
    #[error("cannot read /proc/self ({detail}); is /proc mounted?")]
    Own {
        /// procfs's message.
        detail: String,
    },
}

/// The process owning one end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOwner {
    /// Process id.
    pub pid: i32,
    /// `comm` of the process.
    pub command: String,
    /// Command line, cut at 200 characters.
    pub cmdline: Option<String>,
    /// Socket owner uid.
    pub uid: u32,
    /// The uid's name in `/etc/passwd`, when it has one.
    pub user: Option<String>,
    /// Socket inode.
    pub inode: u64,
    /// Process start time (clock ticks since boot), to notice pid reuse.
    pub starttime: u64,
}

impl SocketOwner {
    /// The report form.
    #[must_use]
    pub fn report(&self) -> ProcessOwner {
        ProcessOwner {
            pid: self.pid,
            command: self.command.clone(),
            cmdline: self.cmdline.clone(),
            uid: self.uid,
            user: self.user.clone(),
        }
    }
}

/// The name of user id `uid` in `passwd`-format text (`name:x:uid:...`
/// lines); the first match wins, malformed lines are skipped.
fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id = f.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

/// User names of `uids` from `/etc/passwd`, read once (no NSS: a lookup
/// must not wait on a directory server); a uid without a local entry, or
/// an unreadable file, gives no name.
fn user_names(uids: impl IntoIterator<Item = u32>) -> HashMap<u32, String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    uids.into_iter()
        .filter_map(|u| passwd_name(&passwd, u).map(|n| (u, n)))
        .collect()
}

fn normalise(addr: SocketAddr) -> Endpoint {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    Endpoint::new(ip, addr.port())
}

fn norm_endpoint(e: Endpoint) -> Endpoint {
    normalise(SocketAddr::new(e.ip, e.port))
}

/// One row of the TCP tables that matters here.
#[derive(Debug, Clone, Copy)]
struct SocketRow {
    inode: u64,
    uid: u32,
    rx_queue: u32,
    tx_queue: u32,
}

/// Reads both TCP tables into (local, remote) -> row.
fn tcp_table() -> Result<HashMap<(Endpoint, Endpoint), SocketRow>, ProcInfoError> {
    let mut rows = HashMap::new();
    let mut any_ok = false;
    let mut last_err = None;
    for table in [procfs::net::tcp(), procfs::net::tcp6()] {
        match table {
            Ok(entries) => {
                any_ok = true;
                for e in entries {
                    rows.insert(
                        (normalise(e.local_address), normalise(e.remote_address)),
                        SocketRow {
                            inode: e.inode,
                            uid: e.uid,
                            rx_queue: e.rx_queue,
                            tx_queue: e.tx_queue,
                        },
                    );
                }
            }
            // A kernel without IPv6 has no tcp6 table.
            Err(e) => last_err = Some(e.to_string()),
        }
    }
    if any_ok {
        Ok(rows)
    } else {
        Err(ProcInfoError::Tables {
            detail: last_err.unwrap_or_default(),
        })
    }
}

/// hbscope's own resource use, for its metrics (`process_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OwnUsage {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors (`None`: unlimited).
    pub max_fds: Option<u64>,
    /// Threads.
    pub threads: u64,
    /// When the process started, seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Reads this process's [`OwnUsage`] from /proc/self.
///
/// # Errors
/// [`ProcInfoError::Own`] when /proc/self cannot be read.
pub fn own_usage() -> Result<OwnUsage, ProcInfoError> {
    let own = |e: ProcError| ProcInfoError::Own {
        detail: e.to_string(),
    };
    let me = Process::myself().map_err(own)?;
    let stat = me.stat().map_err(own)?;
    #[allow(clippy::cast_precision_loss)]
    let ticks = procfs::ticks_per_second().max(1) as f64;
    let boot = procfs::boot_time_secs().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let usage = OwnUsage {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        rss_bytes: stat.rss.saturating_mul(procfs::page_size()),
        virtual_bytes: stat.vsize,
        open_fds: me.fd_count().map_or(0, |n| u64::try_from(n).unwrap_or(0)),
        max_fds: me
            .limits()
            .ok()
            .and_then(|l| match l.max_open_files.soft_limit {
                procfs::process::LimitValue::Value(v) => Some(v),
                procfs::process::LimitValue::Unlimited => None,
            }),
        threads: u64::try_from(stat.num_threads).unwrap_or(0),
        start_time_seconds: boot as f64 + stat.starttime as f64 / ticks,
    };
    Ok(usage)
}

/// Finds the processes owning each (local, remote) TCP socket, reading the
/// tables and walking `/proc/*/fd` once for the whole batch.
#[must_use]
pub fn find_owners(pairs: &[(Endpoint, Endpoint)]) -> Vec<Result<SocketOwner, ProcInfoError>> {
    let table = match tcp_table() {
        Ok(t) => t,
        Err(e) => return pairs.iter().map(|_| Err(e.clone())).collect(),
    };
    let wanted: Vec<Option<SocketRow>> = pairs
        .iter()
        .map(|(l, r)| table.get(&(norm_endpoint(*l), norm_endpoint(*r))).copied())
        .collect();
    let inodes: HashSet<u64> = wanted.iter().flatten().map(|r| r.inode).collect();
    let mut found: HashMap<u64, (i32, String, Option<String>, u64)> = HashMap::new();
    let mut unreadable = 0usize;
    if !inodes.is_empty() {
        if let Ok(all) = procfs::process::all_processes() {
            for p in all.flatten() {
                if found.len() == inodes.len() {
                    break;
                }
                let fds = match p.fd() {
                    Ok(f) => f,
                    Err(ProcError::PermissionDenied(_)) => {
                        unreadable += 1;
                        continue;
                    }
                    Err(_) => continue,
                };
                for fd in fds.flatten() {
                    if let FDTarget::Socket(inode) = fd.target {
                        if inodes.contains(&inode) && !found.contains_key(&inode) {
                            let (command, starttime) = p
                                .stat()
                                .map(|s| (s.comm, s.starttime))
                                .unwrap_or_else(|_| (String::from("?"), 0));
                            let cmdline = p.cmdline().ok().map(|v| {
                                // Redacted before it is kept: nothing downstream sees the secret.
                                let mut s = super::redact::cmdline(&v);
                                if s.len() > MAX_CMDLINE {
                                    let mut cut = MAX_CMDLINE;
                                    while !s.is_char_boundary(cut) {
                                        cut -= 1;
                                    }
                                    s.truncate(cut);
                                }
                                s
                            });
                            found.insert(inode, (p.pid(), command, cmdline, starttime));
                        }
                    }
                }
            }
        }
    }
    let users = if found.is_empty() {
        HashMap::new()
    } else {
        user_names(wanted.iter().flatten().map(|r| r.uid))
    };
    pairs
        .iter()
        .zip(wanted)
        .map(|((l, r), row)| {
            let Some(row) = row else {
                return Err(ProcInfoError::NoSocket {
                    local: *l,
                    remote: *r,
                });
            };
            match found.get(&row.inode) {
                Some((pid, command, cmdline, starttime)) => Ok(SocketOwner {
                    pid: *pid,
                    command: command.clone(),
                    cmdline: cmdline.clone(),
                    uid: row.uid,
                    user: users.get(&row.uid).cloned(),
                    inode: row.inode,
                    starttime: *starttime,
                }),
                None => Err(ProcInfoError::NoProcess {
                    local: *l,
                    remote: *r,
                    inode: row.inode,
                    unreadable,
                }),
            }
        })
        .collect()
}

/// One thread at one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ThreadSample {
    tid: i32,
    name: String,
    state: char,
    cpu_ticks: u64,
    /// Nanoseconds on a CPU plus waiting in a run queue for one
    /// (`/proc/PID/task/TID/schedstat`): what the thread wanted, even when
    /// other work on a busy host kept it off the CPU.
    sched_ns: Option<u64>,
}

/// One process at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcSample {
    at: Timestamp,
    /// State letter; 'X' when the process was gone.
    state: char,
    /// utime + stime of the whole process, in clock ticks.
    cpu_ticks: u64,
    voluntary: Option<u64>,
    nonvoluntary: Option<u64>,
    threads: Vec<ThreadSample>,
}

#[derive(Debug, Default)]
struct History {
    starttime: u64,
    samples: VecDeque<ProcSample>,
    gone: bool,
}

/// Socket queue sizes at one moment.
#[derive(Debug, Clone, Copy)]
struct QueueSample {
    at: Timestamp,
    rx: u32,
    tx: u32,
}

/// Samples owner processes and their sockets about once a second and keeps a
/// bounded history for verdicts.
#[derive(Debug)]
pub struct Sampler {
    ticks_per_second: u64,
    procs: HashMap<i32, History>,
    sockets: HashMap<(Endpoint, Endpoint), VecDeque<QueueSample>>,
    /// Per-thread system call samples, taken while a gap of the process is open.
    deep: HashMap<i32, VecDeque<ThreadsSample>>,
    /// AMQP socket inodes per process (from the watched owners).
    inodes: HashMap<i32, Vec<u64>>,
    /// Ports whose TCP sockets count as AMQP.
    amqp_ports: Vec<u16>,
    /// The first "cannot read" reason, until taken.
    denied: Option<String>,
    denied_told: bool,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

/// Which processes and sockets to sample in one round.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Owners to sample.
    pub owners: Vec<SocketOwner>,
    /// Local sockets (local, remote) whose queues to sample.
    pub sockets: Vec<(Endpoint, Endpoint)>,
    /// Processes (among `owners`) with an open gap: their threads' system
    /// calls are sampled too (at most [`MAX_DEEP_PROCESSES`]).
    pub deep: Vec<i32>,
}

impl Sampler {
    /// A sampler with no history.
    #[must_use]
    pub fn new() -> Self {
        Sampler {
            ticks_per_second: procfs::ticks_per_second().max(1),
            procs: HashMap::new(),
            sockets: HashMap::new(),
            deep: HashMap::new(),
            inodes: HashMap::new(),
            amqp_ports: vec![5672, 5671],
            denied: None,
            denied_told: false,
        }
    }

    /// Counts TCP sockets with one of `ports` at either end as AMQP when
    /// describing what a thread waits on (default 5672 and 5671).
    #[must_use]
    pub fn with_amqp_ports(mut self, ports: &[u16]) -> Self {
        self.amqp_ports = ports.to_vec();
        self
    }

    /// Samples the threads of `pid` now: state, CPU, system call, `wchan` and
    /// the descriptor waited on. Called when a gap opens, and by
    /// [`Sampler::sample`] every round while it stays open.
    pub fn sample_threads(&mut self, pid: i32, now: Timestamp) {
        let inodes = self.inodes.get(&pid).cloned().unwrap_or_default();
        let s = threads::sample_threads(pid, &inodes, &self.amqp_ports, now);
        if self.denied.is_none() {
            self.denied.clone_from(&s.unreadable);
        }
        let q = self.deep.entry(pid).or_default();
        if q.len() >= MAX_DEEP_SAMPLES {
            q.pop_front();
        }
        q.push_back(s);
    }

    /// Samples the threads of `pid` as a gap of it closes, and returns the
    /// sample without keeping it: the diagnosis is about the silence, this
    /// sample about how it ended ([`threads::at_close`]).
    pub fn sample_at_close(&mut self, pid: i32, now: Timestamp) -> ThreadsSample {
        let inodes = self.inodes.get(&pid).cloned().unwrap_or_default();
        let s = threads::sample_threads(pid, &inodes, &self.amqp_ports, now);
        if self.denied.is_none() {
            self.denied.clone_from(&s.unreadable);
        }
        s
    }

    /// Once per session: what could not be read about threads and why
    /// (privileges), so the caller can say it once.
    pub fn take_privilege_notice(&mut self) -> Option<String> {
        if self.denied_told {
            return None;
        }
        let d = self.denied.clone()?;
        self.denied_told = true;
        Some(d)
    }

    /// Takes one sample of every watched process and socket at `now`, and
    /// forgets the history of those no longer watched (their connections
    /// ended: no verdict will ask for it), so a long run keeps only the
    /// live connections' samples and a new process finds room under
    /// [`MAX_PROCESSES`].
    pub fn sample(&mut self, watch: &Watch, now: Timestamp) {
        let pids: HashSet<i32> = watch.owners.iter().map(|o| o.pid).collect();
        self.procs.retain(|pid, _| pids.contains(pid));
        let sockets: HashSet<&(Endpoint, Endpoint)> = watch.sockets.iter().collect();
        self.sockets.retain(|k, _| sockets.contains(k));
        let kept = |pid: &i32| pids.contains(pid) || watch.deep.contains(pid);
        self.deep.retain(|pid, _| kept(pid));
        self.inodes.retain(|pid, _| kept(pid));
        for owner in &watch.owners {
            let ino = self.inodes.entry(owner.pid).or_default();
            if !ino.contains(&owner.inode) && ino.len() < 64 {
                ino.push(owner.inode);
            }
        }
        for pid in watch.deep.iter().take(MAX_DEEP_PROCESSES) {
            self.sample_threads(*pid, now);
        }
        for owner in &watch.owners {
            if !self.procs.contains_key(&owner.pid) && self.procs.len() >= MAX_PROCESSES {
                continue;
            }
            let h = self.procs.entry(owner.pid).or_insert_with(|| History {
                starttime: owner.starttime,
                ..History::default()
            });
            if h.gone {
                continue;
            }
            let sample = sample_process(owner.pid, h.starttime, now);
            if sample.state == 'X' {
                h.gone = true;
            }
            if h.samples.len() >= MAX_SAMPLES {
                h.samples.pop_front();
            }
            h.samples.push_back(sample);
        }
        if watch.sockets.is_empty() {
            return;
        }
        let Ok(table) = tcp_table() else {
            return;
        };
        for pair in &watch.sockets {
            let key = (norm_endpoint(pair.0), norm_endpoint(pair.1));
            let Some(row) = table.get(&key) else {
                continue;
            };
            let q = self.sockets.entry(*pair).or_default();
            if q.len() >= MAX_SOCKET_SAMPLES {
                q.pop_front();
            }
            q.push_back(QueueSample {
                at: now,
                rx: row.rx_queue,
                tx: row.tx_queue,
            });
        }
    }

    /// Judges what `owner` was doing from `start` to `end` (a silence of its
    /// side), from the samples taken in that span.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn verdict(
        &self,
        owner: &SocketOwner,
        socket: (Endpoint, Endpoint),
        connection_name: Option<String>,
        start: Timestamp,
        end: Timestamp,
    ) -> ProcessVerdict {
        let mut rep = self.coarse_verdict(owner, socket, connection_name, start, end);
        let deep: Vec<&ThreadsSample> = self
            .deep
            .get(&owner.pid)
            .map(|q| q.iter().filter(|s| s.at >= start && s.at <= end).collect())
            .unwrap_or_default();
        if let Some(last) = deep.last() {
            for t in &mut rep.threads {
                if let Some(w) = last.threads.iter().find(|w| w.tid == t.tid) {
                    t.syscall = match &w.syscall {
                        SyscallState::In(c) => Some(c.what.clone()),
                        SyscallState::Running => Some(String::from("running")),
                        SyscallState::NotInSyscall => None,
                        SyscallState::Unreadable(why) => Some(format!("unreadable: {why}")),
                    };
                    t.wchan.clone_from(&w.wchan);
                }
            }
        }
        let (sampled_s, thread_cpu) = self.inside_thread_cpu(owner.pid, start, end);
        let coarse = CoarseFacts {
            states: rep.state_samples.clone().unwrap_or_default(),
            sampled_s,
            thread_cpu,
            rx_queue_max: rep.socket_rx_queue_max,
        };
        rep.diagnosis = Some(threads::diagnose(owner.pid, &coarse, &deep));
        rep
    }

    /// CPU seconds per thread between the first and the last sample inside
    /// the silence, and the wall seconds between them: a share that the
    /// time before the silence does not dilute.
    #[allow(clippy::cast_precision_loss)]
    fn inside_thread_cpu(
        &self,
        pid: i32,
        start: Timestamp,
        end: Timestamp,
    ) -> (Option<f64>, Vec<ThreadCpu>) {
        let Some(h) = self.procs.get(&pid) else {
            return (None, Vec::new());
        };
        let mut inside = h
            .samples
            .iter()
            .filter(|s| s.at >= start && s.at <= end && s.state != 'X');
        let (Some(first), Some(last)) = (inside.next(), inside.next_back()) else {
            return (None, Vec::new());
        };
        let wall = last.at.since(first.at).as_secs_f64();
        let tps = self.ticks_per_second as f64;
        let cpu = last
            .threads
            .iter()
            .filter_map(|t| {
                let f = first.threads.iter().find(|u| u.tid == t.tid)?;
                Some(ThreadCpu {
                    tid: t.tid,
                    name: t.name.clone(),
                    cpu_s: round3(t.cpu_ticks.saturating_sub(f.cpu_ticks) as f64 / tps),
                    demand_s: t
                        .sched_ns
                        .zip(f.sched_ns)
                        .map(|(b, a)| round3(b.saturating_sub(a) as f64 / 1e9)),
                })
            })
            .collect();
        (Some(round3(wall)), cpu)
    }

    #[allow(clippy::cast_precision_loss)]
    fn coarse_verdict(
        &self,
        owner: &SocketOwner,
        socket: (Endpoint, Endpoint),
        connection_name: Option<String>,
        start: Timestamp,
        end: Timestamp,
    ) -> ProcessVerdict {
        let mut rep = ProcessVerdict {
            pid: Some(owner.pid),
            command: Some(owner.command.clone()),
            connection_name,
            ..ProcessVerdict::unsampled(Activity::Undetermined, String::new())
        };
        if let Some(q) = self.sockets.get(&socket) {
            let inside: Vec<&QueueSample> =
                q.iter().filter(|s| s.at >= start && s.at <= end).collect();
            rep.socket_rx_queue_max = inside.iter().map(|s| s.rx).max();
            rep.socket_tx_queue_max = inside.iter().map(|s| s.tx).max();
        }
        let Some(h) = self.procs.get(&owner.pid) else {
            rep.reason = "the process was never sampled (too many processes watched)".into();
            return rep;
        };
        let inside: Vec<&ProcSample> = h
            .samples
            .iter()
            .filter(|s| s.at >= start && s.at <= end)
            .collect();
        // CPU baseline: the last sample at or before the silence's start, else
        // the first one inside it.
        let base = h
            .samples
            .iter()
            .rev()
            .find(|s| s.at <= start && s.state != 'X')
            .or_else(|| inside.iter().copied().find(|s| s.state != 'X'));
        let last = inside.iter().rev().copied().find(|s| s.state != 'X');
        let states: String = inside.iter().map(|s| s.state).collect();
        let n = inside.len();
        if n == 0 {
            rep.reason = "no sample of the process fell inside the silence".into();
            return rep;
        }
        rep.state_samples = Some(states.clone());
        let tps = self.ticks_per_second as f64;
        if let (Some(b), Some(l)) = (base, last) {
            let wall = l.at.since(b.at).as_secs_f64();
            if wall >= 0.5 {
                let cpu = l.cpu_ticks.saturating_sub(b.cpu_ticks) as f64 / tps;
                rep.sampled_s = Some(round3(wall));
                rep.cpu_s_during_silence = Some(round3(cpu));
                rep.cpu_share = Some(round3(cpu / wall));
            }
            rep.voluntary_ctxt_switches = l
                .voluntary
                .zip(b.voluntary)
                .map(|(a, z)| a.saturating_sub(z));
            rep.nonvoluntary_ctxt_switches = l
                .nonvoluntary
                .zip(b.nonvoluntary)
                .map(|(a, z)| a.saturating_sub(z));
            rep.threads = thread_reports(b, &inside, tps);
        }
        let count = |f: &dyn Fn(char) -> bool| states.chars().filter(|c| f(*c)).count();
        let stopped = count(&|c| c == 'T' || c == 't');
        let io = count(&|c| c == 'D');
        let gone = count(&|c| c == 'X' || c == 'Z');
        let running = count(&|c| c == 'R');
        let sleeping = count(&|c| c == 'S' || c == 'I');
        let share = rep.cpu_share;
        let half = |k: usize| k * 2 >= n;
        let cpu_txt = share.map_or_else(
            || String::from("CPU use unknown (samples too close together)"),
            |s| format!("{:.2} CPU s per s", s),
        );
        if half(gone) {
            rep.verdict = Activity::Exited;
            rep.reason = format!(
                "the process was gone (or a zombie) in {gone} of {n} samples during the silence"
            );
        } else if half(stopped) {
            rep.verdict = Activity::Stopped;
            rep.reason = format!(
                "the process was stopped (T: SIGSTOP, job control or a debugger) in {stopped} of {n} samples; {cpu_txt}"
            );
        } else if half(io) {
            rep.verdict = Activity::IoWait;
            rep.reason = format!(
                "the process was in uninterruptible wait (D: disk/NFS/io) in {io} of {n} samples; {cpu_txt}"
            );
        } else if share.is_some_and(|s| s >= 0.5) || half(running) {
            rep.verdict = Activity::Busy;
            rep.reason = format!(
                "the process was running (R in {running} of {n} samples, {cpu_txt}): busy with something other than heartbeats"
            );
        } else if half(sleeping) && share.is_some_and(|s| s < 0.1) {
            rep.verdict = Activity::BlockedIdle;
            rep.reason = format!(
                "the process slept (S in {sleeping} of {n} samples) and used {cpu_txt}: blocked in a call that does not service heartbeats"
            );
        } else {
            rep.reason = format!("mixed states over {n} samples; {cpu_txt}");
        }
        rep
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[allow(clippy::cast_precision_loss)]
fn thread_reports(base: &ProcSample, inside: &[&ProcSample], tps: f64) -> Vec<ThreadActivity> {
    let mut order: Vec<i32> = Vec::new();
    for s in inside {
        for t in &s.threads {
            if !order.contains(&t.tid) && order.len() < MAX_THREADS {
                order.push(t.tid);
            }
        }
    }
    order
        .into_iter()
        .map(|tid| {
            let seen: Vec<&ThreadSample> = inside
                .iter()
                .filter_map(|s| s.threads.iter().find(|t| t.tid == tid))
                .collect();
            let first_cpu = base
                .threads
                .iter()
                .find(|t| t.tid == tid)
                .or(seen.first().copied())
                .map_or(0, |t| t.cpu_ticks);
            let last_cpu = seen.last().map_or(first_cpu, |t| t.cpu_ticks);
            ThreadActivity {
                tid,
                name: seen.first().map_or_else(String::new, |t| t.name.clone()),
                state_samples: inside
                    .iter()
                    .map(|s| {
                        s.threads
                            .iter()
                            .find(|t| t.tid == tid)
                            .map_or('X', |t| t.state)
                    })
                    .collect(),
                cpu_s: round3(last_cpu.saturating_sub(first_cpu) as f64 / tps),
                syscall: None,
                wchan: None,
            }
        })
        .collect()
}

/// On-CPU plus run-queue nanoseconds of a thread, when the kernel keeps them.
fn schedstat(pid: i32, tid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    let mut it = text.split_whitespace();
    let run: u64 = it.next()?.parse().ok()?;
    let wait: u64 = it.next()?.parse().ok()?;
    Some(run.saturating_add(wait))
}

fn gone_sample(at: Timestamp) -> ProcSample {
    ProcSample {
        at,
        state: 'X',
        cpu_ticks: 0,
        voluntary: None,
        nonvoluntary: None,
        threads: Vec::new(),
    }
}

fn sample_process(pid: i32, starttime: u64, at: Timestamp) -> ProcSample {
    let Ok(p) = Process::new(pid) else {
        return gone_sample(at);
    };
    let Ok(stat) = p.stat() else {
        return gone_sample(at);
    };
    if starttime != 0 && stat.starttime != starttime {
        // The pid was reused by another process: ours is gone.
        return gone_sample(at);
    }
    let status = p.status().ok();
    let mut threads = Vec::new();
    if let Ok(tasks) = p.tasks() {
        for t in tasks.flatten().take(MAX_THREADS) {
            if let Ok(ts) = t.stat() {
                threads.push(ThreadSample {
                    tid: t.tid,
                    name: ts.comm,
                    state: ts.state,
                    cpu_ticks: ts.utime.saturating_add(ts.stime),
                    sched_ns: schedstat(pid, t.tid),
                });
            }
        }
    }
    ProcSample {
        at,
        state: stat.state,
        cpu_ticks: stat.utime.saturating_add(stat.stime),
        voluntary: status.as_ref().and_then(|s| s.voluntary_ctxt_switches),
        nonvoluntary: status.as_ref().and_then(|s| s.nonvoluntary_ctxt_switches),
        threads,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn v4_mapped_addresses_are_normalised() {
        let mapped = SocketAddr::new(
            IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()),
            5672,
        );
        assert_eq!(
            normalise(mapped),
            Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5672)
        );
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1);
        assert_eq!(
            normalise(v6),
            Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1)
        );
    }

    fn owner(pid: i32) -> SocketOwner {
        SocketOwner {
            pid,
            command: "python3".into(),
            cmdline: None,
            uid: 0,
            user: None,
            inode: 1,
            starttime: 0,
        }
    }

    fn sampler_with(states: &[(char, u64)]) -> Sampler {
        let mut s = Sampler::new();
        s.ticks_per_second = 100;
        let mut h = History::default();
        for (i, (state, cpu)) in states.iter().enumerate() {
            h.samples.push_back(ProcSample {
                at: Timestamp(i64::try_from(i).unwrap_or(0) * 1_000_000_000),
                state: *state,
                cpu_ticks: *cpu,
                voluntary: Some(10),
                nonvoluntary: Some(1),
                threads: Vec::new(),
            });
        }
        s.procs.insert(7, h);
        s
    }

    fn judge(states: &[(char, u64)]) -> ProcessVerdict {
        let end = Timestamp(i64::try_from(states.len()).unwrap_or(0) * 1_000_000_000);
        let e = Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1);
        sampler_with(states).verdict(&owner(7), (e, e), None, Timestamp(0), end)
    }

    #[test]
    fn verdicts_follow_states_and_cpu() {
        let r = judge(&[('S', 0), ('T', 1), ('T', 1), ('T', 1), ('S', 1)]);
        assert_eq!(r.verdict, Activity::Stopped, "{r:?}");
        assert_eq!(r.state_samples.as_deref(), Some("STTTS"));
        let r = judge(&[('S', 0), ('S', 0), ('S', 1), ('S', 1), ('S', 1)]);
        assert_eq!(r.verdict, Activity::BlockedIdle, "{r:?}");
        assert_eq!(r.cpu_s_during_silence, Some(0.01));
        let r = judge(&[('R', 0), ('R', 100), ('S', 200), ('R', 300), ('R', 400)]);
        assert_eq!(r.verdict, Activity::Busy, "{r:?}");
        assert_eq!(r.cpu_share, Some(1.0));
        let r = judge(&[('D', 0), ('D', 0), ('D', 0), ('S', 0)]);
        assert_eq!(r.verdict, Activity::IoWait, "{r:?}");
        let r = judge(&[('S', 0), ('X', 0), ('X', 0)]);
        assert_eq!(r.verdict, Activity::Exited, "{r:?}");
    }

    /// A process or socket no longer watched (its connections ended)
    /// loses its history at the next round; a watched one keeps it.
    #[test]
    fn unwatched_history_is_forgotten() {
        let mut s = sampler_with(&[('S', 0), ('S', 0)]);
        let e = Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1);
        s.sockets.insert((e, e), VecDeque::new());
        let watch = Watch {
            owners: vec![owner(7)],
            sockets: Vec::new(),
            deep: Vec::new(),
        };
        s.sample(&watch, Timestamp(5_000_000_000));
        assert_eq!(s.procs.get(&7).map(|h| h.samples.len()), Some(3));
        assert!(s.sockets.is_empty());
        s.sample(&Watch::default(), Timestamp(6_000_000_000));
        assert!(s.procs.is_empty());
    }

    #[test]
    fn user_names_come_from_passwd_lines() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      broken line\n\
                      :x:7:7::/:/bin/sh\n\
                      odd:x:notanumber:1::/:/bin/sh\n\
                      rabbitmq:x:105:112:RabbitMQ:/var/lib/rabbitmq:/usr/sbin/nologin\n\
                      dup:x:105:1::/:/bin/sh\n";
        assert_eq!(passwd_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(passwd, 105).as_deref(), Some("rabbitmq"));
        assert_eq!(passwd_name(passwd, 7), None, "an empty name is no name");
        assert_eq!(passwd_name(passwd, 1000), None);
        assert_eq!(passwd_name("", 0), None);
    }

    #[test]
    fn own_socket_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let local = client.local_addr().unwrap();
        let found = find_owners(&[(normalise(local), normalise(addr))]);
        let owner = found.into_iter().next().unwrap().unwrap();
        assert_eq!(owner.pid, i32::try_from(std::process::id()).unwrap());
        // Our own uid's name, as /etc/passwd has it (none without an entry).
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        assert_eq!(owner.user, passwd_name(&passwd, owner.uid));
        let e = Endpoint::new(IpAddr::V4(Ipv4Addr::new(10, 255, 255, 1)), 9);
        let missing = find_owners(&[(e, e)]);
        assert!(matches!(missing[0], Err(ProcInfoError::NoSocket { .. })));
    }
}
