//! The host hbscope runs on: which process owns a socket and what it is doing
//! ([`procinfo`], the only module touching `procfs`; [`threads`]: which system
//! call and descriptor each thread is blocked in, and why a process left its
//! heartbeats unsent; [`pyspy`]: Python stacks from `py-spy dump`), dropping root
//! privileges after a capture is open ([`privileges`]), output files that
//! appear whole or not at all ([`outfile`]), and masking secrets in command
//! lines before anything keeps them ([`redact`]). These return their own
//! types; `report` turns them into report entries.

pub mod outfile;
pub mod privileges;
pub mod procinfo;
pub mod pyspy;
pub mod redact;
pub mod threads;
