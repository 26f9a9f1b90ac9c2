//! The socket side: a hickory `RequestHandler` over the live table, for UDP and TCP.
//!
//! Per query it loads the table once (an owned `Arc`, since the handler awaits), reuses the
//! zones compiled for that generation, calls [`crate::answer`], and lets hickory encode: EDNS is
//! echoed with the client's payload size (at least 512), so UDP answers are truncated at the
//! size the client accepts and TC sends it to TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use pserv_core::Store;
use tokio::net::{TcpListener, UdpSocket};

use crate::answer::{LeaseLookup, answer};
use crate::zones::Zones;

/// Counts of what the responder did, by outcome.
#[derive(Debug, Default)]
pub struct Counters {
    /// NOERROR answers (including NODATA).
    pub noerror: AtomicU64,
    /// NXDOMAIN answers.
    pub nxdomain: AtomicU64,
    /// REFUSED answers (outside our zones, zone transfers, other classes).
    pub refused: AtomicU64,
    /// FORMERR answers.
    pub formerr: AtomicU64,
    /// NOTIMP answers (opcodes other than QUERY).
    pub notimp: AtomicU64,
    /// BADVERS answers (EDNS version above 0).
    pub badvers: AtomicU64,
    /// Responses that could not be sent.
    pub send_errors: AtomicU64,
}

impl Counters {
    fn count(&self, rcode: ResponseCode) {
        let c = match rcode {
            ResponseCode::NoError => &self.noerror,
            ResponseCode::NXDomain => &self.nxdomain,
            ResponseCode::Refused => &self.refused,
            ResponseCode::FormErr => &self.formerr,
            ResponseCode::NotImp => &self.notimp,
            ResponseCode::BADVERS => &self.badvers,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The DNS request handler: answers from whatever table the store holds now.
pub struct Handler {
    store: Arc<Store>,
    leases: Arc<dyn LeaseLookup>,
    zones: ArcSwap<Zones>,
    counters: Arc<Counters>,
}

impl Handler {
    /// A handler over `store`, with `leases` for dynamic names.
    pub fn new(store: Arc<Store>, leases: Arc<dyn LeaseLookup>) -> Self {
        let zones = Zones::new(&store.load());
        Self {
            store,
            leases,
            zones: ArcSwap::from_pointee(zones),
            counters: Arc::default(),
        }
    }

    /// The handler's counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The zones for `table`, compiled once per generation (a swap is seen by the next query).
    fn zones_for(&self, table: &pserv_core::Table) -> Arc<Zones> {
        let z = self.zones.load_full();
        if z.compiled_from() == (table.generation(), table.is_loaded()) {
            return z;
        }
        let fresh = Arc::new(Zones::new(table));
        self.zones.store(fresh.clone());
        fresh
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|e| {
            let mut r = Edns::new();
            r.set_max_payload(e.max_payload().max(512));
            r
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut md = Metadata::response_from_request(&request.metadata);
        md.recursion_available = false;

        let rcode_only = |code: ResponseCode| {
            let mut m = Metadata::response_from_request(&request.metadata);
            m.response_code = code;
            m
        };
        let table = self.store.load_full();
        let result = if request.metadata.op_code != OpCode::Query {
            let m = rcode_only(ResponseCode::NotImp);
            self.counters.count(m.response_code);
            response_handle
                .send_response(builder.build_no_records(m))
                .await
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            let m = rcode_only(ResponseCode::BADVERS);
            self.counters.count(m.response_code);
            response_handle
                .send_response(builder.build_no_records(m))
                .await
        } else {
            match request.request_info() {
                Err(_) => {
                    let m = rcode_only(ResponseCode::FormErr);
                    self.counters.count(m.response_code);
                    response_handle
                        .send_response(builder.build_no_records(m))
                        .await
                }
                Ok(info) => {
                    let q = info.query.original();
                    let qtype = q.query_type();
                    let transfer = matches!(qtype, RecordType::AXFR | RecordType::IXFR);
                    if q.query_class() != DNSClass::IN || transfer {
                        let m = rcode_only(ResponseCode::Refused);
                        self.counters.count(m.response_code);
                        response_handle
                            .send_response(builder.build_no_records(m))
                            .await
                    } else {
                        let zones = self.zones_for(&table);
                        let a = answer(&table, &zones, &*self.leases, q.name(), qtype);
                        md.response_code = a.rcode;
                        md.authoritative = a.authoritative;
                        self.counters.count(a.rcode);
                        let resp = builder.build(
                            md,
                            a.answers.iter(),
                            a.authority.iter(),
                            std::iter::empty(),
                            a.additional.iter(),
                        );
                        response_handle.send_response(resp).await
                    }
                }
            }
        };
        match result {
            Ok(info) => info,
            Err(e) => {
                self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "DNS response not sent");
                let mut m = Metadata::response_from_request(&request.metadata);
                m.message_type = MessageType::Response;
                m.response_code = ResponseCode::ServFail;
                Header {
                    metadata: m,
                    counts: HeaderCounts::default(),
                }
                .into()
            }
        }
    }
}

/// A running DNS service: UDP and TCP on the given addresses.
pub struct Service {
    server: Server<Handler>,
    /// The addresses actually bound (port 0 resolved).
    pub local: Vec<SocketAddr>,
    counters: Arc<Counters>,
}

impl Service {
    /// Binds UDP and TCP on every address and starts answering from `store`.
    pub async fn bind(
        addrs: &[SocketAddr],
        store: Arc<Store>,
        leases: Arc<dyn LeaseLookup>,
    ) -> std::io::Result<Self> {
        let handler = Handler::new(store, leases);
        let counters = handler.counters();
        let mut server = Server::new(handler);
        let mut local = Vec::new();
        for addr in addrs {
            let udp = UdpSocket::bind(addr).await?;
            let bound = udp.local_addr()?;
            // TCP on the same port as UDP (resolved when the port was 0).
            let tcp = TcpListener::bind(bound).await?;
            server.register_socket(udp);
            server.register_listener(tcp, Duration::from_secs(10), 32);
            local.push(bound);
        }
        Ok(Self {
            server,
            local,
            counters,
        })
    }

    /// The responder's counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Stops accepting and waits for in-flight work.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::warn!(error = %e, "DNS shutdown");
        }
    }
}
