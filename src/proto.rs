//! Application protocols on the reassembled byte streams: AMQP 0-9-1 frames
//! ([`amqp`], the only module touching `amq-protocol`) and TLS records
//! ([`tls`]: AMQPS analysed without keys, heartbeats recognised by size).

pub mod amqp;
pub mod tls;
