//! What each thread of a process is blocked in, read from `/proc` (Linux),
//! and a diagnosis of why a process left its heartbeats unsent.
//!
//! A [`ThreadsSample`] holds, per thread: its state, CPU ticks,
//! `/proc/PID/task/TID/syscall` (the system call it sleeps in, with its
//! arguments), `wchan`, and the file descriptor the call waits on, resolved
//! through `/proc/PID/fd`, `/proc/PID/fdinfo` and the process's own socket
//! tables (`/proc/PID/net/tcp{,6}`, `unix`, so network namespaces are
//! respected): a listening TCP socket ("accept4 on 127.0.0.1:8774
//! (listening)"), a connected one (its 4-tuple, AMQP or not), an epoll set
//! and the descriptors in it, a pipe, a FIFO, a file. For `poll`, `select`,
//! sleeps and futex waits with a timeout, the arguments in the process's
//! memory are read through `/proc/PID/mem` (descriptor lists, timeouts).
//!
//! Reading another process's `syscall`, `wchan` and `mem` needs ptrace
//! rights (root or `CAP_SYS_PTRACE`); without them a sample says so in
//! [`ThreadsSample::unreadable`] and [`diagnose`] answers `unknown` with that
//! reason.
//!
//! Only plain `std::fs` reads: this module does not use the `procfs` crate.
//! It never reads a clock: sample times come from the caller.
//!
//! Caps: [`MAX_WAIT_THREADS`] threads per sample, [`MAX_LISTED_FDS`]
//! descriptors listed from an epoll/poll/select set.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{FileExt, FileTypeExt};

use crate::model::Timestamp;

/// Threads read per sample (the rest are counted, not read).
pub const MAX_WAIT_THREADS: usize = 64;
/// Descriptors listed from one epoll, poll or select set.
pub const MAX_LISTED_FDS: usize = 16;
/// A thread counts as CPU-bound when it ran at least this share of the
/// sampled silence.
pub const CPU_BOUND_SHARE: f64 = 0.9;

/// The x86-64 name of a system call number, for the calls a process usually
/// blocks in (and a few more); `None` for others and on other architectures.
#[must_use]
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    Some(match nr {
        0 => "read",
        1 => "write",
        2 => "open",
        3 => "close",
        7 => "poll",
        16 => "ioctl",
        17 => "pread64",
        18 => "pwrite64",
        19 => "readv",
        20 => "writev",
        23 => "select",
        24 => "sched_yield",
        34 => "pause",
        35 => "nanosleep",
        40 => "sendfile",
        42 => "connect",
        43 => "accept",
        44 => "sendto",
        45 => "recvfrom",
        46 => "sendmsg",
        47 => "recvmsg",
        61 => "wait4",
        62 => "kill",
        65 => "semop",
        70 => "msgrcv",
        72 => "fcntl",
        73 => "flock",
        74 => "fsync",
        75 => "fdatasync",
        128 => "rt_sigtimedwait",
        130 => "rt_sigsuspend",
        202 => "futex",
        208 => "io_getevents",
        217 => "getdents64",
        230 => "clock_nanosleep",
        232 => "epoll_wait",
        247 => "waitid",
        257 => "openat",
        270 => "pselect6",
        271 => "ppoll",
        275 => "splice",
        281 => "epoll_pwait",
        288 => "accept4",
        299 => "recvmmsg",
        307 => "sendmmsg",
        426 => "io_uring_enter",
        441 => "epoll_pwait2",
        _ => return None,
    })
}

/// What kind of wait a system call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// On one descriptor (read, accept, recv, write, ...): `args[0]`.
    Fd,
    /// On a set of descriptors (epoll, poll, select).
    Multiplex,
    /// A sleep with a timeout (nanosleep, clock_nanosleep, pause).
    Sleep,
    /// A futex (a lock, condition variable or thread join).
    Futex,
    /// Waiting for a child process.
    Child,
    /// Anything else.
    Other,
}

fn wait_kind(name: &str) -> WaitKind {
    match name {
        "read" | "write" | "pread64" | "pwrite64" | "readv" | "writev" | "accept" | "accept4"
        | "recvfrom" | "recvmsg" | "recvmmsg" | "sendto" | "sendmsg" | "sendmmsg" | "connect"
        | "fsync" | "fdatasync" | "flock" | "fcntl" | "ioctl" | "getdents64" | "sendfile"
        | "splice" => WaitKind::Fd,
        "poll" | "ppoll" | "select" | "pselect6" | "epoll_wait" | "epoll_pwait"
        | "epoll_pwait2" => WaitKind::Multiplex,
        "nanosleep" | "clock_nanosleep" | "pause" | "rt_sigsuspend" | "rt_sigtimedwait" => {
            WaitKind::Sleep
        }
        "futex" => WaitKind::Futex,
        "wait4" | "waitid" => WaitKind::Child,
        _ => WaitKind::Other,
    }
}

/// The system call a thread was in when sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyscallState {
    /// The thread was on a CPU (`running`).
    Running,
    /// Not in a system call (`-1`: e.g. a page fault, or user code when stopped).
    NotInSyscall,
    /// In this call.
    In(Syscall),
    /// `/proc/PID/task/TID/syscall` could not be read: why.
    Unreadable(String),
}

/// One system call a thread sleeps in, with what it waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syscall {
    /// Number (x86-64 numbering on x86-64).
    pub nr: i64,
    /// Name, when known.
    pub name: Option<&'static str>,
    /// The six raw arguments.
    pub args: [u64; 6],
    /// The call and what it waits on, in words: "accept4 on 127.0.0.1:8774
    /// (listening)", "read on FIFO /tmp/x", "futex wait at 0x7f..".
    pub what: String,
    /// The wait involves the AMQP socket (directly or in its epoll/poll set).
    pub on_amqp: bool,
    /// What kind of wait it is.
    pub kind: WaitKind,
}

