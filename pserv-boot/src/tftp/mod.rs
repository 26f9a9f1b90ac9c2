//! TFTP, read only: the wire format ([`packet`]) and one transfer's state machine
//! ([`transfer`]).

pub mod packet;
pub mod transfer;

pub use packet::{ErrorCode, Packet, ParseError};
pub use transfer::{Limits, Negotiated, Transfer, TransferError};
