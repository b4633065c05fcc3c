//! Live capture from a network interface through libpcap.
//!
//! The capture is opened with a full snapshot length and nanosecond
//! timestamps, *not* in immediate mode: on Linux, libpcap serves immediate
//! mode from a TPACKET_V2 ring of fixed slots sized for the largest packet
//! (64 KiB on loopback), so the 16 MiB buffer held only ~250 packets and a
//! burst of small AMQP segments overflowed it (benches/live_keepup.sh measured
//! 284,854 kernel drops in 20 s at 11% CPU). Without immediate mode libpcap
//! uses TPACKET_V3, which packs packets into blocks, and a block is handed
//! over when full or after the 100 ms timeout: the same flood gave 0 drops.
//! Events are therefore up to ~100 ms late, far below any heartbeat timeout.
//!
//! It is switched to non-blocking mode: on an idle Linux
//! interface a blocking read does not return at its timeout, so the caller
//! waits with [`LiveCapture::wait`] (poll(2) on libpcap's descriptor, bounded by
//! a timeout) and then drains what is ready with [`LiveCapture::next_packet`].
//! That keeps one thread in charge of packets, the clock ticks and signals.
//!
//! `--write` copies every packet into a pcap savefile (nanosecond magic)
//! that hbscope writes itself ([`super::savefile`]): created with mode 0600,
//! because AMQP handshakes carry credentials, never through a symbolic link,
//! and never over an existing file without `--force`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::savefile::Savefile;
use super::{timestamp, Batch, LinkType, PacketRecord, PacketSource, SourceError};

/// The snapshot length used for live capture: whole packets.
pub const FULL_SNAPLEN: i32 = 262_144;

/// Kernel buffer asked for, in bytes: room for bursts while the analysis runs.
pub const BUFFER_BYTES: i32 = 16 * 1024 * 1024;

/// What to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConfig {
    /// Interface name (`any` for all interfaces on Linux).
    pub interface: String,
    /// BPF filter expression.
    pub filter: String,
}

/// Why live capture could not start or continue. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LiveCaptureError {
    /// Capturing needs privileges the process does not have.
    #[error(
        "capturing on {interface} needs CAP_NET_RAW and CAP_NET_ADMIN (or root), which this process does not have \
         ({detail}); run hbscope as root, or grant it once with \
         `sudo setcap cap_net_raw,cap_net_admin=eip $(which hbscope)`"
    )]
    NoPermission {
        /// The interface.
        interface: String,
        /// libpcap's message.
        detail: String,
    },
    /// The interface does not exist.
    #[error("interface {interface} does not exist ({detail}); `hbscope interfaces` lists the ones you can capture on")]
    NoSuchInterface {
        /// The interface.
        interface: String,
        /// libpcap's message.
        detail: String,
    },
    /// The interface exists but is down.
    #[error("interface {interface} is down ({detail}); bring it up (`ip link set {interface} up`) or pick another")]
    InterfaceDown {
        /// The interface.
        interface: String,
        /// libpcap's message.
        detail: String,
    },
    /// The BPF filter does not compile.
    #[error("the capture filter `{filter}` is not valid BPF ({detail}); check it with `tcpdump -d '{filter}'`")]
    BadFilter {
        /// The filter.
        filter: String,
        /// libpcap's message.
        detail: String,
    },
    /// Any other failure to open the interface.
    #[error("cannot capture on {interface}: {detail}")]
    Open {
        /// The interface.
        interface: String,
        /// libpcap's message.
        detail: String,
    },
    /// The `--write` file cannot be created.
    #[error("{}: cannot write the capture file ({detail}); check the directory exists and is writable", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// Writing the `--write` file failed during the capture (a full disk):
    /// saving stopped, the capture goes on.
    #[error("{}: the captured packets are no longer saved ({detail}); free some space or give --write a path on another file system", path.display())]
    Save {
        /// The path.
        path: PathBuf,
        /// What failed, and what the file holds.
        detail: String,
    },
    /// Reading packets failed.
    #[error("live capture stopped: {detail}")]
    Read {
        /// libpcap's or the system's message.
        detail: String,
    },
    /// The interfaces could not be listed.
    #[error("cannot list capture interfaces ({detail}); run as root or with CAP_NET_RAW")]
    List {
        /// libpcap's message.
        detail: String,
    },
}

