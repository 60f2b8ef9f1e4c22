//! One side's link to its peer: the sending half with its credit, and the
//! task that reads the peer's inbox (data, ends, credit, cancel), keeps the
//! link alive and notices a silent peer (PROTOCOL §9.4, §9.5).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::Either;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::StreamSettings;
use super::wire::{self, Frame, name};
use crate::error::Error;
use crate::future::first;

/// Sends to the peer's inbox: data within the peer's credit, and control.
pub(crate) struct Outbound {
    nats: async_nats::Client,
    subject: Subject,
    /// The next data sequence number; held across the publish so that
    /// concurrent senders cannot reorder numbers and messages.
    next_seq: tokio::sync::Mutex<u32>,
    /// The peer's credit; `None` when the peer has no flow control.
    credit: Option<Arc<Semaphore>>,
    /// Something was sent since the reader last looked (keepalives are
    /// only due on a quiet link); a flag, not a clock read per message.
    sent: AtomicBool,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").field("subject", &self.subject).finish_non_exhaustive()
    }
}

impl Outbound {
    pub(crate) fn new(nats: async_nats::Client, subject: Subject, peer_window: Option<u32>) -> Arc<Outbound> {
        Arc::new(Outbound {
            nats,
            subject,
            next_seq: tokio::sync::Mutex::new(1),
            credit: peer_window.map(|window| Arc::new(Semaphore::new(window as usize))),
            sent: AtomicBool::new(true),
        })
    }

    /// The connection's `max_payload` (0: unknown).
    pub(crate) fn max_payload(&self) -> usize {
        self.nats.max_payload()
    }

    /// The peer speaks this protocol's flow control (and keepalives).
    pub(crate) fn peer_has_flow_control(&self) -> bool {
        self.credit.is_some()
    }

    /// Sends one data message, waiting for credit first. A message over the
    /// connection's `max_payload` is refused with `RESOURCE_EXHAUSTED` and
    /// nothing is sent.
    pub(crate) async fn send_data(&self, payload: Bytes) -> Result<(), Error> {
        let max_payload = self.nats.max_payload();
        if max_payload > 0 && payload.len() > max_payload {
            return Err(Error::resource_exhausted(format!(
                "a stream message of {} bytes exceeds the server's max_payload of {max_payload}",
                payload.len()
            )));
        }
        if let Some(credit) = &self.credit {
            credit.acquire().await.map_err(|_| Error::cancelled("the stream is closed"))?.forget();
        }
        let mut seq = self.next_seq.lock().await;
        let mut headers = HeaderMap::new();
        headers.insert(name::SEQ, seq.to_string());
        self.publish(headers, payload).await?;
        *seq += 1;
        Ok(())
    }

    /// Sends a control or end message (no credit needed).
    pub(crate) async fn publish(&self, headers: HeaderMap, payload: Bytes) -> Result<(), Error> {
        self.sent.store(true, Ordering::Relaxed);
        self.nats
            .publish_with_headers(self.subject.clone(), headers, payload)
            .await
            .map_err(|err| Error::unavailable(format!("sending on the stream: {err}")))
    }

    async fn send_credit(&self, credit: u32) {
        let mut headers = HeaderMap::new();
        headers.insert(name::CREDIT, credit.to_string());
        if let Err(err) = self.publish(headers, Bytes::new()).await {
            tracing::debug!(error = %err, "sending stream credit");
        }
    }

    pub(crate) async fn send_cancel(&self) {
        let mut headers = HeaderMap::new();
        headers.insert(name::CANCEL, "true");
        if let Err(err) = self.publish(headers, Bytes::new()).await {
            tracing::debug!(error = %err, "sending stream cancel");
        }
    }

    /// Whether nothing was sent since the previous call.
    fn quiet_since_last_look(&self) -> bool {
        !self.sent.swap(false, Ordering::Relaxed)
    }

    /// Wakes senders waiting for credit with an error.
    fn close(&self) {
        if let Some(credit) = &self.credit {
            credit.close();
        }
    }
}