/// One thread at one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadWait {
    /// Thread id.
    pub tid: i32,
    /// Thread name (`comm`).
    pub name: String,
    /// State letter (S, R, D, T, t, Z, ...).
    pub state: char,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// The system call it was in.
    pub syscall: SyscallState,
    /// Kernel function it sleeps in (`wchan`), when not "0".
    pub wchan: Option<String>,
}

/// All threads of one process at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadsSample {
    /// When (capture time, from the caller).
    pub at: Timestamp,
    /// The process was gone.
    pub gone: bool,
    /// `TracerPid` from `/proc/PID/status` (0: not traced).
    pub tracer: Option<i32>,
    /// Threads read (at most [`MAX_WAIT_THREADS`]).
    pub threads: Vec<ThreadWait>,
    /// Threads not read because of the cap.
    pub threads_skipped: usize,
    /// The first thing that could not be read, and why (privileges).
    pub unreadable: Option<String>,
}

/// What the process's descriptors point at, read once per sample.
struct FdResolver {
    pid: i32,
    amqp_inodes: Vec<u64>,
    amqp_ports: Vec<u16>,
    tcp: Option<HashMap<u64, TcpRow>>,
    unix: Option<HashMap<u64, String>>,
    mem: Option<Option<std::fs::File>>,
}

#[derive(Debug, Clone, Copy)]
struct TcpRow {
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    state: u8,
}

fn parse_hex_addr(s: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_ne_bytes(),
        )),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(b);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some((ip, port))
}

/// Parses a `/proc/net/tcp`-style table into inode -> row.
fn parse_tcp_table(text: &str, out: &mut HashMap<u64, TcpRow>) {
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(l), Some(r), Some(st), Some(ino)) = (f.get(1), f.get(2), f.get(3), f.get(9))
        else {
            continue;
        };
        let (Some(local), Some(remote), Ok(state), Ok(inode)) = (
            parse_hex_addr(l),
            parse_hex_addr(r),
            u8::from_str_radix(st, 16),
            ino.parse::<u64>(),
        ) else {
            continue;
        };
        if inode != 0 {
            out.insert(
                inode,
                TcpRow {
                    local,
                    remote,
                    state,
                },
            );
        }
    }
}

fn tcp_state_name(s: u8) -> &'static str {
    match s {
        1 => "established",
        2 => "syn-sent",
        3 => "syn-recv",
        4 => "fin-wait1",
        5 => "fin-wait2",
        6 => "time-wait",
        7 => "close",
        8 => "close-wait",
        9 => "last-ack",
        10 => "listening",
        11 => "closing",
        _ => "unknown state",
    }
}

fn fmt_addr((ip, port): (IpAddr, u16)) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

fn io_why(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::PermissionDenied => {
            "permission denied (needs root or CAP_SYS_PTRACE)".to_owned()
        }
        ErrorKind::NotFound => "gone".to_owned(),
        _ => e.to_string(),
    }
}

