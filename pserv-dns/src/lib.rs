//! Authoritative DNS responder for pserv (in progress: see issue 3).
