//! Reads the real captures in `tests/data/` (see its README) through
//! `capture::FileSource` and `decode::decode`. Expected values come from
//! tshark on the same files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use hbscope::capture::{CaptureError, FileSource, LinkType};
use hbscope::decode::{decode, is_supported, DecodeError, Decoded};
use hbscope::model::{TcpFlags, Timestamp};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// What one packet of a fixture decoded to (owned, so it outlives the read).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    ts: Timestamp,
    caplen: u32,
    orig_len: u32,
    decoded: Result<Option<SeenTcp>, DecodeError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenTcp {
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    window_scale: Option<u8>,
    payload: Vec<u8>,
    payload_len: u32,
}

/// Reads a whole fixture: the packets, then how reading ended.
fn read_all(name: &str) -> (LinkType, Vec<Seen>, Result<(), CaptureError>) {
    let mut source = FileSource::open(&data(name)).unwrap();
    let link = source.link_type();
    let mut seen = Vec::new();
    let mut last_consumed = source.bytes_consumed();
    let end = loop {
        match source.next_packet() {
            Ok(Some(rec)) => {
                assert_eq!(rec.caplen as usize, rec.data.len());
                let decoded = decode(link, &rec).map(|d| match d {
                    Decoded::Tcp(t) => Some(SeenTcp {
                        src_port: t.src.port,
                        dst_port: t.dst.port,
                        seq: t.seq,
                        ack: t.ack,
                        flags: t.flags,
                        window: t.window,
                        window_scale: t.window_scale,
                        payload: t.payload.to_vec(),
                        payload_len: t.payload_len,
                    }),
                    Decoded::NotTcp | Decoded::Fragment(_) => None,
                });
                seen.push(Seen {
                    ts: rec.ts,
                    caplen: rec.caplen,
                    orig_len: rec.orig_len,
                    decoded,
                });
                let consumed = source.bytes_consumed();
                assert!(consumed > last_consumed, "progress must advance");
                last_consumed = consumed;
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // The source is exhausted after the end or an error.
    assert!(matches!(source.next_packet(), Ok(None)));
    (link, seen, end)
}

fn tcp(seen: &Seen) -> &SeenTcp {
    match &seen.decoded {
        Ok(Some(t)) => t,
        other => panic!("expected TCP, got {other:?}"),
    }
}

const FLAGS: [&str; 12] = [
    "S", "SA", "A", "PA", "A", "PA", "A", "PA", "A", "FA", "FA", "A",
];

fn flags(s: &str) -> TcpFlags {
    TcpFlags {
        syn: s.contains('S'),
        ack: s.contains('A'),
        fin: s.contains('F'),
        rst: s.contains('R'),
        psh: s.contains('P'),
    }
}

#[test]
fn ethernet_pcap_decodes_every_packet() {
    let (link, seen, end) = read_all("lo_en10mb.pcap");
    end.unwrap();
    assert_eq!(link, LinkType::ETHERNET);
    assert_eq!(link.name(), "EN10MB");
    assert!(is_supported(link));
    assert_eq!(seen.len(), 12);
    let lens: Vec<u32> = seen.iter().map(|s| tcp(s).payload_len).collect();
    assert_eq!(lens, [0, 0, 0, 8, 0, 12, 0, 8, 0, 0, 0, 0]);
    for (s, f) in seen.iter().zip(FLAGS) {
        assert_eq!(tcp(s).flags, flags(f), "{s:?}");
        assert_eq!(
            u32::try_from(tcp(s).payload.len()).unwrap(),
            tcp(s).payload_len
        );
        // Microsecond file: no sub-microsecond digits.
        assert_eq!(s.ts.as_nanos() % 1000, 0);
    }
    let syn = tcp(&seen[0]);
    assert_eq!((syn.src_port, syn.dst_port), (56030, 5679));
    assert_eq!(syn.seq, 4_092_790_167);
    assert_eq!(syn.window, 65495);
    assert_eq!(syn.window_scale, Some(10));
    let syn_ack = tcp(&seen[1]);
    assert_eq!((syn_ack.seq, syn_ack.ack), (1_004_092_757, 4_092_790_168));
    assert_eq!(syn_ack.window_scale, Some(10));
    assert_eq!(tcp(&seen[2]).window_scale, None);
    assert_eq!(tcp(&seen[3]).payload, b"AMQP\x00\x00\x09\x01");
    assert_eq!(
        seen[0].ts,
        Timestamp::from_parts(1_795_726_529, 732_122_000)
    );
}

#[test]
fn nanosecond_timestamps_survive_in_pcap_and_pcapng() {
    let (_, pcap, end) = read_all("lo_nano.pcap");
    end.unwrap();
    let (link, pcapng, end) = read_all("lo_nano.pcapng");
    end.unwrap();
    assert_eq!(link, LinkType::ETHERNET);
    assert_eq!(pcap.len(), 12);
    // Value from tshark: 1795726529.732124449.
    assert_eq!(
        pcap[0].ts,
        Timestamp::from_parts(1_795_726_529, 732_124_449)
    );
    assert_eq!(
        pcap[11].ts,
        Timestamp::from_parts(1_795_726_529, 833_442_514)
    );
    assert_eq!(pcap, pcapng, "pcapng copy must read back identically");
}

#[test]
fn file_size_and_progress_reach_the_end() {
    let path = data("lo_en10mb.pcap");
    let mut source = FileSource::open(&path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(source.file_size(), Some(size));
    assert_eq!(source.bytes_consumed(), 24);
    source.next_packet().unwrap().unwrap();
    assert_eq!(source.bytes_consumed(), 24 + 16 + 74);
    while source.next_packet().unwrap().is_some() {}
    assert_eq!(source.bytes_consumed(), size);
}

#[test]
fn linux_cooked_v2_any_interface() {
    let (link, seen, end) = read_all("any_sll2.pcap");
    end.unwrap();
    assert_eq!(link, LinkType::LINUX_SLL2);
    assert_eq!(link.name(), "LINUX_SLL2");
    let lens: Vec<u32> = seen.iter().map(|s| tcp(s).payload_len).collect();
    assert_eq!(lens, [0, 0, 0, 8, 8, 0, 0, 0, 0]);
    assert_eq!(tcp(&seen[0]).window_scale, Some(10));
    assert_eq!(tcp(&seen[3]).payload, b"AMQP\x00\x00\x09\x01");
}

#[test]
fn linux_cooked_v1() {
    let (link, seen, end) = read_all("any_sll.pcap");
    end.unwrap();
    assert_eq!(link, LinkType::LINUX_SLL);
    let lens: Vec<u32> = seen.iter().map(|s| tcp(s).payload_len).collect();
    assert_eq!(lens, [0, 0, 0, 8, 0, 12, 0, 8, 0, 0, 0, 0]);
    for (s, f) in seen.iter().zip(FLAGS) {
        assert_eq!(tcp(s).flags, flags(f));
    }
}

#[test]
fn snaplen_70_keeps_wire_lengths() {
    let (_, seen, end) = read_all("lo_snap70.pcap");
    end.unwrap();
    // SYN and SYN-ACK carry 20 bytes of options: 14 + 20 + 40 = 74 > 70. The
    // fixed header is enough; the window scale option was cut.
    for s in &seen[..2] {
        let t = tcp(s);
        assert!(t.flags.syn);
        assert_eq!((t.window_scale, t.payload_len), (None, 0));
    }
    let lens: Vec<u32> = seen.iter().map(|s| tcp(s).payload_len).collect();
    assert_eq!(lens, [0, 0, 0, 8, 0, 12, 0, 8, 0, 0, 0, 0]);
    let data_packet = &seen[5];
    assert_eq!((data_packet.caplen, data_packet.orig_len), (70, 78));
    assert_eq!(tcp(data_packet).payload_len, 12);
    assert_eq!(tcp(data_packet).payload.len(), 4);
    assert_eq!(tcp(&seen[3]).payload, b"AMQP");
}

#[test]
fn snaplen_60_cuts_every_tcp_header_but_its_fixed_part() {
    let (_, seen, end) = read_all("lo_snap60.pcap");
    end.unwrap();
    assert_eq!(seen.len(), 12);
    let whole = read_all("lo_en10mb.pcap").1;
    assert_eq!(whole.len(), 12);
    for (s, w) in seen.iter().zip(&whole) {
        assert_eq!(s.caplen, 58);
        // The 20 fixed bytes of the TCP header fit (14 + 20 + 20 = 54); its
        // options (40 bytes on SYN and SYN-ACK, 32 after) and payload do not.
        let (t, w) = (tcp(s), tcp(w));
        assert_eq!(
            (t.src_port, t.dst_port, t.seq, t.ack, t.flags, t.window),
            (w.src_port, w.dst_port, w.seq, w.ack, w.flags, w.window),
            "{s:?}"
        );
        assert_eq!(t.payload_len, w.payload_len, "from the IP total length");
        assert!(t.payload.is_empty());
        assert_eq!(t.window_scale, None);
    }
}

#[test]
fn mixed_link_types_declared_up_front_stop_before_any_packet() {
    let (_, seen, end) = read_all("mixed_linktypes_merged.pcapng");
    assert_eq!(seen.len(), 0);
    let err = end.unwrap_err();
    assert!(
        matches!(err, CaptureError::MixedLinkTypes { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("different link-layer types"), "{msg}");
    assert!(msg.contains("type 276"), "{msg}");
}

#[test]
fn mixed_link_types_in_a_later_section_stop_after_the_good_packets() {
    let (link, seen, end) = read_all("mixed_linktypes_sections.pcapng");
    assert_eq!(link, LinkType::ETHERNET);
    assert_eq!(seen.len(), 12);
    assert!(seen.iter().all(|s| s.decoded.as_ref().unwrap().is_some()));
    let err = end.unwrap_err();
    assert!(
        matches!(err, CaptureError::MixedLinkTypes { .. }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .contains("packets before this point were read"));
}

#[test]
fn file_cut_in_record_data_reports_truncated_after_good_packets() {
    let (_, seen, end) = read_all("truncated_data.pcap");
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.decoded.as_ref().unwrap().is_some()));
    let err = end.unwrap_err();
    assert!(matches!(err, CaptureError::Truncated { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("cut short"), "{msg}");
    assert!(msg.contains("66 captured bytes, only got 14"), "{msg}");
}

#[test]
fn file_cut_in_record_header_reports_truncated() {
    let (_, seen, end) = read_all("truncated_header.pcap");
    assert_eq!(seen.len(), 2);
    let err = end.unwrap_err();
    assert!(matches!(err, CaptureError::Truncated { .. }), "{err:?}");
}

#[test]
fn pcapng_cut_in_a_block_reports_truncated() {
    let (_, seen, end) = read_all("truncated.pcapng");
    assert_eq!(seen.len(), 5);
    let err = end.unwrap_err();
    assert!(matches!(err, CaptureError::Truncated { .. }), "{err:?}");
}

#[test]
fn file_cut_in_its_file_header_is_not_a_capture() {
    let err = FileSource::open(&data("truncated_global_header.pcap")).unwrap_err();
    assert!(matches!(err, CaptureError::NotACapture { .. }), "{err:?}");
    assert!(err.to_string().contains("file header"), "{err}");
}

#[test]
fn empty_file_says_so() {
    let err = FileSource::open(&data("empty.pcap")).unwrap_err();
    assert!(matches!(err, CaptureError::Empty { .. }), "{err:?}");
    assert!(
        err.to_string().contains("empty file, not a capture"),
        "{err}"
    );
}

#[test]
fn text_file_is_not_a_capture() {
    let err = FileSource::open(&data("not_a_capture.txt")).unwrap_err();
    assert!(matches!(err, CaptureError::NotACapture { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("not a pcap or pcapng file"), "{msg}");
    assert!(msg.contains("not_a_capture.txt"), "{msg}");
}

#[test]
fn gzip_file_is_named_as_such() {
    let path = std::env::temp_dir().join(format!("hbscope-test-{}.pcap.gz", std::process::id()));
    std::fs::write(&path, [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0]).unwrap();
    let err = FileSource::open(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(err.to_string().contains("gzip"), "{err}");
}

#[test]
fn missing_file_and_directory() {
    let err = FileSource::open(&data("no_such_file.pcap")).unwrap_err();
    assert!(matches!(err, CaptureError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("no such file"), "{err}");
    let err = FileSource::open(&data("")).unwrap_err();
    assert!(matches!(err, CaptureError::IsDirectory { .. }), "{err:?}");
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[cfg(unix)]
#[test]
fn non_utf8_path_is_refused_not_passed_to_libpcap() {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b"hbscope-\xff.pcap");
    let path = std::env::temp_dir().join(name);
    std::fs::copy(data("lo_en10mb.pcap"), &path).unwrap();
    let result = FileSource::open(&path);
    std::fs::remove_file(&path).unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, CaptureError::PathNotUtf8 { .. }), "{err:?}");
}

/// Runs in a child process whose stdin is a capture file (see
/// `stdin_is_read_for_dash`); does nothing when run directly.
#[test]
fn stdin_child() {
    if std::env::var_os("HBSCOPE_STDIN_CHILD").is_none() {
        return;
    }
    let mut source = FileSource::open(Path::new("-")).unwrap();
    assert_eq!(source.file_size(), None);
    let mut n = 0;
    while source.next_packet().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 12);
}

#[test]
fn stdin_is_read_for_dash() {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "stdin_child", "--test-threads=1"])
        .env("HBSCOPE_STDIN_CHILD", "1")
        .stdin(std::fs::File::open(data("lo_nano.pcapng")).unwrap())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}
