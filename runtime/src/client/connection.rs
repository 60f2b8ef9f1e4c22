//! One watcher per client over the NATS connection's state, so that calls in
//! flight fail at once when the connection is lost (PROTOCOL §10.1) and
//! retries wait for the reconnection.
//!
//! async-nats 0.51 exposes the state (`connection_state()`) and a count of
//! connections made (`statistics().connects`) but no public way to await a
//! change without a callback given at connect time. So one task per client
//! samples both every [`POLL_INTERVAL`] and publishes them on a `watch`
//! channel; each call only subscribes to it (a reference count, no
//! allocation, no timer of its own). The task ends when the client's last
//! clone is dropped.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::watch;

/// How often the watcher samples the connection: the most a call waits
/// beyond the loss before it fails.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What the watcher last saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) connected: bool,
    /// Losses seen so far: a call whose count changed lost its connection.
    pub(crate) losses: u64,
}

/// Shared by the clones of a client; started at its first call.
#[derive(Debug, Default)]
pub(crate) struct ConnectionWatch {
    sender: OnceLock<watch::Sender<Link>>,
}

impl ConnectionWatch {
    /// A receiver of the link state, starting the watcher on first use
    /// (which must be inside a Tokio runtime, as every call is).
    pub(crate) fn subscribe(self: &Arc<Self>, nats: &async_nats::Client) -> watch::Receiver<Link> {
        self.sender
            .get_or_init(|| {
                let connected = nats.connection_state() == async_nats::connection::State::Connected;
                let (sender, _) = watch::channel(Link { connected, losses: 0 });
                tokio::spawn(run(Arc::downgrade(self), nats.clone()));
                sender
            })
            .subscribe()
    }
}

async fn run(watch: Weak<ConnectionWatch>, nats: async_nats::Client) {
    let statistics = nats.statistics();
    let mut connects = statistics.connects.load(Ordering::Relaxed);
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        // The client's last clone is gone: nobody can call any more.
        let Some(watch) = watch.upgrade() else { return };
        let Some(sender) = watch.sender.get() else { continue };
        let connected = nats.connection_state() == async_nats::connection::State::Connected;
        let now_connects = statistics.connects.load(Ordering::Relaxed);
        // A reconnection between two samples is a loss too.
        let reconnected = now_connects != connects;
        connects = now_connects;
        sender.send_if_modified(|link| {
            // Seen disconnected, or reconnected since a sample that saw it
            // connected (a loss the samples missed).
            let lost = link.connected && (!connected || reconnected);
            if lost {
                link.losses += 1;
            }
            let changed = lost || link.connected != connected;
            link.connected = connected;
            changed
        });
    }
}