impl FdResolver {
    fn tcp(&mut self) -> &HashMap<u64, TcpRow> {
        let pid = self.pid;
        self.tcp.get_or_insert_with(|| {
            let mut m = HashMap::new();
            for t in ["tcp", "tcp6"] {
                if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{t}")) {
                    parse_tcp_table(&text, &mut m);
                }
            }
            m
        })
    }

    fn unix(&mut self) -> &HashMap<u64, String> {
        let pid = self.pid;
        self.unix.get_or_insert_with(|| {
            let mut m = HashMap::new();
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/unix")) {
                for line in text.lines().skip(1) {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    if let (Some(ino), Some(path)) = (f.get(6), f.get(7)) {
                        if let Ok(ino) = ino.parse::<u64>() {
                            m.insert(ino, (*path).to_owned());
                        }
                    }
                }
            }
            m
        })
    }

    /// Reads `len` bytes at `addr` of the process's memory (ptrace rights).
    fn read_mem(&mut self, addr: u64, len: usize) -> Option<Vec<u8>> {
        if addr == 0 || len == 0 || len > 4096 {
            return None;
        }
        let pid = self.pid;
        let f = self
            .mem
            .get_or_insert_with(|| std::fs::File::open(format!("/proc/{pid}/mem")).ok())
            .as_ref()?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, addr).ok()?;
        Some(buf)
    }

    fn is_amqp_tcp(&self, inode: u64, row: Option<&TcpRow>) -> bool {
        self.amqp_inodes.contains(&inode)
            || row.is_some_and(|r| {
                r.state != 10
                    && (self.amqp_ports.contains(&r.remote.1)
                        || self.amqp_ports.contains(&r.local.1))
            })
    }

    /// What descriptor `fd` is, in words, and whether it is an AMQP socket.
    fn describe(&mut self, fd: i64) -> (String, bool) {
        let Ok(fdn) = u32::try_from(fd) else {
            return (format!("fd {fd}"), false);
        };
        let pid = self.pid;
        let link = match std::fs::read_link(format!("/proc/{pid}/fd/{fdn}")) {
            Ok(l) => l.to_string_lossy().into_owned(),
            Err(e) => return (format!("fd {fdn} (unreadable: {})", io_why(&e)), false),
        };
        if let Some(ino) = link
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok())
        {
            let row = self.tcp().get(&ino).copied();
            let amqp = self.is_amqp_tcp(ino, row.as_ref());
            if let Some(r) = row {
                let text = if r.state == 10 {
                    format!("{} (listening)", fmt_addr(r.local))
                } else {
                    format!(
                        "{} -> {} ({}{})",
                        fmt_addr(r.local),
                        fmt_addr(r.remote),
                        tcp_state_name(r.state),
                        if amqp { ", AMQP" } else { ", not AMQP" }
                    )
                };
                return (text, amqp);
            }
            if let Some(path) = self.unix().get(&ino) {
                return (format!("unix socket {path}"), false);
            }
            if self.unix().contains_key(&ino) {
                return (format!("unix socket (inode {ino})"), false);
            }
            return (format!("socket inode {ino} (not TCP)"), amqp);
        }
        if link.starts_with("pipe:[") {
            return (format!("pipe fd {fdn} ({link})"), false);
        }
        if link == "anon_inode:[eventpoll]" {
            let (fds, amqp) = self.epoll_targets(fdn);
            return (format!("epoll fd {fdn} {fds}"), amqp);
        }
        if let Some(kind) = link.strip_prefix("anon_inode:") {
            return (format!("{kind} fd {fdn}"), false);
        }
        let fifo = std::fs::metadata(format!("/proc/{pid}/fd/{fdn}"))
            .is_ok_and(|m| m.file_type().is_fifo());
        if fifo {
            (format!("FIFO {link}"), false)
        } else {
            (link, false)
        }
    }

    /// The descriptors in an epoll set (from `/proc/PID/fdinfo/EPFD`), in
    /// words, and whether one is an AMQP socket.
    fn epoll_targets(&mut self, epfd: u32) -> (String, bool) {
        let pid = self.pid;
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{epfd}")) else {
            return (String::from("(its set unreadable)"), false);
        };
        let fds: Vec<i64> = info
            .lines()
            .filter_map(|l| l.strip_prefix("tfd:"))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        self.set_text(&fds)
    }

    /// "watching N fds: a, b, c; includes the AMQP socket".
    fn set_text(&mut self, fds: &[i64]) -> (String, bool) {
        let mut amqp = false;
        let mut parts = Vec::new();
        for fd in fds.iter().take(MAX_LISTED_FDS) {
            let (d, a) = self.describe_shallow(*fd);
            amqp |= a;
            parts.push(format!("{fd}={d}"));
        }
        let more = fds.len().saturating_sub(MAX_LISTED_FDS);
        let mut s = format!("watching {} fds [{}", fds.len(), parts.join(", "));
        if more > 0 {
            let _ = write!(s, ", +{more}");
        }
        s.push(']');
        if amqp {
            s.push_str(", includes the AMQP socket");
        }
        (s, amqp)
    }

    /// As `describe`, without looking into nested epoll sets.
    fn describe_shallow(&mut self, fd: i64) -> (String, bool) {
        let pid = self.pid;
        if let Ok(l) = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) {
            if l.to_string_lossy() == "anon_inode:[eventpoll]" {
                return (String::from("epoll"), false);
            }
        }
        self.describe(fd)
    }

    fn timespec(&mut self, addr: u64) -> Option<String> {
        let b = self.read_mem(addr, 16)?;
        let s = i64::from_ne_bytes(b.get(0..8)?.try_into().ok()?);
        let ns = i64::from_ne_bytes(b.get(8..16)?.try_into().ok()?);
        #[allow(clippy::cast_precision_loss)]
        Some(format!("{:.3} s", s as f64 + ns as f64 / 1e9))
    }

    fn poll_fds(&mut self, addr: u64, nfds: u64) -> Option<Vec<i64>> {
        let n = usize::try_from(nfds.min(64)).ok()?;
        let b = self.read_mem(addr, n * 8)?;
        Some(
            b.chunks_exact(8)
                .filter_map(|c| Some(i64::from(i32::from_ne_bytes(c.get(0..4)?.try_into().ok()?))))
                .filter(|fd| *fd >= 0)
                .collect(),
        )
    }

    fn select_fds(&mut self, nfds: u64, readfds: u64) -> Option<Vec<i64>> {
        let n = nfds.min(1024);
        let bytes = usize::try_from(n.div_ceil(64) * 8).ok()?;
        let b = self.read_mem(readfds, bytes)?;
        let mut out = Vec::new();
        for (i, byte) in b.iter().enumerate() {
            for bit in 0..8 {
                let fd = i * 8 + bit;
                if byte & (1 << bit) != 0 && (fd as u64) < n {
                    out.push(i64::try_from(fd).unwrap_or(0));
                }
            }
        }
        Some(out)
    }

    /// Describes one call: its name and what it waits on.
    fn syscall(&mut self, nr: i64, args: [u64; 6]) -> Syscall {
        let name = syscall_name(nr);
        let label = name.map_or_else(|| format!("syscall {nr}"), str::to_owned);
        let kind = name.map_or(WaitKind::Other, wait_kind);
        #[allow(clippy::cast_possible_wrap)]
        let fd0 = args[0] as i64;
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        let ms = |v: u64| {
            let v = v as i32;
            if v < 0 {
                String::from("no timeout")
            } else {
                format!("timeout {:.3} s", f64::from(v) / 1000.0)
            }
        };
        let (what, on_amqp) = match (name.unwrap_or(""), kind) {
            ("epoll_wait" | "epoll_pwait" | "epoll_pwait2", _) => {
                let (d, a) = self.describe(fd0);
                let t = if name == Some("epoll_pwait2") {
                    self.timespec(args[3])
                        .map_or_else(|| String::from("no timeout"), |t| format!("timeout {t}"))
                } else {
                    ms(args[3])
                };
                (format!("{label} on {d}, {t}"), a)
            }
            ("poll" | "ppoll", _) => {
                let t = if name == Some("poll") {
                    ms(args[2])
                } else {
                    self.timespec(args[2])
                        .map_or_else(|| String::from("no timeout"), |t| format!("timeout {t}"))
                };
                match self.poll_fds(args[0], args[1]) {
                    Some(fds) => {
                        let (d, a) = self.set_text(&fds);
                        (format!("{label} {d}, {t}"), a)
                    }
                    None => (format!("{label} on {} fds, {t}", args[1]), false),
                }
            }
            ("select" | "pselect6", _) => match self.select_fds(args[0], args[1]) {
                Some(fds) => {
                    let (d, a) = self.set_text(&fds);
                    (format!("{label} {d}"), a)
                }
                None => (format!("{label} on fds below {}", args[0]), false),
            },
            ("nanosleep", _) => (
                format!(
                    "{label} for {}",
                    self.timespec(args[0]).unwrap_or_else(|| "?".into())
                ),
                false,
            ),
            ("clock_nanosleep", _) => {
                let t = self.timespec(args[2]).unwrap_or_else(|| "?".into());
                if args[1] & 1 == 1 {
                    (format!("{label} until an absolute time"), false)
                } else {
                    (format!("{label} for {t}"), false)
                }
            }
            ("futex", _) => {
                let op = args[1] & 0x7f;
                let verb = match op {
                    0 | 9 => "wait",
                    1 | 10 => "wake",
                    6 | 12 | 13 => "lock-pi",
                    11 => "wait-requeue-pi",
                    _ => "op",
                };
                let t = if matches!(op, 0 | 9 | 11) && args[3] != 0 {
                    self.timespec(args[3]).map(|t| {
                        if op == 0 {
                            format!(", timeout {t}")
                        } else {
                            String::from(", with a deadline")
                        }
                    })
                } else {
                    Some(String::from(", no timeout"))
                };
                (
                    format!("{label} {verb} at {:#x}{}", args[0], t.unwrap_or_default()),
                    false,
                )
            }
            (_, WaitKind::Fd) => {
                let (d, a) = self.describe(fd0);
                (format!("{label} on {d}"), a)
            }
            (_, WaitKind::Child) => (format!("{label} for a child process"), false),
            _ => (label, false),
        };
        Syscall {
            nr,
            name,
            args,
            what,
            on_amqp,
            kind,
        }
    }
}

