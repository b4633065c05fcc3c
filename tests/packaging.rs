//! Packaging: `hbscope completions` and `hbscope man` (hermetic), the .deb
//! that packaging/build-deb.sh builds (needs cargo-deb and dpkg-deb), and the
//! service's command run the way systemd runs it: as an unprivileged user with
//! only the unit's capabilities (needs root, RabbitMQ and pika). The last two
//! are `#[ignore]`d: run them with `--include-ignored` (CI does; .ci/setup
//! installs cargo-deb).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use common::live::{client_script, require_environment, Lines, BIN};

const SUBCOMMANDS: &[&str] = &[
    "replay",
    "live",
    "interfaces",
    "synth",
    "completions",
    "man",
];

/// The two ignored tests run one at a time: the release build of the .deb
/// would otherwise slow the live one past its waits on 2 cores.
static HEAVY: Mutex<()> = Mutex::new(());

/// The documented default metrics address of the service.
const METRICS_ADDR: &str = "127.0.0.1:19672";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hbscope-packaging-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn completions_name_every_subcommand_and_option() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run(&["completions", shell]);
        assert!(o.status.success(), "completions {shell}: {o:?}");
        let text = String::from_utf8(o.stdout).unwrap();
        for word in
            SUBCOMMANDS
                .iter()
                .chain(&["metrics-per-connection", "fail-on-gap", "interface"])
        {
            assert!(
                text.contains(word),
                "the {shell} completion does not mention {word} (fish spells options `-l NAME`)"
            );
        }
    }
    // Each shell's own marker: the script is for that shell.
    assert!(String::from_utf8(run(&["completions", "bash"]).stdout)
        .unwrap()
        .contains("complete -F _hbscope"));
    assert!(String::from_utf8(run(&["completions", "zsh"]).stdout)
        .unwrap()
        .starts_with("#compdef hbscope"));
    assert!(String::from_utf8(run(&["completions", "fish"]).stdout)
        .unwrap()
        .contains("complete -c hbscope"));
}

/// The bash script loads into bash and completes: subcommands after
/// `hbscope `, live's options after `hbscope live --rec` (zsh and fish are
/// checked by `zsh -n` / `fish --no-execute` where installed).
#[test]
fn completion_scripts_load_in_their_shells() {
    let dir = tmp("completions");
    for (shell, check) in [
        ("bash", &["-n"][..]),
        ("zsh", &["-n"][..]),
        ("fish", &["--no-execute"][..]),
    ] {
        let script = dir.join(format!("hbscope.{shell}"));
        std::fs::write(&script, run(&["completions", shell]).stdout).unwrap();
        let Ok(o) = Command::new(shell).args(check).arg(&script).output() else {
            eprintln!("{shell} is not installed: its completion script was not checked");
            assert_ne!(shell, "bash", "bash is needed for this test");
            continue;
        };
        assert!(o.status.success(), "{shell} {check:?}: {o:?}");
    }
    // Ask bash's completion function what it offers.
    let complete =
        |line: &str| -> Vec<String> {
            let words: Vec<&str> = line.split(' ').collect();
            let script =
                format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; \
             _hbscope hbscope '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            dir.join("hbscope.bash").display(),
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
            line.len(),
            words[words.len() - 1],
            words[words.len().saturating_sub(2)],
        );
            let o = Command::new("bash").args(["-c", &script]).output().unwrap();
            assert!(o.status.success(), "{o:?}");
            String::from_utf8(o.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        };
    let subs = complete("hbscope ");
    for sub in SUBCOMMANDS {
        assert!(subs.iter().any(|w| w == sub), "{sub} not offered: {subs:?}");
    }
    let opts = complete("hbscope live --record-");
    for opt in ["--record-gaps", "--record-before", "--record-on-open"] {
        assert!(opts.iter().any(|w| w == opt), "{opt} not offered: {opts:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_refuse_an_unknown_shell() {
    let o = run(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid value 'tcsh'"));
    assert!(o.stdout.is_empty());
}

#[test]
fn man_page_has_every_subcommand_and_its_options() {
    let o = run(&["man"]);
    assert!(o.status.success(), "{o:?}");
    let page = String::from_utf8(o.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.starts_with(".TH"),
        "{page:.200}"
    );
    assert!(page.contains(".TH hbscope 1"), "no title line");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH COMMANDS",
        ".SH \"EXIT STATUS\"",
        ".SH FILES",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!(".SS \"hbscope {sub}\"")),
            "no subsection for {sub}"
        );
    }
    // Options of the subcommands, not only of the top level (roff escapes '-').
    for opt in [
        "\\-\\-metrics",
        "\\-\\-fail\\-on\\-gap",
        "\\-\\-connections",
    ] {
        assert!(page.contains(opt), "no {opt}");
    }
    assert!(
        !page.contains("hbscope help"),
        "clap's help subcommand is not a command to document"
    );
    assert!(
        page.contains(METRICS_ADDR),
        "the FILES section names the service's command"
    );
}

