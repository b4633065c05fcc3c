//! Gap diagnoses (`process.diagnosis`) from real processes against the real
//! RabbitMQ on 127.0.0.1:5672, read from `hbscope live -i lo --format json`.
//!
//! - a pika client spinning the CPU in a consumer callback: `cpu-bound`,
//!   naming the thread, and with `--py-spy` its Python stacks show the
//!   callback;
//! - a pika client whose main thread waits for a lock another thread holds
//!   while sleeping: `lock-wait`;
//! - a pika client blocked reading a FIFO nobody writes:
//!   `blocked-outside-event-loop`, naming the FIFO; the `--write` pcapng of
//!   that capture, replayed from a copy, shows the same owners and gap
//!   process (diagnosis included);
//! - the founding case: a real Apache httpd (Debian apache2, MPM prefork,
//!   mod_wsgi embedded) serving a WSGI app that calls
//!   `eventlet.monkey_patch()` and casts through oslo.messaging with a 4 s
//!   heartbeat (tests/clients/apache_wsgi.sh, nova_wsgi.py): the gap is
//!   `blocked-outside-event-loop` naming accept on the HTTP listener; with
//!   `heartbeat_in_pthread = True` there is no gap.
//!
//! - a pika client SIGKILLed while its silence is open, its socket kept
//!   open by a child it forked: `exited`, and the sample taken when the
//!   broker's cut closes the gap finds the process gone.
//!
//! - the broker side: a throwaway RabbitMQ node the test starts on its own
//!   ports and directories, its `beam.smp` SIGSTOPped under a pika client
//!   (heartbeat 2): a `broker-stall` diagnosed `stopped`, naming beam.smp;
//!
//! The SIGSTOP (`stopped`) and sleep cases are in tests/live_rabbitmq.rs.
//!
//! Needs root, the broker, python3 with pika, py-spy (`pip install py-spy`), and for the Apache cases
//! `apt-get install apache2 libapache2-mod-wsgi-py3 python3-oslo.messaging
//! python3-eventlet`; the tests fail and say what is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::live::{client_script, require_environment, signal, Lines, BIN};

fn start_capture(secs: u32, extra: &[&str]) -> Lines {
    let mut cap = Lines::spawn(
        Command::new(BIN)
            .args([
                "live",
                "-i",
                "lo",
                "--format",
                "json",
                "--duration",
                &secs.to_string(),
            ])
            .args(extra),
    );
    cap.wait_for("\"capture-started\"", Duration::from_secs(10));
    cap
}