/// Parses `/proc/.../syscall`: "running", "-1 sp pc", or "nr a0..a5 sp pc".
fn parse_syscall(text: &str) -> Option<(i64, [u64; 6])> {
    let mut it = text.split_whitespace();
    let nr = it.next()?;
    if nr == "running" {
        return Some((-2, [0; 6]));
    }
    let nr: i64 = nr.parse().ok()?;
    let mut args = [0u64; 6];
    if nr >= 0 {
        for a in &mut args {
            let s = it.next()?;
            *a = u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()?;
        }
    }
    Some((nr, args))
}

/// State and utime+stime from a `stat` line (the comm may hold spaces and
/// parentheses: the fields follow the last ')').
fn parse_stat(text: &str) -> Option<(String, char, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some((comm, state, ut.saturating_add(st)))
}

/// Samples every thread of `pid` (at most [`MAX_WAIT_THREADS`]) at `at`:
/// state, CPU, system call and what it waits on. `amqp_inodes` are the
/// process's AMQP socket inodes; a TCP socket with an `amqp_ports` end also
/// counts as AMQP.
#[must_use]
pub fn sample_threads(
    pid: i32,
    amqp_inodes: &[u64],
    amqp_ports: &[u16],
    at: Timestamp,
) -> ThreadsSample {
    let mut out = ThreadsSample {
        at,
        gone: false,
        tracer: None,
        threads: Vec::new(),
        threads_skipped: 0,
        unreadable: None,
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
    let Ok(status) = status else {
        out.gone = true;
        return out;
    };
    out.tracer = status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok());
    let mut tids: Vec<i32> = match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(d) => d
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => {
            out.gone = true;
            return out;
        }
    };
    tids.sort_unstable();
    // The main thread first: it usually runs the event loop.
    if let Some(i) = tids.iter().position(|t| *t == pid) {
        tids[..=i].rotate_right(1);
    }
    out.threads_skipped = tids.len().saturating_sub(MAX_WAIT_THREADS);
    tids.truncate(MAX_WAIT_THREADS);
    let mut fds = FdResolver {
        pid,
        amqp_inodes: amqp_inodes.to_vec(),
        amqp_ports: amqp_ports.to_vec(),
        tcp: None,
        unix: None,
        mem: None,
    };
    for tid in tids {
        let dir = format!("/proc/{pid}/task/{tid}");
        let Some((name, state, cpu_ticks)) = std::fs::read_to_string(format!("{dir}/stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        else {
            continue;
        };
        let syscall = match std::fs::read_to_string(format!("{dir}/syscall")) {
            Ok(t) => match parse_syscall(&t) {
                Some((-2, _)) => SyscallState::Running,
                Some((nr, _)) if nr < 0 => SyscallState::NotInSyscall,
                Some((nr, args)) => SyscallState::In(fds.syscall(nr, args)),
                None => SyscallState::Unreadable(format!("unexpected content {:?}", t.trim())),
            },
            Err(e) => {
                let why = format!("{dir}/syscall: {}", io_why(&e));
                if out.unreadable.is_none() {
                    out.unreadable = Some(why.clone());
                }
                SyscallState::Unreadable(why)
            }
        };
        let wchan = std::fs::read_to_string(format!("{dir}/wchan"))
            .ok()
            .map(|w| w.trim().to_owned())
            .filter(|w| !w.is_empty() && w != "0");
        out.threads.push(ThreadWait {
            tid,
            name,
            state,
            cpu_ticks,
            syscall,
            wchan,
        });
    }
    out
}

/// Why a process left its heartbeats unsent, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiagnosisKind {
    /// Every thread asleep in a call that does not wait on the AMQP socket
    /// (accept on an HTTP listener, a read on a FIFO, a sleep): the event
    /// loop that would send heartbeats does not run.
    BlockedOutsideEventLoop,
    /// One thread ran (nearly) the whole silence: a long callback, a
    /// CPU-bound loop, a GIL hog.
    CpuBound,
    /// Stopped: SIGSTOP, job control, or a debugger (ptrace).
    Stopped,
    /// In uninterruptible sleep (D): disk, NFS.
    DiskWait,
    /// Waiting on a futex (a lock, condition or join).
    LockWait,
    /// Gone, or a zombie.
    Exited,
    /// The samples do not decide; `detail` says why.
    Unknown,
}

impl DiagnosisKind {
    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosisKind::BlockedOutsideEventLoop => "blocked-outside-event-loop",
            DiagnosisKind::CpuBound => "cpu-bound",
            DiagnosisKind::Stopped => "stopped",
            DiagnosisKind::DiskWait => "disk-wait",
            DiagnosisKind::LockWait => "lock-wait",
            DiagnosisKind::Exited => "exited",
            DiagnosisKind::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for DiagnosisKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A diagnosis: the kind, one sentence, and the lines it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    /// The kind.
    pub kind: DiagnosisKind,
    /// One sentence naming the thread, call and descriptor.
    pub detail: String,
    /// The facts behind it, one per line.
    pub evidence: Vec<String>,
}