impl LiveCaptureError {
    /// The warning code the report records this error under when it ends a
    /// capture that had started: `write-error` for the `--write` file,
    /// `live-capture-error` otherwise.
    #[must_use]
    pub fn warning_code(&self) -> &'static str {
        match self {
            LiveCaptureError::Write { .. } | LiveCaptureError::Save { .. } => "write-error",
            _ => "live-capture-error",
        }
    }
}

/// A capturable interface, as libpcap lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InterfaceInfo {
    /// Name to pass to `--interface`.
    pub name: String,
    /// libpcap's description, if any.
    pub description: Option<String>,
    /// Addresses (IPv4/IPv6) on the interface.
    pub addresses: Vec<String>,
    /// Interface is up.
    pub up: bool,
    /// Interface is running.
    pub running: bool,
    /// Loopback interface.
    pub loopback: bool,
}

/// Lists the interfaces libpcap can capture on.
///
/// # Errors
/// [`LiveCaptureError::List`] when libpcap cannot enumerate devices.
pub fn list_interfaces() -> Result<Vec<InterfaceInfo>, LiveCaptureError> {
    let devices = pcap::Device::list().map_err(|e| LiveCaptureError::List {
        detail: e.to_string(),
    })?;
    Ok(devices
        .into_iter()
        .map(|d| InterfaceInfo {
            addresses: d.addresses.iter().map(|a| a.addr.to_string()).collect(),
            up: d.flags.is_up(),
            running: d.flags.is_running(),
            loopback: d.flags.is_loopback(),
            description: d.desc,
            name: d.name,
        })
        .collect())
}

/// Kernel counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Packets dropped by the kernel (buffer full) since the capture started.
    pub dropped: u64,
    /// Packets dropped by the interface or its driver since the capture started.
    pub if_dropped: u64,
}

/// An open live capture.
pub struct LiveCapture {
    cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    interface: String,
    savefile: Option<Savefile>,
    /// Last raw (32-bit, wrapping) kernel counters seen, and their 64-bit totals.
    last_raw: (u32, u32),
    totals: DropCounters,
    /// A read error met after packets of the same batch: returned next.
    pending: Option<LiveCaptureError>,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("interface", &self.interface)
            .field("link", &self.link)
            .field("totals", &self.totals)
            .finish_non_exhaustive()
    }
}

fn open_error(interface: &str, e: &pcap::Error) -> LiveCaptureError {
    let detail = e.to_string();
    let lower = detail.to_lowercase();
    let interface = interface.to_owned();
    if lower.contains("permission") || lower.contains("operation not permitted") {
        LiveCaptureError::NoPermission { interface, detail }
    } else if lower.contains("no such device") {
        LiveCaptureError::NoSuchInterface { interface, detail }
    } else if lower.contains("is not up") || lower.contains("network is down") {
        LiveCaptureError::InterfaceDown { interface, detail }
    } else {
        LiveCaptureError::Open { interface, detail }
    }
}