#[test]
fn man_page_renders_without_warnings() {
    // groff ships with man-db on Debian; where it is absent there is nothing to run.
    if Command::new("groff").arg("--version").output().is_err() {
        eprintln!("groff is not installed: the man page was not rendered");
        return;
    }
    let dir = tmp("man");
    let file = dir.join("hbscope.1");
    std::fs::write(&file, run(&["man"]).stdout).unwrap();
    let o = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "", "groff warnings");
}

/// `Key=value` lines of the unit file (the last one wins, as in systemd).
fn unit_value(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
}

fn unit_file() -> String {
    std::fs::read_to_string(root().join("packaging/hbscope.service")).unwrap()
}

/// The arguments after `/usr/bin/hbscope` in the unit's ExecStart.
fn exec_args(unit: &str) -> Vec<String> {
    let exec = unit_value(unit, "ExecStart").expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/bin/hbscope"));
    words.map(str::to_owned).collect()
}

/// Where the package installs the example config, which the unit reads.
const CONFIG: &str = "/etc/hbscope/hbscope.toml";

fn config_file() -> String {
    std::fs::read_to_string(root().join("packaging/hbscope.toml")).unwrap()
}

#[test]
fn unit_runs_live_with_the_config_recorder_and_documented_metrics_address() {
    let unit = unit_file();
    let args = exec_args(&unit);
    assert_eq!(
        args,
        [
            "live",
            "--config",
            CONFIG,
            "--record-gaps",
            "/var/lib/hbscope",
            "--quiet"
        ],
        "docs/live.md describes this command"
    );
    let config = config_file();
    assert!(
        config.contains(&format!("\naddress = \"{METRICS_ADDR}\"\n")),
        "the example config serves metrics on {METRICS_ADDR}:\n{config}"
    );
    assert!(config.contains("\ninterface = \"any\"\n"), "{config}");
    // The recordings go where the sandbox lets the service write.
    assert_eq!(
        unit_value(&unit, "ReadWritePaths").as_deref(),
        Some("/var/lib/hbscope")
    );
    assert_eq!(
        unit_value(&unit, "StateDirectory").as_deref(),
        Some("hbscope")
    );
    // The binary accepts exactly these arguments (clap checks each value
    // before it reaches --help).
    let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let o = run(&with_help);
    assert!(
        o.status.success(),
        "the unit's arguments are refused: {o:?}"
    );
    let metrics_doc = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    assert!(
        metrics_doc.contains(METRICS_ADDR),
        "docs/metrics.md does not document the default {METRICS_ADDR}"
    );
    assert_eq!(unit_value(&unit, "User").as_deref(), Some("hbscope"));
    assert_eq!(
        unit_value(&unit, "AmbientCapabilities"),
        unit_value(&unit, "CapabilityBoundingSet"),
        "the service may hold no capability beyond those it is given"
    );
}

