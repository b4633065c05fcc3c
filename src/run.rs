//! The modes: whole inputs run through the engine to a report. [`replay`]
//! reads one capture, [`parts`] several files of one capture point as one,
//! [`twoend`] combines a client-side and a broker-side
//! capture of the same traffic, [`live`] captures from an interface and
//! streams events, with [`recorder`] keeping the packets around each gap.

pub mod brokerlog;
pub mod live;
pub mod parts;
pub mod recorder;
pub mod replay;
pub mod twoend;
