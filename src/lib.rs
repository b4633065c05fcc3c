//! hbscope library.
pub mod amqp;
pub mod analysis;
pub mod model;