fn stop_capture(cap: &mut Lines) -> Vec<Value> {
    signal(cap.child.id(), "-INT");
    cap.drain(Duration::from_secs(15));
    let st = cap.wait_exit(Duration::from_secs(5));
    assert!(
        st.success(),
        "hbscope live exited with {st}:\n{}",
        cap.dump()
    );
    let all: Vec<Value> = cap
        .seen
        .iter()
        .map(|(_, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(
        all.last().map(|r| r["schema_version"].clone()),
        Some(Value::from(1)),
        "the last line must be the report:\n{}",
        cap.dump()
    );
    all
}

fn start_client(mode: &str, secs: &str, env: &[(&str, &str)]) -> (Lines, u32) {
    let mut cmd = Command::new("python3");
    cmd.arg(client_script()).args([mode, "2", secs]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut client = Lines::spawn(&mut cmd);
    let ready = client.wait_for("ready", Duration::from_secs(15));
    let pid: u32 = ready.split_whitespace().nth(1).unwrap().parse().unwrap();
    (client, pid)
}

/// The client endpoint of the connection whose client socket `pid` owns.
fn client_of_pid(events: &[Value], pid: u32) -> String {
    events
        .iter()
        .find(|e| e["event"] == "connection-seen" && e["client_process"]["pid"] == pid)
        .and_then(|e| e["client"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no connection-seen event with client_process.pid {pid}"))
}

fn client_gap<'a>(events: &'a [Value], kind: &str, client: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| {
            e["event"] == kind
                && e["client"] == client
                && e["gap"]["direction"] == "client-to-broker"
        })
        .map(|e| &e["gap"])
}

fn dump(events: &[Value]) -> String {
    events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[ignore = "needs root, RabbitMQ on 127.0.0.1:5672 and python3 with pika: run with --include-ignored (CI does)"]
fn client_spinning_in_a_callback_is_cpu_bound_naming_the_thread() {
    require_environment("live_diagnosis");
    let py_spy = Command::new("py-spy")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(py_spy, "py-spy is needed on PATH: `pip install py-spy`");
    let mut cap = start_capture(60, &["--py-spy"]);
    let (mut client, pid) = start_client("spin", "9", &[]);
    client.wait_for("spun", Duration::from_secs(20));
    client.wait_exit(Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    let events = stop_capture(&mut cap);
    let me = client_of_pid(&events, pid);
    for kind in ["gap-opened", "gap-closed"] {
        let g = client_gap(&events, kind, &me)
            .unwrap_or_else(|| panic!("no {kind} for {me}:\n{}", dump(&events)));
        let d = &g["process"]["diagnosis"];
        assert_eq!(d["kind"], "cpu-bound", "{kind}: {g}");
        let detail = d["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("thread {pid} (python")),
            "{kind} must name the spinning thread {pid}: {detail}"
        );
    }
    // --py-spy: the stacks taken when the gap opened show the callback.
    let g = client_gap(&events, "gap-closed", &me).unwrap();
    let dump = g["process"]["py_spy"].as_str().unwrap_or_default();
    assert!(
        dump.starts_with("Python v") && dump.contains("on_message (hb_client.py"),
        "py-spy dump must show the spinning callback: {g}"
    );
}

#[test]
#[ignore = "needs root, RabbitMQ on 127.0.0.1:5672 and python3 with pika: run with --include-ignored (CI does)"]
fn client_reading_a_fifo_is_blocked_outside_the_event_loop_naming_the_fifo_and_the_pcapng_keeps_it()
{
    require_environment("live_diagnosis");
    let dir = std::env::temp_dir().join(format!("hbscope-diag-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("nobody-writes.fifo");
    let _ = std::fs::remove_file(&fifo);
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success(), "mkfifo {}", fifo.display());
    let pcapng = dir.join("fifo.pcapng");
    let _ = std::fs::remove_file(&pcapng);
    let mut cap = start_capture(60, &["--write", pcapng.to_str().unwrap()]);
    let (mut client, pid) = start_client("fifo", "0", &[("HBSCOPE_FIFO", fifo.to_str().unwrap())]);
    client.wait_for("reading the fifo", Duration::from_secs(5));
    // Past the 2 s limit, and past the broker's cut (2-3 x 2 s).
    std::thread::sleep(Duration::from_secs(8));
    let events = stop_capture(&mut cap);
    drop(client);
    let _ = std::fs::remove_file(&fifo);
    let me = client_of_pid(&events, pid);
    let want = format!("read on FIFO {}", fifo.display());
    for kind in ["gap-opened", "gap-closed"] {
        let g = client_gap(&events, kind, &me)
            .unwrap_or_else(|| panic!("no {kind} for {me}:\n{}", dump(&events)));
        let d = &g["process"]["diagnosis"];
        assert_eq!(d["kind"], "blocked-outside-event-loop", "{kind}: {g}");
        let detail = d["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("thread {pid} (")) && detail.contains(&want),
            "{kind} must name thread {pid} and {want}: {detail}"
        );
        let t = &g["process"]["threads"][0];
        assert_eq!(t["tid"], pid, "{g}");
        assert_eq!(t["syscall"], want.as_str(), "{g}");
    }

    // The pcapng carries the process facts: a replay of a copy of it (all
    // another machine has) shows the same owners and the same gap process.
    let elsewhere = dir.join("copied-elsewhere.pcapng");
    std::fs::copy(&pcapng, &elsewhere).unwrap();
    let live_report = events.last().unwrap();
    let live_conn = connection(live_report, &me);
    let out = Command::new(BIN)
        .args(["replay", "--format", "json"])
        .arg(&elsewhere)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let conn = connection(&replayed, &me);
    assert_eq!(
        conn["client_process"], live_conn["client_process"],
        "{conn}"
    );
    assert_eq!(conn["client_process"]["pid"], pid);
    let lg = &live_conn["gaps"][0];
    let rg = &conn["gaps"][0];
    assert_eq!(rg["start"], lg["start"]);
    assert_eq!(rg["process"], lg["process"], "replayed gap: {rg}");
    assert_eq!(
        rg["process"]["diagnosis"]["kind"],
        "blocked-outside-event-loop"
    );
    let text = Command::new(BIN)
        .args(["replay", "--format", "text"])
        .arg(&elsewhere)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "diagnosis blocked-outside-event-loop: thread {pid} ("
        )) && text.contains(&want),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn connection<'a>(report: &'a Value, client: &str) -> &'a Value {
    report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == client)
        .unwrap_or_else(|| panic!("{client} not in the report: {report}"))
}

#[test]
#[ignore = "needs root, RabbitMQ on 127.0.0.1:5672 and python3 with pika: run with --include-ignored (CI does)"]
fn client_waiting_for_a_lock_held_by_a_sleeping_thread_is_lock_wait() {
    require_environment("live_diagnosis");
    let mut cap = start_capture(60, &[]);
    let (mut client, pid) = start_client("lock", "0", &[]);
    client.wait_for("waiting for the lock", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(7));
    let events = stop_capture(&mut cap);
    drop(client);
    let me = client_of_pid(&events, pid);
    for kind in ["gap-opened", "gap-closed"] {
        let g = client_gap(&events, kind, &me)
            .unwrap_or_else(|| panic!("no {kind} for {me}:\n{}", dump(&events)));
        let d = &g["process"]["diagnosis"];
        assert_eq!(d["kind"], "lock-wait", "{kind}: {g}");
        let detail = d["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!(
                "thread {pid} (python3) waits on a lock (futex wait at 0x"
            )),
            "{kind}: {detail}"
        );
        // The holder is listed too, asleep outside the lock.
        let ev = d["evidence"].to_string();
        assert!(ev.contains("clock_nanosleep"), "{kind}: {ev}");
    }
}

/// Kills a process (SIGKILL) when dropped: no stray client after a failed
/// assertion.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
#[ignore = "needs root, RabbitMQ on 127.0.0.1:5672 and python3 with pika: run with --include-ignored (CI does)"]
fn client_killed_while_silent_is_exited() {
    require_environment("live_diagnosis");
    let mut cap = start_capture(60, &[]);
    // Heartbeat 4: flagged 4-5 s after the client's last byte, cut by the
    // broker 8-12 s after it, so several samples fall between the kill and
    // the cut even on a loaded host.
    let mut client = Lines::spawn(
        Command::new("python3")
            .arg(client_script())
            .args(["fork", "4", "0"]),
    );
    let ready = client.wait_for("ready", Duration::from_secs(15));
    let mut f = ready.split_whitespace().skip(1);
    let pid: u32 = f.next().unwrap().parse().unwrap();
    let port: u16 = f.next().unwrap().parse().unwrap();
    // Owners are looked up when the connection is announced: before the fork.
    cap.wait_for(&format!("hbscope-test:{pid}:fork"), Duration::from_secs(10));
    signal(pid, "-USR1");
    let forked: u32 = client
        .wait_for("forked", Duration::from_secs(10))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // The child holds the socket after its parent is gone: no FIN, no RST,
    // the silence goes on until the broker cuts the connection.
    let _child = KillOnDrop(forked);
    let me = format!("\"client\":\"127.0.0.1:{port}\"");
    while !cap
        .wait_for("\"gap-opened\"", Duration::from_secs(20))
        .contains(&me)
    {}
    client.child.kill().unwrap();
    client.child.wait().unwrap();
    // Past the broker's cut (8-12 s after the last byte).
    std::thread::sleep(Duration::from_secs(9));
    let events = stop_capture(&mut cap);
    let me = format!("127.0.0.1:{port}");
    let g = client_gap(&events, "gap-closed", &me)
        .unwrap_or_else(|| panic!("no gap-closed for {me}:\n{}", dump(&events)));
    let d = &g["process"]["diagnosis"];
    assert_eq!(d["kind"], "exited", "{g}");
    assert_eq!(
        d["detail"],
        format!("process {pid} exited (or became a zombie) during the silence"),
        "{g}"
    );
    assert!(
        d["evidence"]
            .to_string()
            .contains("the process was gone in "),
        "{g}"
    );
    assert_eq!(g["process"]["pid"], pid, "{g}");
    // Sampled again as the broker's cut closed the gap: gone.
    let a = &g["process"]["at_close"];
    assert_eq!(a["gone"], true, "{g}");
    assert_eq!(
        a["summary"],
        format!("process {pid} was gone when the gap closed"),
        "{g}"
    );
}

// ---- the broker side: a throwaway RabbitMQ node of the test's own

/// A second RabbitMQ node, started for one test on its own ports and
/// directories (never the shared broker on 5672), stopped when dropped.
struct TestBroker {
    child: std::process::Child,
    node: String,
    dir: PathBuf,
    port: u16,
    /// The node's beam.smp, while the test may have it stopped.
    beam: Option<u32>,
}

impl TestBroker {
    fn start() -> TestBroker {
        assert!(
            Path::new("/usr/sbin/rabbitmq-server").exists(),
            "rabbitmq-server is needed (apt-get install rabbitmq-server)"
        );
        let port = free_port();
        let dist = loop {
            let p = free_port();
            if p != port {
                break p;
            }
        };
        let node = format!("hbtest-{}-{port}@localhost", std::process::id());
        let dir = std::env::temp_dir().join(format!("hbscope-node-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("mnesia")).unwrap();
        std::fs::create_dir_all(dir.join("log")).unwrap();
        std::fs::write(dir.join("enabled_plugins"), "").unwrap();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
        )
        .unwrap();
        // The Debian wrapper runs the node as the rabbitmq user.
        let ok = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown -R rabbitmq:rabbitmq {}", dir.display());
        let out = std::fs::File::create(dir.join("out.txt")).unwrap();
        let child = Command::new("/usr/sbin/rabbitmq-server")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(std::process::Stdio::null())
            // Its own process group, so the guard can end all of it.
            .process_group(0)
            .spawn()
            .expect("cannot run rabbitmq-server");
        let b = TestBroker {
            child,
            node,
            dir,
            port,
            beam: None,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the test's RabbitMQ node {} did not listen on {port} within 90 s:\n{}",
                b.node,
                std::fs::read_to_string(b.dir.join("out.txt")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        b
    }

    /// Whether `pid` belongs to this node: a descendant of the
    /// rabbitmq-server the test started (the Debian wrapper `su`s to the
    /// rabbitmq user, which starts a process group of its own).
    fn owns(&self, pid: u32) -> bool {
        let mut p = pid;
        for _ in 0..16 {
            if p == self.child.id() {
                return true;
            }
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            match stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok())
            {
                Some(pp) if pp > 1 => p = pp,
                _ => return false,
            }
        }
        false
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(b) = self.beam {
            let _ = Command::new("kill")
                .args(["-CONT", &b.to_string()])
                .status();
        }
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // If it did not stop: its beam.smp (from its pid file, checked to be
        // this node's), then the wrapper.
        let beam = std::fs::read_to_string(self.dir.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|p| self.owns(*p));
        if let Some(b) = beam {
            let _ = Command::new("kill")
                .args(["-KILL", &b.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
#[ignore = "needs root, rabbitmq-server and python3 with pika: run with --include-ignored (CI does)"]
fn sigstopped_broker_node_is_a_broker_stall_diagnosed_stopped_naming_beam() {
    require_environment("live_diagnosis");
    let mut node = TestBroker::start();
    let port = node.port.to_string();
    let filter = format!("tcp port {port}");
    let mut cap = start_capture(90, &["--port", &port, "--filter", &filter]);
    let (mut client, pid) = start_client("serve", "0", &[("HBSCOPE_AMQP_PORT", &port)]);
    let seen = cap.wait_for(
        &format!("hbscope-test:{pid}:serve"),
        Duration::from_secs(10),
    );
    let seen: Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(seen["broker_process"]["command"], "beam.smp", "{seen}");
    let beam = u32::try_from(seen["broker_process"]["pid"].as_u64().unwrap()).unwrap();
    assert!(
        node.owns(beam),
        "beam.smp {beam} is not the test's own node: refusing to stop it"
    );
    std::thread::sleep(Duration::from_secs(2));
    node.beam = Some(beam);
    signal(beam, "-STOP");
    // Past the 2 s limit, short of pika's own cut (no byte for 7 s).
    std::thread::sleep(Duration::from_secs(6));
    signal(beam, "-CONT");
    node.beam = None;
    std::thread::sleep(Duration::from_secs(3));
    let events = stop_capture(&mut cap);
    drop(client.child.kill());
    let me = client_of_pid(&events, pid);
    let gap = |kind: &str| {
        events
            .iter()
            .find(|e| {
                e["event"] == kind
                    && e["client"] == me.as_str()
                    && e["gap"]["direction"] == "broker-to-client"
            })
            .map(|e| &e["gap"])
            .unwrap_or_else(|| panic!("no broker-to-client {kind} for {me}:\n{}", dump(&events)))
    };
    let opened = gap("gap-opened");
    assert_eq!(opened["process"]["pid"], beam, "{opened}");
    let g = gap("gap-closed");
    assert_eq!(g["cause"], "broker-stall", "{g}");
    let p = &g["process"];
    assert_eq!(p["side"], "broker", "{g}");
    assert_eq!(p["pid"], beam, "{g}");
    assert_eq!(p["command"], "beam.smp", "{g}");
    assert_eq!(p["diagnosis"]["kind"], "stopped", "{g}");
    assert!(
        p["diagnosis"]["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("process {beam} was stopped (SIGSTOP")),
        "{g}"
    );
    // When the gap closed the node ran again.
    let a = &p["at_close"];
    eprintln!("broker at close: {a}\ndiagnosis: {}", p["diagnosis"]);
    assert_eq!(a["gone"], false, "{g}");
    assert!(
        a["threads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] != "T"),
        "{g}"
    );
}

// ---- the founding case: real Apache httpd + mod_wsgi + eventlet + oslo.messaging

fn apache_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/apache_wsgi.sh")
}

fn require_apache() {
    for f in [
        "/usr/sbin/apache2",
        "/usr/lib/apache2/modules/mod_wsgi.so",
        "/usr/lib/apache2/modules/mod_mpm_prefork.so",
    ] {
        assert!(
            Path::new(f).exists(),
            "{f} is missing: apt-get install apache2 libapache2-mod-wsgi-py3"
        );
    }
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import eventlet, oslo_messaging"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "mod_wsgi's interpreter /usr/bin/python3 needs eventlet and oslo.messaging: \
         apt-get install python3-oslo.messaging python3-eventlet"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP GET; returns the Apache child's pid from the app's answer.
fn http_get(port: u16) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("Apache is not answering on 127.0.0.1:{port}: {e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let pid = body
        .split("pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok());
    pid.unwrap_or_else(|| panic!("unexpected answer from the WSGI app:\n{body}"))
}

struct Apache {
    lines: Lines,
    dir: PathBuf,
}

impl Apache {
    fn start(port: u16, pthread: bool) -> Apache {
        let dir =
            std::env::temp_dir().join(format!("hbscope-apache-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Its own process group: prefork's shutdown signals its whole group.
        let lines = Lines::spawn(
            Command::new(apache_script())
                .args([
                    dir.to_str().unwrap(),
                    &port.to_string(),
                    if pthread { "true" } else { "false" },
                ])
                .process_group(0),
        );
        Apache { lines, dir }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        // apache2 -DFOREGROUND stops its children on SIGTERM.
        signal(self.lines.child.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.lines.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs Apache, makes one request, stays idle for `idle`, and returns the
/// events, the child's pid, the HTTP port and Apache's error log.
fn founding_case(pthread: bool, idle: Duration) -> (Vec<Value>, u32, u16, String) {
    require_environment("live_diagnosis");
    require_apache();
    let port = free_port();
    let mut cap = start_capture(90, &[]);
    let apache = Apache::start(port, pthread);
    let child = http_get(port);
    std::thread::sleep(idle);
    let events = stop_capture(&mut cap);
    let log = apache.error_log();
    drop(apache);
    (events, child, port, log)
}

#[test]
#[ignore = "needs root, RabbitMQ, apache2 + libapache2-mod-wsgi-py3 + python3-oslo.messaging + python3-eventlet: run with --include-ignored"]
fn apache_mod_wsgi_eventlet_child_is_blocked_in_accept_on_its_listener() {
    let (events, child, port, log) = founding_case(false, Duration::from_secs(14));
    let me = events
        .iter()
        .find(|e| e["event"] == "connection-seen" && e["client_process"]["pid"] == child)
        .and_then(|e| e["client"].as_str())
        .unwrap_or_else(|| {
            panic!(
                "no connection of Apache child {child}:\n{}\nerror.log:\n{log}",
                dump(&events)
            )
        })
        .to_owned();
    let listener = format!("127.0.0.1:{port} (listening)");
    for kind in ["gap-opened", "gap-closed"] {
        let g = client_gap(&events, kind, &me)
            .unwrap_or_else(|| panic!("no {kind} for {me}:\n{}", dump(&events)));
        assert_eq!(g["cause"], "client-stall", "{g}");
        let d = &g["process"]["diagnosis"];
        assert_eq!(d["kind"], "blocked-outside-event-loop", "{kind}: {g}");
        let detail = d["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("thread {child} (apache2) is blocked in accept"))
                && detail.contains(&listener),
            "{kind} must name accept on {listener}: {detail}"
        );
    }
}

#[test]
#[ignore = "needs root, RabbitMQ, apache2 + libapache2-mod-wsgi-py3 + python3-oslo.messaging + python3-eventlet: run with --include-ignored"]
fn apache_mod_wsgi_with_heartbeat_in_pthread_has_no_gap() {
    let (events, child, _, log) = founding_case(true, Duration::from_secs(14));
    let me = events
        .iter()
        .find(|e| e["event"] == "connection-seen" && e["client_process"]["pid"] == child)
        .and_then(|e| e["client"].as_str())
        .unwrap_or_else(|| {
            panic!(
                "no connection of Apache child {child}:\n{}\nerror.log:\n{log}",
                dump(&events)
            )
        })
        .to_owned();
    assert!(
        events.iter().all(|e| !(e["client"] == me.as_str()
            && e["event"].as_str().is_some_and(|k| k.starts_with("gap-")))),
        "heartbeat_in_pthread must keep {me} free of gaps:\n{}",
        dump(&events)
    );
    let report = events.last().unwrap();
    let conn = report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == me.as_str())
        .unwrap_or_else(|| panic!("{me} not in the report"));
    assert_eq!(conn["gaps"].as_array().map(Vec::len), Some(0), "{conn}");
    assert!(
        conn["directions"]["client-to-broker"]["heartbeats"]
            .as_u64()
            .unwrap()
            >= 3,
        "the native heartbeat thread must have sent heartbeats while idle: {conn}"
    );
}
