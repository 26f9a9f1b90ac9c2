//! The shape of a running service.
//!
//! Every service starts the same way: from sockets already bound (so a port in use fails the
//! whole start before anything runs), its dependencies, and the one shutdown token; and it
//! returns a [`Running`]: the addresses it serves, a collector for its own metrics (so whoever
//! serves `/metrics` needs to know no service's counter types), and a join that resolves once
//! it has stopped, with what went wrong if anything did. A server is then a list of services.

use std::net::SocketAddr;
use std::pin::Pin;

use prometheus_client::collector::Collector;

/// Why a service did not stop cleanly (a lease journal that failed to flush, say).
pub type StopError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves once a service has stopped.
pub type Join = Pin<Box<dyn Future<Output = Result<(), StopError>> + Send>>;

/// A started service.
pub struct Running {
    /// Its name (logs, errors).
    pub name: &'static str,
    /// The addresses it serves (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    /// Its metrics, read at each scrape.
    pub metrics: Box<dyn Collector>,
    /// Resolves once it has stopped, after its shutdown token was cancelled.
    pub join: Join,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("name", &self.name)
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Waits for a blocking join (a service thread's) off the runtime's threads.
    pub fn join_thread<E>(thread: std::thread::JoinHandle<Result<(), E>>) -> Join
    where
        E: Into<StopError> + Send + 'static,
    {
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(r)) => r.map_err(Into::into),
                Ok(Err(_)) => Err("the service thread panicked".into()),
                Err(e) => Err(Box::new(e) as StopError),
            }
        })
    }
}
