//! `hbscope completions SHELL` and `hbscope man`: shell completion scripts
//! and the manual page, made from the clap types in [`super`], so they never
//! drift from the real command line. The only module that uses
//! `clap_complete` and `clap_mangen`. packaging/build-deb.sh puts their output
//! into the .deb.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// The completion script for `shell`, for a binary called `hbscope`.
#[must_use]
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "hbscope", &mut out);
    out
}

/// The manual page hbscope(1) in roff: the top-level synopsis and description,
/// each subcommand with its synopsis and options (one page, not one per
/// subcommand, so `man hbscope` shows everything), then exit status, files
/// and where the longer documentation is.
///
/// # Errors
/// Only if clap_mangen fails to render into memory.
pub fn man() -> std::io::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    cmd.build();
    let page = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    out.extend_from_slice(b".SH COMMANDS\n");
    // `help` is clap's own and says nothing a reader of the page needs.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        out.extend_from_slice(format!(".SS \"{}\"\n", roff_text(name)).as_bytes());
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            out.extend_from_slice(roff_text(&about.to_string()).as_bytes());
            out.extend_from_slice(b"\n.PP\n");
        }
        let sub_page = clap_mangen::Man::new(sub.clone());
        let mut part = Vec::new();
        sub_page.render_synopsis_section(&mut part)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            sub_page.render_options_section(&mut part)?;
        }
        // The sections become part of this subcommand's subsection.
        for line in String::from_utf8_lossy(&part).lines() {
            if !line.starts_with(".SH ") {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
        }
    }
    out.extend_from_slice(EXTRA_SECTIONS.as_bytes());
    page.render_version_section(&mut out)?;
    Ok(out)
}

/// Sections clap does not know about.
const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
0
analysed (live: the capture ran, however it was stopped)
.TP
1
the report could not be written (a full disk, or a reader that closed the pipe)
.TP
2
unusable input, a bad option, or no capture privileges
.TP
3
\fBreplay \-\-fail\-on\-gap\fR and a gap was flagged
.TP
4
\fBlive\fR: the report was written, but the capture was incomplete (it failed after it
started, or the kernel dropped packets)
.SH PRIVILEGES
\fBhbscope live\fR needs CAP_NET_RAW and CAP_NET_ADMIN (or root) to capture, and
CAP_SYS_PTRACE with CAP_DAC_READ_SEARCH to attribute sockets to other users' processes.
The packaged service runs as the system user \fBhbscope\fR with exactly these capabilities.
.SH FILES
.TP
/usr/lib/systemd/system/hbscope.service
the packaged service: \fBhbscope live \-\-config /etc/hbscope/hbscope.toml \-\-record\-gaps /var/lib/hbscope \-\-quiet\fR
.TP
/etc/hbscope/hbscope.toml
the service's settings (read only through \fB\-\-config\fR): interface \fBany\fR, metrics on 127.0.0.1:19672, the recording caps
.TP
/var/lib/hbscope
the service's state directory (the only place it may write): the flight recorder's \fBhbscope\-gap\-*.pcapng\fR files
.SH "SEE ALSO"
\fBtcpdump\fR(8), \fBpcap\-filter\fR(7), \fBsystemctl\fR(1), \fBjournalctl\fR(1).
The documentation in the source tree: README.md, docs/live.md, docs/metrics.md,
docs/report\-schema.md.
"#;

/// Text for a roff line: backslashes and hyphens escaped, and a leading
/// `.` or `'` kept from being read as a request.
fn roff_text(s: &str) -> String {
    let escaped = s.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Writes generated text to stdout at once: 0 when written, 1 (with one line
/// on stderr) when it could not be, e.g. because the reader closed the pipe.
pub fn print(text: std::io::Result<Vec<u8>>) -> ExitCode {
    let written = text.and_then(|t| {
        let mut out = std::io::stdout().lock();
        out.write_all(&t)?;
        out.flush()
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hbscope: could not write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_text_escapes_what_roff_would_read() {
        assert_eq!(roff_text("a-b"), "a\\-b");
        assert_eq!(roff_text(".x"), "\\&.x");
        assert_eq!(roff_text("'x"), "\\&'x");
        assert_eq!(roff_text("a\\b"), "a\\eb");
    }
}
