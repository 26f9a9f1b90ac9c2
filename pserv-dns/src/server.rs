//! The service: the batched UDP loop ([`crate::udp`]) for UDP, and hickory-server for TCP.
//!
//! Over TCP, a hickory `RequestHandler` loads the table once per query (an owned `Arc`, since
//! it awaits), applies the same checks as UDP ([`check_query`]), calls [`crate::answer`], and
//! lets hickory frame and encode. EDNS is echoed with the client's payload size.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, ResponseCode};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use pserv_core::Store;
use tokio::net::TcpListener;

use crate::answer::{LeaseLookup, answer};
use crate::respond::{Counters, Responder, check_query};

/// The TCP request handler.
pub struct Handler {
    responder: Arc<Responder>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let r = &self.responder;
        let edns = request.edns.as_ref().map(|e| {
            let mut out = Edns::new();
            out.set_max_payload(e.max_payload().max(512));
            out
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut md = Metadata::response_from_request(&request.metadata);
        let first = request.queries.queries().first();
        let verdict = check_query(
            request.metadata.op_code,
            request.edns.as_ref().map(Edns::version),
            request.queries.queries().len(),
            first.map_or(hickory_proto::rr::DNSClass::IN, |q| q.query_class()),
            first.map_or(hickory_proto::rr::RecordType::A, |q| q.query_type()),
        );
        let result = match (verdict, first) {
            (Ok(()), Some(q)) => {
                let table = r.store().load_full();
                let zones = r.zones_for(&table);
                let q = q.original();
                let a = answer(&table, &zones, r.leases(), q.name(), q.query_type());
                if a.rcode == ResponseCode::Refused && !table.dns().upstreams.is_empty() {
                    return self
                        .forward(request, &table.dns().upstreams, response_handle)
                        .await;
                }
                md.response_code = a.rcode;
                md.authoritative = a.authoritative;
                r.counters().count(a.rcode);
                let resp = builder.build(
                    md,
                    a.answers.iter(),
                    a.authority.iter(),
                    std::iter::empty(),
                    a.additional.iter(),
                );
                response_handle.send_response(resp).await
            }
            (verdict, _) => {
                md.response_code = verdict.err().unwrap_or(ResponseCode::FormErr);
                r.counters().count(md.response_code);
                response_handle
                    .send_response(builder.build_no_records(md))
                    .await
            }
        };
        match result {
            Ok(info) => info,
            Err(e) => {
                r.counters().send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "DNS response not sent");
                not_sent(request)
            }
        }
    }
}

impl Handler {
    /// Forwards a TCP query to an upstream over UDP and relays the reply (AA cleared).
    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        upstreams: &[SocketAddr],
        mut response_handle: R,
    ) -> ResponseInfo {
        let r = &self.responder;
        let reply = async {
            let upstream = *upstreams.first()?;
            let bind: SocketAddr = if upstream.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
            sock.send_to(request.as_slice(), upstream).await.ok()?;
            let mut buf = vec![0u8; 65535];
            let deadline = tokio::time::Instant::now() + crate::forward::TIMEOUT;
            loop {
                let (n, from) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
                    .await
                    .ok()?
                    .ok()?;
                if from == upstream && n >= 2 && buf[..2] == request.as_slice()[..2] {
                    return Message::from_vec(&buf[..n]).ok();
                }
            }
        }
        .await;
        let builder = MessageResponseBuilder::new(&request.queries, None);
        let mut md = Metadata::response_from_request(&request.metadata);
        let result = match &reply {
            Some(m) => {
                md.response_code = m.metadata.response_code;
                md.recursion_available = m.metadata.recursion_available;
                r.counters().count(md.response_code);
                let resp = builder.build(
                    md,
                    m.answers.iter(),
                    m.authorities.iter(),
                    std::iter::empty(),
                    m.additionals.iter(),
                );
                response_handle.send_response(resp).await
            }
            None => {
                md.response_code = ResponseCode::ServFail;
                response_handle
                    .send_response(builder.build_no_records(md))
                    .await
            }
        };
        result.unwrap_or_else(|_| not_sent(request))
    }
}

/// What hickory records for a response that could not be sent.
fn not_sent(request: &Request) -> ResponseInfo {
    let mut m = Metadata::response_from_request(&request.metadata);
    m.response_code = ResponseCode::ServFail;
    Header {
        metadata: m,
        counts: HeaderCounts::default(),
    }
    .into()
}

/// Binds UDP and TCP on one port. For port 0 the UDP socket picks the port and TCP follows it;
/// if TCP finds that port taken (another program's TCP), it tries again with a fresh port.
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(std::net::UdpSocket, TcpListener)> {
    let mut attempt = 0;
    loop {
        let sock = std::net::UdpSocket::bind(addr)?;
        match TcpListener::bind(sock.local_addr()?).await {
            Ok(listener) => return Ok((sock, listener)),
            Err(e) if addr.port() == 0 && attempt < 16 => {
                tracing::debug!(error = %e, "TCP port taken; picking another");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A running DNS service: UDP and TCP on the given addresses.
pub struct Service {
    tcp: Server<Handler>,
    udp: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// The addresses actually bound (port 0 resolved).
    pub local: Vec<SocketAddr>,
    responder: Arc<Responder>,
}

impl Service {
    /// Binds UDP and TCP on every address and starts answering from `store`. Must be called
    /// inside a tokio runtime (TCP runs on it; UDP has its own threads).
    pub async fn bind(
        addrs: &[SocketAddr],
        store: Arc<Store>,
        leases: Arc<dyn LeaseLookup>,
    ) -> std::io::Result<Self> {
        let responder = Arc::new(Responder::new(store, leases));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tcp = Server::new(Handler {
            responder: responder.clone(),
        });
        let mut udp = Vec::new();
        let mut local = Vec::new();
        for addr in addrs {
            let (sock, listener) = bind_pair(*addr).await?;
            let bound = sock.local_addr()?;
            tcp.register_listener(listener, Duration::from_secs(10), 32);
            udp.extend(crate::udp::spawn(sock, responder.clone(), stop.clone())?);
            local.push(bound);
        }
        Ok(Self {
            tcp,
            udp,
            stop,
            local,
            responder,
        })
    }

    /// The responder's counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.responder.counters().clone()
    }

    /// Forwarding counters, one set per UDP socket.
    pub fn forward_counters(&self) -> Vec<Arc<crate::forward::ForwardCounters>> {
        self.responder.forward_counters()
    }

    /// Stops answering: the UDP threads finish their batch, TCP drains.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut self.udp);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        if let Err(e) = self.tcp.shutdown_gracefully().await {
            tracing::warn!(error = %e, "DNS shutdown");
        }
    }
}