/// What the reader passes on to the local side.
#[derive(Debug)]
pub(crate) enum Event {
    /// One message of the peer's direction.
    Data(Bytes),
    /// The peer's direction is finished (body and trailing headers), or the stream failed.
    End(Result<(Bytes, HeaderMap), Error>),
}

/// What the local side asks of the reader.
pub(crate) enum Command {
    /// The application consumed this many messages: grant them again.
    Grant(u32),
    /// The local caller abandons the stream: tell the peer and stop.
    Cancel,
}

/// The reading half: the events in order with the way to ask for grants
/// and cancel, the reason the stream was aborted by the peer (cancel,
/// silence, protocol error), and the task itself.
pub(crate) struct Reader {
    pub(crate) inbox: Inbox,
    pub(crate) aborted: watch::Receiver<Option<Error>>,
    pub(crate) task: TaskGuard,
}

/// The local end of a reader: its events and its commands.
pub(crate) struct Inbox {
    pub(crate) events: mpsc::Receiver<Event>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
}

/// Aborts the reader task on drop, unless detached.
pub(crate) struct TaskGuard(Option<JoinHandle<()>>);

impl std::fmt::Debug for TaskGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskGuard")
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl TaskGuard {
    /// Spawns `task`, aborted when the guard drops.
    pub(crate) fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> TaskGuard {
        TaskGuard(Some(tokio::spawn(task)))
    }

    /// Lets the task finish what it was asked (a cancel) instead of aborting it.
    pub(crate) fn detach(mut self) {
        self.0 = None;
    }
}

impl Reader {
    /// Resolves with the reason once the peer aborted the stream.
    pub(crate) async fn aborted(aborted: &mut watch::Receiver<Option<Error>>) -> Error {
        let reason = match aborted.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            // The reader is gone: the stream is over from this side anyway.
            None => std::future::pending().await,
        }
    }
}

/// How the reader treats what it reads.
pub(crate) struct ReaderPlan {
    /// Messages the local side offered the peer (its window), or `None`
    /// when the peer sends without flow control.
    pub(crate) window: Option<u32>,
    /// A message without stream headers ends the stream as its result (a
    /// Go-plugin server's client-streaming reply).
    pub(crate) plain_is_result: bool,
    /// Keepalive and silence limits.
    pub(crate) settings: StreamSettings,
}

/// Starts reading `subscriber`: data and ends become events, credit goes
/// to `outbound`, a cancel or a silent peer aborts the stream.
pub(crate) fn spawn_reader<M>(subscriber: M, outbound: Arc<Outbound>, plan: ReaderPlan) -> Reader
where
    M: futures_util::Stream<Item = async_nats::Message> + Unpin + Send + 'static,
{
    let capacity = plan.window.unwrap_or(DEFAULT_BUFFER).max(1) as usize;
    let (events_tx, events) = mpsc::channel(capacity);
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (aborted_tx, aborted) = watch::channel(None);
    let task = tokio::spawn(read(subscriber, outbound, plan, events_tx, commands_rx, aborted_tx));
    Reader { inbox: Inbox { events, commands }, aborted, task: TaskGuard(Some(task)) }
}

/// Buffered messages from a peer without flow control before the reader
/// waits (and the NATS subscription's own buffer takes over).
const DEFAULT_BUFFER: u32 = 256;

