//! The host hbscope runs on: which process owns a socket and what it is doing
//! ([`procinfo`], the only module touching `procfs`), and dropping root
//! privileges after a capture is open ([`privileges`]), and masking secrets in
//! command lines before anything keeps them ([`redact`]). These return their
//! own types; `report` turns them into report entries.

pub mod privileges;
pub mod procinfo;
pub mod redact;