impl LiveCapture {
    /// Opens `config.interface` (not in immediate mode, see the module doc) with a full snapshot length,
    /// nanosecond timestamps and the BPF filter, in non-blocking mode.
    ///
    /// # Errors
    /// [`LiveCaptureError::NoPermission`], [`LiveCaptureError::NoSuchInterface`],
    /// [`LiveCaptureError::InterfaceDown`], [`LiveCaptureError::BadFilter`] or
    /// [`LiveCaptureError::Open`].
    pub fn open(config: &LiveConfig) -> Result<Self, LiveCaptureError> {
        let iface = config.interface.as_str();
        let cap = pcap::Capture::from_device(iface)
            .map_err(|e| open_error(iface, &e))?
            .immediate_mode(false)
            .snaplen(FULL_SNAPLEN)
            .buffer_size(BUFFER_BYTES)
            .precision(pcap::Precision::Nano)
            .promisc(false)
            .timeout(100)
            .open()
            .map_err(|e| open_error(iface, &e))?;
        let mut cap = cap.setnonblock().map_err(|e| open_error(iface, &e))?;
        cap.filter(&config.filter, true)
            .map_err(|e| LiveCaptureError::BadFilter {
                filter: config.filter.clone(),
                detail: e.to_string(),
            })?;
        let link = LinkType(cap.get_datalink().0);
        Ok(LiveCapture {
            cap,
            link,
            interface: config.interface.clone(),
            savefile: None,
            last_raw: (0, 0),
            totals: DropCounters::default(),
            pending: None,
        })
    }

    /// The link-layer type of the interface.
    #[must_use]
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// Copies every packet read from now on into a pcap file at `path`,
    /// created with mode 0600, never through a symbolic link; an existing
    /// file is refused unless `force` (see [`Savefile::create`]).
    ///
    /// # Errors
    /// [`LiveCaptureError::Write`] when the file is refused or cannot be created.
    pub fn write_to(&mut self, path: &Path, force: bool) -> Result<(), LiveCaptureError> {
        let snaplen = u32::try_from(FULL_SNAPLEN).unwrap_or(u32::MAX);
        let save = Savefile::create(path, self.link, snaplen, force).map_err(|detail| {
            LiveCaptureError::Write {
                path: path.to_path_buf(),
                detail,
            }
        })?;
        self.savefile = Some(save);
        Ok(())
    }

