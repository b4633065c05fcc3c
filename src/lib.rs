//! hbscope: reads AMQP 0-9-1 traffic, rebuilds each connection's heartbeat
//! timeline, flags every silence longer than the negotiated heartbeat and
//! says why it happened.
//!
//! One direction of flow, one module (or folder) per stage:
//!
//! ```text
//! capture -> decode -> reassembly -> proto -> analysis -> engine -> report
//! (pcap:     (link/IP/  (per-direction (amqp   (silences,  (flows,     (schema, json,
//!  files,     TCP,       byte streams)  frames, gaps,       one packet  text, html,
//!  live)      etherparse)               tls)    causes)     at a time)  markdown)
//!
//!                         driver: one loop for every mode
//!                         (packet source + clock -> engine -> sink)
//!                                       |
//!                 run (replay, twoend, live)   tui   metrics   os (procinfo)
//! ```
//!
//! Each outside library lives in one module: `capture` wraps `pcap`, `decode`
//! `etherparse`, `proto::amqp` `amq-protocol`, `report` `chrono` and
//! `serde_json`, `os::procinfo` `procfs`, `tui` ratatui/crossterm, `metrics`
//! `prometheus-client` and `httparse`. Analysis never reads a clock: time arrives with
//! the packets, and in live mode from the clock the [`driver`] is given.
//! docs/architecture.md is the map: what each folder owns and may import.

pub mod analysis;
pub mod capture;
pub mod decode;
pub mod driver;
pub mod engine;
pub mod metrics;
pub mod model;
pub mod os;
mod prefetch;
pub mod proto;
pub mod reassembly;
pub mod report;
pub mod run;
pub mod synth;
pub mod tui;
