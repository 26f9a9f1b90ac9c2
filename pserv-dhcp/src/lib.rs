//! DHCPv4 responder for pserv (in progress: see issue 4).
