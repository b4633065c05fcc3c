//! Helpers shared by integration tests.

pub mod live;
pub mod metrics;
