//! Packet sources (to be implemented).