async fn read<M>(
    mut subscriber: M,
    outbound: Arc<Outbound>,
    plan: ReaderPlan,
    events: mpsc::Sender<Event>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    aborted: watch::Sender<Option<Error>>,
) where
    M: futures_util::Stream<Item = async_nats::Message> + Unpin + Send + 'static,
{
    let mut ended = false;
    let mut expected_seq = 1u32;
    // Data messages the peer may still send: the window plus what was granted since.
    let mut allowed = plan.window.map(u64::from);
    let mut received = 0u64;
    // How long the peer has sent nothing, counted in ticks, and whether it
    // sent something since the last tick; how long this side has sent nothing.
    let (mut silent, mut heard, mut quiet) = (Duration::ZERO, false, Duration::ZERO);
    let tick_every = plan.settings.keepalive.min(plan.settings.peer_timeout / 2).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + tick_every, tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let fail = |reason: Error| {
        let _ = aborted.send(Some(reason));
        outbound.close();
    };
    let mut commands_open = true;
    loop {
        let command = async { if commands_open { commands.recv().await } else { std::future::pending().await } };
        let next = first(first(subscriber.next(), command), tick.tick()).await;
        let message = match next {
            Either::Left(Either::Left(Some(message))) => message,
            Either::Left(Either::Left(None)) => return,
            Either::Left(Either::Right(Some(Command::Grant(n)))) => {
                if let Some(allowed) = &mut allowed {
                    *allowed += u64::from(n);
                }
                if plan.window.is_some() {
                    outbound.send_credit(n).await;
                }
                continue;
            }
            Either::Left(Either::Right(Some(Command::Cancel))) => {
                if outbound.peer_has_flow_control() {
                    outbound.send_cancel().await;
                }
                return;
            }
            Either::Left(Either::Right(None)) => {
                commands_open = false;
                continue;
            }
            Either::Right(_) => {
                if !outbound.peer_has_flow_control() {
                    continue;
                }
                quiet = if outbound.quiet_since_last_look() { quiet + tick_every } else { Duration::ZERO };
                if quiet >= plan.settings.keepalive {
                    outbound.send_credit(0).await;
                    // The keepalive itself does not make the next tick busy.
                    outbound.quiet_since_last_look();
                    quiet = Duration::ZERO;
                }
                silent = if std::mem::take(&mut heard) { Duration::ZERO } else { silent + tick_every };
                if silent >= plan.settings.peer_timeout {
                    let reason = Error::unavailable(format!(
                        "the stream's peer was silent for {} ms",
                        plan.settings.peer_timeout.as_millis()
                    ));
                    let _ = events.try_send(Event::End(Err(reason.clone())));
                    fail(reason);
                    return;
                }
                continue;
            }
        };
        heard = true;
        let frame = match wire::classify(message) {
            Ok(frame) => frame,
            Err(err) => {
                let _ = events.send(Event::End(Err(err.clone()))).await;
                fail(err);
                return;
            }
        };
        match frame {
            Frame::Credit(n) => {
                if let Some(credit) = &outbound.credit {
                    credit.add_permits(n as usize);
                }
            }
            Frame::Cancel => {
                fail(Error::cancelled("the caller cancelled the stream"));
                return;
            }
            Frame::Data { seq, payload } => {
                if ended {
                    continue;
                }
                if seq != expected_seq {
                    let err = Error::new(
                        crate::Code::DataLoss,
                        format!("stream message {seq} arrived where {expected_seq} was expected"),
                    );
                    let _ = events.send(Event::End(Err(err.clone()))).await;
                    fail(err);
                    return;
                }
                expected_seq = expected_seq.wrapping_add(1);
                received += 1;
                if allowed.is_some_and(|allowed| received > allowed) {
                    let err = Error::resource_exhausted("the peer sent beyond the credit it was given");
                    let _ = events.send(Event::End(Err(err.clone()))).await;
                    fail(err);
                    return;
                }
                // The receiver may be gone (a handler that stopped reading): keep serving credit.
                // Room is there for most messages: no `send` future for those.
                if let Err(mpsc::error::TrySendError::Full(event)) = events.try_send(Event::Data(payload)) {
                    let _ = events.send(event).await;
                }
            }
            Frame::End(result) => {
                if !std::mem::replace(&mut ended, true) {
                    let _ = events.send(Event::End(result)).await;
                }
            }
            Frame::Plain(payload, headers) if plan.plain_is_result => {
                if !std::mem::replace(&mut ended, true) {
                    let _ = events.send(Event::End(Ok((payload, headers)))).await;
                }
            }
            Frame::Plain(..) | Frame::Ack { .. } => {}
        }
    }
}