    /// Waits until packets are ready or `timeout` passed. Returns `true` when
    /// the descriptor is readable. A signal cuts the wait short (returns `false`).
    ///
    /// # Errors
    /// [`LiveCaptureError::Read`] when poll(2) fails for another reason, or
    /// reports an error on the socket with no packet left to read (the
    /// interface went down or was removed).
    pub fn wait(&self, timeout: Duration) -> Result<bool, LiveCaptureError> {
        let ts = rustix::event::Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [rustix::event::PollFd::new(
            &self.cap,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) => {
                use rustix::event::PollFlags;
                let rev = fds[0].revents();
                // The kernel flags a packet socket with an error when its
                // interface goes down or away; a non-blocking libpcap read
                // never looks, so the capture would sit idle (or spin) on a
                // dead interface. Packets still queued are read first.
                if !rev.contains(PollFlags::IN)
                    && rev.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL)
                {
                    return Err(LiveCaptureError::Read {
                        detail: format!(
                            "{}: the capture socket reported an error ({rev:?}): the interface went down or was removed",
                            self.interface
                        ),
                    });
                }
                Ok(n > 0)
            }
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(LiveCaptureError::Read {
                detail: format!("poll on the capture descriptor failed: {e}"),
            }),
        }
    }

    /// The next packet that is ready, or `Ok(None)` when none is (non-blocking).
    /// With `--write`, the packet is also appended to the savefile.
    ///
    /// # Errors
    /// [`LiveCaptureError::Read`] when libpcap reports an error (interface
    /// gone, capture broken).
    pub fn next_packet(&mut self) -> Result<Option<PacketRecord<'_>>, LiveCaptureError> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        match self.cap.next_packet() {
            Ok(packet) => {
                let header = *packet.header;
                let rec = PacketRecord {
                    ts: timestamp(&header),
                    caplen: header.caplen,
                    orig_len: header.len,
                    data: packet.data,
                };
                if let Some(save) = self.savefile.as_mut() {
                    save.write(&rec);
                }
                Ok(Some(rec))
            }
            Err(pcap::Error::TimeoutExpired | pcap::Error::NoMorePackets) => Ok(None),
            Err(e) => Err(LiveCaptureError::Read {
                detail: format!("reading from {}: {e}", self.interface),
            }),
        }
    }

    /// Kernel drop counters since the capture started (widened to 64 bits).
    ///
    /// # Errors
    /// [`LiveCaptureError::Read`] when libpcap cannot read its statistics.
    pub fn drops(&mut self) -> Result<DropCounters, LiveCaptureError> {
        let st = self.cap.stats().map_err(|e| LiveCaptureError::Read {
            detail: format!("reading capture statistics: {e}"),
        })?;
        // The kernel's counters are 32-bit and wrap.
        self.totals.dropped += u64::from(st.dropped.wrapping_sub(self.last_raw.0));
        self.totals.if_dropped += u64::from(st.if_dropped.wrapping_sub(self.last_raw.1));
        self.last_raw = (st.dropped, st.if_dropped);
        Ok(self.totals)
    }

    /// Flushes the savefile to disk (it stays valid after every flush).
    ///
    /// # Errors
    /// [`LiveCaptureError::Save`] when a write failed since the last flush
    /// (once: saving has then stopped).
    pub fn flush(&mut self) -> Result<(), LiveCaptureError> {
        if let Some(save) = self.savefile.as_mut() {
            save.flush().map_err(|e| LiveCaptureError::Save {
                path: save.path().to_path_buf(),
                detail: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Flushes and closes the savefile; returns its path when there was one
    /// and every packet was saved.
    ///
    /// # Errors
    /// [`LiveCaptureError::Save`] when the final flush fails.
    pub fn close(mut self) -> Result<Option<PathBuf>, LiveCaptureError> {
        self.close_savefile()
    }

    fn close_savefile(&mut self) -> Result<Option<PathBuf>, LiveCaptureError> {
        self.flush()?;
        Ok(self
            .savefile
            .take()
            .filter(Savefile::complete)
            .map(|save| save.path().to_path_buf()))
    }
}

impl PacketSource for LiveCapture {
    fn link_type(&self) -> LinkType {
        self.link
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool, SourceError> {
        Ok(LiveCapture::wait(self, timeout)?)
    }

    /// One packet at a time: libpcap reuses its buffer for the next one.
    fn next_batch(
        &mut self,
        max: usize,
        f: &mut dyn FnMut(&[PacketRecord<'_>]),
    ) -> Result<Batch, SourceError> {
        let mut n = 0;
        while n < max {
            match self.next_packet() {
                Ok(Some(rec)) => f(&[rec]),
                Ok(None) => break,
                // The packets before the error were handed over: they come
                // first, the error with the next call.
                Err(e) if n > 0 => {
                    self.pending = Some(e);
                    break;
                }
                Err(e) => return Err(e.into()),
            }
            n += 1;
        }
        Ok(if n == 0 {
            Batch::Idle
        } else {
            Batch::Packets(n)
        })
    }

    fn drops(&mut self) -> Option<u64> {
        LiveCapture::drops(self).ok().map(|d| d.dropped)
    }

    fn flush(&mut self) -> Result<(), SourceError> {
        Ok(LiveCapture::flush(self)?)
    }

    fn close_save(&mut self) -> Result<Option<PathBuf>, SourceError> {
        Ok(self.close_savefile()?)
    }

    fn annotate(&mut self, text: &str) -> bool {
        self.savefile.as_mut().is_some_and(|s| s.annotate(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_errors_are_classified() {
        let e = open_error(
            "lo",
            &pcap::Error::PcapError("socket: Operation not permitted".into()),
        );
        assert!(matches!(e, LiveCaptureError::NoPermission { .. }), "{e:?}");
        assert!(e
            .to_string()
            .contains("setcap cap_net_raw,cap_net_admin=eip"));
        let e = open_error(
            "nope0",
            &pcap::Error::PcapError("nope0: No such device exists".into()),
        );
        assert!(
            matches!(e, LiveCaptureError::NoSuchInterface { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("hbscope interfaces"));
    }
}
