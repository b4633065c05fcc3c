//! Link, IP and TCP decoding (to be implemented).
