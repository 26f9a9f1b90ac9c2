//! TFTP, read only: the wire format ([`packet`]), one transfer's state machine
//! ([`transfer`]), and the tokio service that admits and runs transfers ([`service`]); and
//! a read client ([`client`]) for load generators and tests.

pub mod client;
pub mod packet;
pub mod service;
pub mod transfer;

pub use packet::{ErrorCode, Packet, ParseError};
pub use transfer::{Limits, Negotiated, Transfer, TransferError};