/// Capability names of the unit, as setpriv spells them (`+net_raw,...`).
fn setpriv_caps(unit: &str) -> String {
    unit_value(unit, "AmbientCapabilities")
        .expect("AmbientCapabilities")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `GET /metrics` on `addr`: the whole answer.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
#[ignore = "needs root, setpriv, RabbitMQ on 127.0.0.1:5672 and python3 with pika: run with --include-ignored (CI does)"]
fn service_command_works_as_nobody_with_only_the_units_capabilities() {
    let _one_at_a_time = HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    require_environment("packaging");
    let unit = unit_file();
    let caps = setpriv_caps(&unit);
    // The unit's command with the repository's example config, a recordings
    // directory of its own, an ephemeral metrics port (flags win over the
    // config, and a running service keeps its port), a report file and an end.
    let dir = tmp("service");
    let rec = dir.join("recordings");
    std::fs::create_dir(&rec).unwrap();
    std::os::unix::fs::chown(&rec, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let report = dir.join("report.json");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = exec_args(&unit);
    let at = |args: &[String], flag: &str| args.iter().position(|a| a == flag).unwrap() + 1;
    let c = at(&args, "--config");
    args[c] = root().join("packaging/hbscope.toml").display().to_string();
    let r = at(&args, "--record-gaps");
    args[r] = rec.display().to_string();
    args.extend([
        "--metrics".into(),
        addr.clone(),
        "-o".into(),
        report.display().to_string(),
        "--duration".into(),
        "20".into(),
    ]);
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--no-new-privs",
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps=-all,{caps}"),
        &format!("--bounding-set=-all,{caps}"),
        BIN,
    ])
    .args(&args);
    let mut live = Lines::spawn(&mut cmd);
    // --quiet: no events say when the endpoint is up.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never answered on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A root-owned client: attributing it needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.
    let mut client = Command::new("python3")
        .arg(client_script())
        .args(["serve", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let name = format!("hbscope-test:{}:", client.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let scraped = loop {
        let m = scrape(&addr);
        if m.contains("hbscope_connections{") && m.contains("client_name=\"hbscope-test\"") {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client never showed:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(scraped.contains("hbscope_build_info"), "{scraped}");
    let _ = client.kill();
    let _ = client.wait();
    // setpriv execs hbscope: the same pid. SIGTERM, as `systemctl stop` sends.
    common::live::signal(live.child.id(), "-TERM");
    let status = live.wait_exit(Duration::from_secs(15));
    live.drain(Duration::from_secs(2));
    assert!(status.success(), "{status:?}\n{}", live.dump());
    assert!(live.seen.is_empty(), "--quiet printed:\n{}", live.dump());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let conn = report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["client_properties"]["connection_name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&name))
        })
        .unwrap_or_else(|| panic!("no connection named {name} in the report"));
    assert_eq!(
        conn["client_process"]["pid"].as_u64(),
        Some(u64::from(client.id())),
        "the root-owned client was not attributed: {conn}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs cargo-deb and dpkg-deb: run with --include-ignored (CI does)"]
fn deb_package_has_the_binary_man_page_completions_and_unit() {
    let _one_at_a_time = HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let o = Command::new("bash")
        .arg(root().join("packaging/build-deb.sh"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "packaging/build-deb.sh failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8(o.stdout).unwrap();
    let deb = PathBuf::from(stdout.lines().last().expect("the .deb's path").trim());
    assert!(
        deb.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("hbscope_{}-1_", env!("CARGO_PKG_VERSION"))),
        "{}",
        deb.display()
    );

    let contents = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(contents.status.success(), "{contents:?}");
    let contents = String::from_utf8(contents.stdout).unwrap();
    for path in [
        "./usr/bin/hbscope",
        "./etc/hbscope/hbscope.toml",
        "./usr/share/doc/hbscope/examples/grafana-dashboard.json",
        "./usr/share/man/man1/hbscope.1.gz",
        "./usr/share/bash-completion/completions/hbscope",
        "./usr/share/zsh/vendor-completions/_hbscope",
        "./usr/share/fish/vendor_completions.d/hbscope.fish",
        "./usr/lib/systemd/system/hbscope.service",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} is not in the package:\n{contents}"
        );
    }
    assert!(
        contents
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("./usr/bin/hbscope")),
        "the binary is not executable:\n{contents}"
    );

    let info = Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(info.status.success(), "{info:?}");
    let info = String::from_utf8(info.stdout).unwrap();
    assert!(info.contains(" Package: hbscope\n"), "{info}");
    let depends = info
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Depends: "))
        .expect("a Depends line");
    for dep in ["libpcap0.8", "libc6", "adduser"] {
        assert!(depends.contains(dep), "Depends lacks {dep}: {depends}");
    }
    for script in ["postinst", "prerm", "postrm"] {
        assert!(
            info.contains(&format!(" {script} ")),
            "no {script}:\n{info}"
        );
    }

    let dir = tmp("deb");
    let control = dir.join("DEBIAN");
    let files = dir.join("root");
    for (flag, to) in [("-e", &control), ("-x", &files)] {
        let st = Command::new("dpkg-deb")
            .arg(flag)
            .arg(&deb)
            .arg(to)
            .status()
            .unwrap();
        assert!(st.success(), "dpkg-deb {flag}");
    }
    // The config is a conffile: an edited one survives upgrades.
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert!(
        conffiles.lines().any(|l| l == CONFIG),
        "conffiles: {conffiles}"
    );
    assert_eq!(
        std::fs::read_to_string(files.join(CONFIG.trim_start_matches('/'))).unwrap(),
        config_file()
    );
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system --group --quiet --no-create-home"));
    assert!(postinst.contains("deb-systemd-helper enable hbscope.service"));
    assert!(postinst.contains("deb-systemd-invoke $_dh_action hbscope.service"));
    let postrm = std::fs::read_to_string(control.join("postrm")).unwrap();
    assert!(postrm.contains("deb-systemd-helper purge hbscope.service"));
    for (name, text) in [("postinst", &postinst), ("postrm", &postrm)] {
        assert!(!text.contains("#DEBHELPER#"), "{name} kept the token");
        let st = Command::new("sh")
            .args(["-n", &control.join(name).display().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "{name} is not valid sh");
    }

    // The packaged binary runs, and ships without debug info.
    let bin = files.join("usr/bin/hbscope");
    let v = Command::new(&bin).arg("--version").output().unwrap();
    assert!(v.status.success(), "{v:?}");
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("hbscope {}", env!("CARGO_PKG_VERSION"))
    );
    let sections = elf_section_names(&std::fs::read(&bin).unwrap());
    assert!(sections.iter().any(|s| s == ".text"), "{sections:?}");
    assert!(
        !sections.iter().any(|s| s.starts_with(".debug_")),
        "the packaged binary carries debug info: {sections:?}"
    );
    // The man page and completions are the packaged binary's own.
    let man = Command::new("gzip")
        .arg("-dc")
        .arg(files.join("usr/share/man/man1/hbscope.1.gz"))
        .output()
        .unwrap();
    assert_eq!(
        man.stdout,
        Command::new(&bin).arg("man").output().unwrap().stdout
    );
    let fish =
        std::fs::read(files.join("usr/share/fish/vendor_completions.d/hbscope.fish")).unwrap();
    assert_eq!(
        fish,
        Command::new(&bin)
            .args(["completions", "fish"])
            .output()
            .unwrap()
            .stdout
    );
    let unit_path = files.join("usr/lib/systemd/system/hbscope.service");
    assert_eq!(std::fs::read_to_string(&unit_path).unwrap(), unit_file());

    verify_unit(&unit_path, &files);
}

/// Section names of a little-endian ELF64 file (the std library's own
/// symboliser holds the string ".debug_info", so searching the bytes would not do).
fn elf_section_names(elf: &[u8]) -> Vec<String> {
    let u16_at = |o: usize| usize::from(u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()));
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u64_at =
        |o: usize| usize::try_from(u64::from_le_bytes(elf[o..o + 8].try_into().unwrap())).unwrap();
    assert_eq!(
        &elf[..6],
        b"\x7fELF\x02\x01",
        "not a little-endian ELF64 file"
    );
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18);
    (0..shnum)
        .map(|i| {
            let start = strtab + u32_at(header(i));
            let len = elf[start..].iter().position(|&b| b == 0).unwrap();
            String::from_utf8_lossy(&elf[start..start + len]).into_owned()
        })
        .collect()
}

/// `systemd-analyze verify` on the packaged unit, its ExecStart pointed at the
/// extracted binary (verify checks it exists) and `man:` link at the extracted
/// man page. Works without systemd as PID 1. Warnings count as failures.
fn verify_unit(unit_path: &Path, files: &Path) {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "systemd-analyze is not installed (Debian package `systemd`): the unit was NOT verified"
        );
        return;
    }
    let dir = unit_path.parent().unwrap().parent().unwrap().join("verify");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("hbscope.service");
    let unit = std::fs::read_to_string(unit_path).unwrap().replace(
        "/usr/bin/hbscope",
        &files.join("usr/bin/hbscope").display().to_string(),
    );
    std::fs::write(&copy, unit).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .env("MANPATH", files.join("usr/share/man"))
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty() && o.stdout.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
