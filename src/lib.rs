//! hbscope: reads AMQP 0-9-1 traffic, rebuilds each connection's heartbeat
//! timeline, flags every silence longer than the negotiated heartbeat and
//! says why it happened.
//!
//! One direction of flow, one module per stage:
//!
//! ```text
//! capture -> decode -> reassembly -> amqp | tls -> analysis -> report | tui
//! (pcap)     (link/IP/TCP, (per-direction (frames /  (silences,   (text/json/html;
//!             etherparse)   byte streams)  records)   gaps, causes) ratatui)
//! ```
//!
//! [`engine`] wires decode, reassembly, amqp and analysis together for one
//! packet at a time; [`app`] runs a whole input through it. Only `capture`
//! touches `pcap`, only `decode` touches `etherparse`, only `amqp` touches
//! `amq-protocol`, only `report` formats time with `chrono`, only `procinfo`
//! touches `procfs`. Analysis never reads a clock: time arrives with the
//! packets. Live mode ([`live`]) reads the wall clock at its edge and hands it
//! to the engine as capture time so open silences grow without packets;
//! [`metrics`] serves what it sees to Prometheus (`live --metrics`).
//! [`synth`] writes synthetic captures with known verdicts for benchmarks and
//! tests; [`tui`] draws snapshots of the engine; [`tls`] reads AMQPS records;
//! [`merge`] combines two captures of the same traffic (client side and broker
//! side) into one verdict per silence.

pub mod amqp;
pub mod analysis;
pub mod app;
pub mod capture;
pub mod decode;
pub mod engine;
pub mod flowhash;
mod flowtable;
pub mod fuzz;
pub mod html;
pub mod live;
pub mod merge;
pub mod metrics;
pub mod model;
mod prefetch;
pub mod privileges;
pub mod procinfo;
pub mod reassembly;
pub mod report;
pub mod synth;
pub mod timeline;
pub mod tls;
pub mod tui;