/// One thread's CPU during a silence.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadCpu {
    /// Thread id.
    pub tid: i32,
    /// Thread name.
    pub name: String,
    /// CPU seconds (user + system).
    pub cpu_s: f64,
    /// Seconds on a CPU or waiting in a run queue for one, when the kernel
    /// keeps them (`schedstat`).
    pub demand_s: Option<f64>,
}

impl ThreadCpu {
    /// What the thread wanted: on a CPU or queued for one (on a busy host a
    /// spinning thread gets only part of a core).
    fn demand(&self) -> f64 {
        self.demand_s.unwrap_or(self.cpu_s).max(self.cpu_s)
    }
}

/// What the coarse 1 s samples said about the silence, for [`diagnose`].
#[derive(Debug, Clone, Default)]
pub struct CoarseFacts {
    /// One state letter per sample of the process.
    pub states: String,
    /// Wall seconds the CPU figures cover.
    pub sampled_s: Option<f64>,
    /// Per thread, CPU during the silence.
    pub thread_cpu: Vec<ThreadCpu>,
    /// Largest unread byte count in the AMQP socket during the silence.
    pub rx_queue_max: Option<u32>,
}

fn state_word(c: char) -> &'static str {
    match c {
        'R' => "running",
        'S' => "asleep",
        'D' => "in uninterruptible sleep",
        'T' => "stopped",
        't' => "stopped by a tracer",
        'Z' => "a zombie",
        'I' => "idle",
        _ => "in an unknown state",
    }
}

/// The call a thread was seen in most often over `deep`, with the count.
fn dominant<'a>(tid: i32, deep: &[&'a ThreadsSample]) -> Option<(&'a ThreadWait, usize, usize)> {
    let seen: Vec<&ThreadWait> = deep
        .iter()
        .filter_map(|s| s.threads.iter().find(|t| t.tid == tid))
        .collect();
    let key = |t: &ThreadWait| match &t.syscall {
        SyscallState::In(s) => s.what.clone(),
        SyscallState::Running => String::from("running"),
        SyscallState::NotInSyscall => String::from("not in a system call"),
        SyscallState::Unreadable(_) => String::from("unreadable"),
    };
    let mut best: Option<(&ThreadWait, usize)> = None;
    for t in &seen {
        let k = key(t);
        let n = seen.iter().filter(|u| key(u) == k).count();
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((t, n));
        }
    }
    best.map(|(t, n)| (t, n, seen.len()))
}

fn thread_line(t: &ThreadWait, n: usize, of: usize) -> String {
    let call = match &t.syscall {
        SyscallState::In(s) => format!("in {}", s.what),
        SyscallState::Running => String::from("on a CPU"),
        SyscallState::NotInSyscall => String::from("not in a system call"),
        SyscallState::Unreadable(why) => format!("system call unreadable ({why})"),
    };
    let wchan = t
        .wchan
        .as_ref()
        .map_or(String::new(), |w| format!(", kernel wchan {w}"));
    format!(
        "thread {} ({}) {} {call}{wchan}, in {n} of {of} samples",
        t.tid,
        t.name,
        state_word(t.state)
    )
}

/// Threads listed in an [`AtClose`] record.
pub const MAX_CLOSE_THREADS: usize = 16;

/// One thread when the gap closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadAtClose {
    /// Thread id.
    pub tid: i32,
    /// Thread name (`comm`).
    pub name: String,
    /// State letter (S, R, D, T, t, Z, ...).
    pub state: char,
    /// The system call it was in and what it waits on, "running", or why it
    /// could not be read; `None` when not in a system call.
    pub syscall: Option<String>,
    /// Kernel function it slept in (`wchan`).
    pub wchan: Option<String>,
}

/// What the threads of a process were doing when its silence ended: one
/// sample taken as the gap closed, kept apart from the samples of the
/// silence so it never changes the [`diagnose`] diagnosis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtClose {
    /// When (capture time).
    pub at: Timestamp,
    /// The process was gone.
    pub gone: bool,
    /// One sentence: the thread on the AMQP socket (else a running thread,
    /// else the main thread), its state and call, and the others' states.
    pub summary: String,
    /// The threads (at most [`MAX_CLOSE_THREADS`]).
    pub threads: Vec<ThreadAtClose>,
}

fn call_text(s: &SyscallState) -> Option<String> {
    match s {
        SyscallState::In(c) => Some(c.what.clone()),
        SyscallState::Running => Some(String::from("running")),
        SyscallState::NotInSyscall => None,
        SyscallState::Unreadable(why) => Some(format!("unreadable: {why}")),
    }
}

/// The at-close record of `pid` from a sample taken when its gap closed.
#[must_use]
pub fn at_close(pid: i32, s: &ThreadsSample) -> AtClose {
    let threads: Vec<ThreadAtClose> = s
        .threads
        .iter()
        .take(MAX_CLOSE_THREADS)
        .map(|t| ThreadAtClose {
            tid: t.tid,
            name: t.name.clone(),
            state: t.state,
            syscall: call_text(&t.syscall),
            wchan: t.wchan.clone(),
        })
        .collect();
    let gone = s.gone || s.threads.is_empty();
    let summary = if gone {
        format!("process {pid} was gone when the gap closed")
    } else if s.threads.iter().all(|t| t.state == 'Z' || t.state == 'X') {
        format!("process {pid} was a zombie (it had exited) when the gap closed")
    } else {
        let on_amqp = |t: &&ThreadWait| matches!(&t.syscall, SyscallState::In(c) if c.on_amqp);
        let head = s
            .threads
            .iter()
            .find(on_amqp)
            .or_else(|| s.threads.iter().find(|t| t.state == 'R'))
            .unwrap_or(&s.threads[0]);
        let call = match &head.syscall {
            SyscallState::In(c) => format!(" in {}", c.what),
            SyscallState::Running => String::from(" on a CPU"),
            SyscallState::NotInSyscall => String::from(", not in a system call"),
            SyscallState::Unreadable(why) => format!(", system call unreadable ({why})"),
        };
        let mut line = format!(
            "thread {} ({}) {} (state {}){call}",
            head.tid,
            head.name,
            state_word(head.state),
            head.state
        );
        let others: Vec<char> = s
            .threads
            .iter()
            .filter(|t| t.tid != head.tid)
            .map(|t| t.state)
            .collect();
        if !others.is_empty() {
            let mut letters: Vec<char> = others.clone();
            letters.sort_unstable();
            letters.dedup();
            let counts: Vec<String> = letters
                .iter()
                .map(|c| format!("{} {c}", others.iter().filter(|o| *o == c).count()))
                .collect();
            let _ = write!(
                line,
                "; {} other thread{}: {}",
                others.len() + s.threads_skipped,
                if others.len() + s.threads_skipped == 1 {
                    ""
                } else {
                    "s"
                },
                counts.join(", ")
            );
            if s.threads_skipped > 0 {
                let _ = write!(line, ", {} not read", s.threads_skipped);
            }
        }
        line
    };
    AtClose {
        at: s.at,
        gone,
        summary,
        threads,
    }
}

