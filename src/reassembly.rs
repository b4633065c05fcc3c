//! TCP reassembly: one [`TcpStream`] per connection, turning decoded segments
//! into per-direction stream events (new bytes, in-order data, holes,
//! retransmissions, ACK/window evidence, SYN/FIN/RST).
//!
//! CONTRACT (to be implemented; keep these names and shapes):
//! - `TcpStream::new(config)`; `on_segment(&mut self, dir, &TcpSegment, sink)` calls
//!   `sink(dir_of_event, StreamEvent)` for everything the segment means, in this order:
//!   Syn, Ack (about the *peer's* data, emitted with the *sender's* direction), NewBytes,
//!   Retransmission, Data/Hole (in-order delivery, possibly several, including buffered
//!   out-of-order bytes that became contiguous), KeepAlive, Fin, Rst.
//! - Hole events for direction Y are also emitted (with dir = Y) when the peer ACKs past
//!   the highest byte of Y the capture saw (kind NotCaptured), when the out-of-order cap
//!   forces skipping (kind Overflow), and by `finish` for bytes still missing at the end.
//! - Offsets are u64 stream offsets from the direction's base: ISN+1 when the SYN was seen,
//!   else the first sequence number seen (mid-stream join). Sequence numbers wrap.
