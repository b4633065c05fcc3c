//! The host hbscope runs on: which process owns a socket and what it is doing
//! ([`procinfo`], the only module touching `procfs`), dropping root
//! privileges after a capture is open ([`privileges`]), and output files that
//! appear whole or not at all ([`outfile`]). These return their own types;
//! `report` turns them into report entries.

pub mod outfile;
pub mod privileges;
pub mod procinfo;