/// Decides why the process was silent from the coarse facts and the
/// per-thread samples taken while the gap was open (`deep`, in time order).
#[must_use]
#[allow(clippy::too_many_lines)]
pub fn diagnose(pid: i32, coarse: &CoarseFacts, deep: &[&ThreadsSample]) -> Diagnosis {
    let n = coarse.states.chars().count();
    let count = |f: &dyn Fn(char) -> bool| coarse.states.chars().filter(|c| f(*c)).count();
    let half = |k: usize| n > 0 && k * 2 >= n;
    let mut evidence = Vec::new();
    if !coarse.states.is_empty() {
        evidence.push(format!("process states, one per second: {}", coarse.states));
    }
    if let Some(rx) = coarse.rx_queue_max.filter(|r| *r > 0) {
        evidence.push(format!(
            "the AMQP socket held up to {}: data arrived that the process did not read",
            crate::model::count(rx, "unread byte", "unread bytes")
        ));
    }
    let gone_deep = deep.iter().filter(|s| s.gone).count();
    if half(count(&|c| c == 'X' || c == 'Z')) || (!deep.is_empty() && gone_deep * 2 > deep.len()) {
        if gone_deep > 0 {
            evidence.push(format!(
                "the process was gone in {gone_deep} of {} per-thread samples during the silence",
                deep.len()
            ));
        }
        return Diagnosis {
            kind: DiagnosisKind::Exited,
            detail: format!("process {pid} exited (or became a zombie) during the silence"),
            evidence,
        };
    }
    let stopped = count(&|c| c == 'T' || c == 't');
    if half(stopped) {
        let tracer = deep.iter().rev().find_map(|s| s.tracer).filter(|t| *t > 0);
        let detail = match tracer {
            Some(t) => format!(
                "process {pid} was stopped under ptrace by pid {t} (a debugger or tracer) in {stopped} of {n} samples"
            ),
            None => format!(
                "process {pid} was stopped (SIGSTOP or job control) in {stopped} of {n} samples: no thread could run"
            ),
        };
        return Diagnosis {
            kind: DiagnosisKind::Stopped,
            detail,
            evidence,
        };
    }
    if let Some(wall) = coarse.sampled_s.filter(|w| *w >= 1.0) {
        if let Some(top) = coarse
            .thread_cpu
            .iter()
            .max_by(|a, b| a.demand().total_cmp(&b.demand()))
            .filter(|t| t.demand() >= CPU_BOUND_SHARE * wall)
        {
            for t in &coarse.thread_cpu {
                evidence.push(match t.demand_s {
                    Some(d) => format!(
                        "thread {} ({}) used {:.2} CPU s and wanted {d:.2} s (on a CPU or queued for one) of {wall:.2} s",
                        t.tid, t.name, t.cpu_s
                    ),
                    None => format!(
                        "thread {} ({}) used {:.2} CPU s of {wall:.2} s",
                        t.tid, t.name, t.cpu_s
                    ),
                });
            }
            let (tid, name, cpu) = (top.tid, &top.name, top.cpu_s);
            let d = top.demand();
            let queued = if d > cpu + 0.05 * wall {
                format!(" (on a CPU {cpu:.2} s, queued behind other work the rest)")
            } else {
                String::new()
            };
            return Diagnosis {
                kind: DiagnosisKind::CpuBound,
                detail: format!(
                    "thread {tid} ({name}) was running or runnable {d:.2} of {wall:.2} s ({:.0}%) of the silence{queued}: a long callback or \
                     CPU-bound loop (in Python: holding the GIL) kept the event loop from sending heartbeats",
                    d / wall * 100.0
                ),
                evidence,
            };
        }
    }
    if deep.is_empty() {
        return Diagnosis {
            kind: DiagnosisKind::Unknown,
            detail: String::from(
                "no per-thread sample fell inside the silence (the gap closed before it was sampled)",
            ),
            evidence,
        };
    }
    if let Some(why) = deep.iter().find_map(|s| s.unreadable.clone()) {
        evidence.push(format!("cannot read {why}"));
        if deep.iter().all(|s| {
            s.threads
                .iter()
                .all(|t| matches!(t.syscall, SyscallState::Unreadable(_)))
        }) {
            let d = if coarse.states.contains('D') {
                DiagnosisKind::DiskWait
            } else {
                DiagnosisKind::Unknown
            };
            return Diagnosis {
                kind: d,
                detail: format!(
                    "the threads' system calls could not be read ({why}); run hbscope as root or with CAP_SYS_PTRACE to name the call"
                ),
                evidence,
            };
        }
    }
    let last = deep[deep.len() - 1];
    let mut doms = Vec::new();
    for t in &last.threads {
        if let Some(d) = dominant(t.tid, deep) {
            evidence.push(thread_line(d.0, d.1, d.2));
            doms.push(d.0);
        }
    }
    if last.threads_skipped > 0 {
        evidence.push(format!(
            "{} not read (cap {MAX_WAIT_THREADS})",
            crate::model::count(last.threads_skipped as u64, "more thread", "more threads")
        ));
    }
    if let Some(d) = doms.iter().find(|t| t.state == 'D') {
        return Diagnosis {
            kind: DiagnosisKind::DiskWait,
            detail: format!(
                "thread {} ({}) was in uninterruptible sleep{}{}",
                d.tid,
                d.name,
                d.wchan
                    .as_ref()
                    .map_or(String::new(), |w| format!(" in kernel function {w}")),
                match &d.syscall {
                    SyscallState::In(s) => format!(", during {}", s.what),
                    _ => String::new(),
                }
            ),
            evidence,
        };
    }
    if let Some(r) = doms.iter().find(|t| t.state == 'R') {
        return Diagnosis {
            kind: DiagnosisKind::Unknown,
            detail: format!(
                "thread {} ({}) was running but used less than {:.0}% of the silence: neither blocked nor CPU-bound",
                r.tid,
                r.name,
                CPU_BOUND_SHARE * 100.0
            ),
            evidence,
        };
    }
    if let Some(a) = doms
        .iter()
        .find(|t| matches!(&t.syscall, SyscallState::In(s) if s.on_amqp))
    {
        let what = match &a.syscall {
            SyscallState::In(s) => s.what.clone(),
            _ => String::new(),
        };
        return Diagnosis {
            kind: DiagnosisKind::Unknown,
            detail: format!(
                "thread {} ({}) waits on the AMQP socket ({what}): the event loop is idle yet sent no heartbeat \
                 (its heartbeat timer may not be armed)",
                a.tid, a.name
            ),
            evidence,
        };
    }
    // The main thread usually runs the event loop; else the first thread.
    let principal = doms
        .iter()
        .find(|t| t.tid == pid)
        .or_else(|| doms.first())
        .copied();
    let Some(p) = principal else {
        return Diagnosis {
            kind: DiagnosisKind::Unknown,
            detail: String::from("no thread could be read"),
            evidence,
        };
    };
    let SyscallState::In(call) = &p.syscall else {
        return Diagnosis {
            kind: DiagnosisKind::Unknown,
            detail: format!(
                "thread {} ({}) was {} and not in a readable system call",
                p.tid,
                p.name,
                state_word(p.state)
            ),
            evidence,
        };
    };
    if call.kind == WaitKind::Futex {
        let in_futex = doms
            .iter()
            .filter(|t| matches!(&t.syscall, SyscallState::In(s) if s.kind == WaitKind::Futex))
            .count();
        return Diagnosis {
            kind: DiagnosisKind::LockWait,
            detail: format!(
                "thread {} ({}) waits on a lock ({}); {in_futex} of {} threads wait on futexes, none on the AMQP socket",
                p.tid,
                p.name,
                call.what,
                doms.len()
            ),
            evidence,
        };
    }
    Diagnosis {
        kind: DiagnosisKind::BlockedOutsideEventLoop,
        detail: format!(
            "thread {} ({}) is blocked in {}, outside the event loop: no thread waits on the AMQP socket, \
             so nothing sends the heartbeat that is due",
            p.tid, p.name, call.what
        ),
        evidence,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tcp_rows_parse_v4_and_v6() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:2246 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n";
        let mut m = HashMap::new();
        parse_tcp_table(text, &mut m);
        let r = m.get(&4242).unwrap();
        assert_eq!(fmt_addr(r.local), "127.0.0.1:8774");
        assert_eq!(r.state, 10);
        let v6 = "x\n   0: 0000000000000000FFFF00000100007F:1628 0000000000000000FFFF00000100007F:9C40 01 0:0 0:0 0 0 0 77 1\n";
        parse_tcp_table(v6, &mut m);
        let r = m.get(&77).unwrap();
        assert_eq!(fmt_addr(r.local), "127.0.0.1:5672");
        assert_eq!(fmt_addr(r.remote), "127.0.0.1:40000");
    }

    #[test]
    fn syscall_lines_parse() {
        assert_eq!(parse_syscall("running\n"), Some((-2, [0; 6])));
        assert_eq!(parse_syscall("-1 0x7ffd 0x7f00\n"), Some((-1, [0; 6])));
        let (nr, a) = parse_syscall("288 0x3 0x0 0x0 0x80800 0x0 0x0 0x7ffd 0x7f00").unwrap();
        assert_eq!((nr, a[0], a[3]), (288, 3, 0x80800));
        assert_eq!(parse_syscall("garbage"), None);
        assert_eq!(parse_syscall("1 0x1"), None);
    }

    #[test]
    fn stat_with_odd_comm_parses() {
        let s = "12 (a) b (c)) S 1 1 1 0 -1 0 0 0 0 0 150 50 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_stat(s), Some(("a) b (c)".to_owned(), 'S', 200)));
    }

    fn wait(tid: i32, state: char, what: &str, kind: WaitKind, on_amqp: bool) -> ThreadWait {
        ThreadWait {
            tid,
            name: format!("t{tid}"),
            state,
            cpu_ticks: 0,
            syscall: SyscallState::In(Syscall {
                nr: 0,
                name: None,
                args: [0; 6],
                what: what.to_owned(),
                on_amqp,
                kind,
            }),
            wchan: None,
        }
    }

    fn sample(threads: Vec<ThreadWait>) -> ThreadsSample {
        ThreadsSample {
            at: Timestamp(0),
            gone: false,
            tracer: Some(0),
            threads,
            threads_skipped: 0,
            unreadable: None,
        }
    }

    #[test]
    fn at_close_names_the_thread_on_the_amqp_socket() {
        let s = sample(vec![
            wait(
                10,
                'S',
                "accept4 on 127.0.0.1:8774 (listening)",
                WaitKind::Fd,
                false,
            ),
            wait(
                11,
                'R',
                "sendto on 127.0.0.1:4 -> 127.0.0.1:5672 (AMQP)",
                WaitKind::Fd,
                true,
            ),
            wait(
                12,
                'S',
                "futex wait at 0x1, no timeout",
                WaitKind::Futex,
                false,
            ),
        ]);
        let a = at_close(10, &s);
        assert!(!a.gone);
        assert_eq!(
            a.summary,
            "thread 11 (t11) running (state R) in sendto on 127.0.0.1:4 -> 127.0.0.1:5672 (AMQP); 2 other threads: 2 S"
        );
        assert_eq!(a.threads.len(), 3);
        assert_eq!(
            a.threads[0].syscall.as_deref(),
            Some("accept4 on 127.0.0.1:8774 (listening)")
        );
        let mut z = sample(vec![wait(10, 'Z', "", WaitKind::Other, false)]);
        assert!(at_close(10, &z).summary.contains("zombie"));
        z.gone = true;
        z.threads.clear();
        let g = at_close(10, &z);
        assert!(g.gone && g.summary == "process 10 was gone when the gap closed");
    }

    #[test]
    fn diagnoses_follow_the_samples() {
        let coarse = CoarseFacts {
            states: "SSSS".into(),
            sampled_s: Some(4.0),
            thread_cpu: vec![ThreadCpu {
                tid: 10,
                name: "main".into(),
                cpu_s: 0.01,
                demand_s: None,
            }],
            rx_queue_max: Some(8),
        };
        let accept = sample(vec![wait(
            10,
            'S',
            "accept4 on 127.0.0.1:8774 (listening)",
            WaitKind::Fd,
            false,
        )]);
        let d = diagnose(10, &coarse, &[&accept, &accept]);
        assert_eq!(d.kind, DiagnosisKind::BlockedOutsideEventLoop, "{d:?}");
        assert!(d.detail.contains("accept4 on 127.0.0.1:8774 (listening)"));
        let lock = sample(vec![
            wait(10, 'S', "futex wait at 0x1", WaitKind::Futex, false),
            wait(
                11,
                'S',
                "epoll_wait on epoll fd 3",
                WaitKind::Multiplex,
                false,
            ),
        ]);
        assert_eq!(
            diagnose(10, &coarse, &[&lock]).kind,
            DiagnosisKind::LockWait
        );
        let amqp = sample(vec![wait(10, 'S', "epoll_wait", WaitKind::Multiplex, true)]);
        assert_eq!(diagnose(10, &coarse, &[&amqp]).kind, DiagnosisKind::Unknown);
        let busy = CoarseFacts {
            states: "RRRR".into(),
            thread_cpu: vec![
                ThreadCpu {
                    tid: 10,
                    name: "main".into(),
                    cpu_s: 1.5,
                    demand_s: Some(3.9),
                },
                ThreadCpu {
                    tid: 11,
                    name: "hb".into(),
                    cpu_s: 0.0,
                    demand_s: None,
                },
            ],
            ..coarse.clone()
        };
        let d = diagnose(10, &busy, &[]);
        assert_eq!(d.kind, DiagnosisKind::CpuBound);
        assert!(d.detail.starts_with("thread 10 (main) was running or runnable 3.90 of 4.00 s (98%) of the silence (on a CPU 1.50 s"), "{d:?}");
        let stopped = CoarseFacts {
            states: "STTT".into(),
            ..coarse.clone()
        };
        assert_eq!(diagnose(10, &stopped, &[]).kind, DiagnosisKind::Stopped);
        let gone = CoarseFacts {
            states: "SXX".into(),
            ..coarse.clone()
        };
        assert_eq!(diagnose(10, &gone, &[]).kind, DiagnosisKind::Exited);
        let mut disk = wait(10, 'D', "read on /mnt/x", WaitKind::Fd, false);
        disk.wchan = Some("nfs_wait".into());
        let d = diagnose(10, &coarse, &[&sample(vec![disk])]);
        assert_eq!(d.kind, DiagnosisKind::DiskWait);
        assert!(d.detail.contains("nfs_wait"), "{d:?}");
        let d = diagnose(10, &coarse, &[]);
        assert_eq!(d.kind, DiagnosisKind::Unknown);
    }

    #[test]
    fn unreadable_calls_give_unknown_with_what_to_do() {
        let coarse = CoarseFacts {
            states: "SSS".into(),
            ..CoarseFacts::default()
        };
        let why = "/proc/9/task/9/syscall: permission denied (needs root or CAP_SYS_PTRACE)";
        let mut s = sample(vec![ThreadWait {
            syscall: SyscallState::Unreadable(why.into()),
            ..wait(9, 'S', "", WaitKind::Other, false)
        }]);
        s.unreadable = Some(why.into());
        let d = diagnose(9, &coarse, &[&s]);
        assert_eq!(d.kind, DiagnosisKind::Unknown);
        assert!(
            d.detail.contains("CAP_SYS_PTRACE") && d.detail.contains(why),
            "{d:?}"
        );
    }

    #[test]
    fn own_threads_are_sampled_with_their_calls() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut r, w) = std::io::pipe().unwrap();
        let h = std::thread::spawn(move || {
            let _ = listener.accept();
        });
        let h2 = std::thread::spawn(move || {
            let mut b = [0u8; 1];
            let _ = r.read(&mut b);
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        let pid = i32::try_from(std::process::id()).unwrap();
        let s = sample_threads(pid, &[], &[5672], Timestamp(0));
        assert!(!s.gone);
        assert_eq!(s.threads[0].tid, pid, "the main thread first");
        let whats: Vec<String> = s
            .threads
            .iter()
            .filter_map(|t| match &t.syscall {
                SyscallState::In(c) => Some(c.what.clone()),
                _ => None,
            })
            .collect();
        if s.unreadable.is_none() && cfg!(target_arch = "x86_64") {
            let want = format!("{addr} (listening)");
            assert!(
                whats
                    .iter()
                    .any(|w| w.starts_with("accept") && w.ends_with(&want)),
                "{whats:?}"
            );
            assert!(
                whats.iter().any(|w| w.starts_with("read on pipe")),
                "{whats:?}"
            );
        }
        drop(w);
        let _ = std::net::TcpStream::connect(addr);
        let _ = h.join();
        let _ = h2.join();
    }
}
