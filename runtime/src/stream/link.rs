//! One side's link to its peer: the sending half with its credit, and the
//! task that reads the peer's inbox (data, ends, credit, cancel), keeps the
//! link alive and notices a silent peer (PROTOCOL §9.4, §9.5).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::{HeaderMap, Subject};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::Either;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
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
    /// For a peer that accepts batches: the writer that packs ready data.
    batches: Option<BatchQueue>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").field("subject", &self.subject).finish_non_exhaustive()
    }
}

impl Outbound {
    /// Sends to `subject`; `peer_window` is the credit the peer announced
    /// (`None`: no flow control), `peer_batches` whether it accepts batches
    /// (used only with flow control, PROTOCOL §9.9).
    pub(crate) fn new(nats: async_nats::Client, subject: Subject, peer_window: Option<u32>, peer_batches: bool) -> Arc<Outbound> {
        let batches = (peer_batches && peer_window.is_some()).then(|| BatchQueue::spawn(nats.clone(), subject.clone()));
        Arc::new(Outbound {
            nats,
            subject,
            next_seq: tokio::sync::Mutex::new(1),
            credit: peer_window.map(|window| Arc::new(Semaphore::new(window as usize))),
            sent: AtomicBool::new(true),
            batches,
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
        if let Some(batches) = &self.batches {
            self.sent.store(true, Ordering::Relaxed);
            return batches.push(Outgoing::Data(payload));
        }
        let mut seq = self.next_seq.lock().await;
        let mut headers = HeaderMap::new();
        headers.insert(name::SEQ, seq.to_string());
        self.publish(headers, payload).await?;
        *seq += 1;
        Ok(())
    }

    /// Sends an end (no credit needed) after every data message sent before it.
    pub(crate) async fn publish(&self, headers: HeaderMap, payload: Bytes) -> Result<(), Error> {
        self.flushed().await?;
        self.publish_now(headers, payload).await
    }

    /// Waits until every data message sent so far is handed to the
    /// connection, so that what is published next follows them.
    pub(crate) async fn flushed(&self) -> Result<(), Error> {
        let Some(batches) = &self.batches else {
            return Ok(());
        };
        let (done, flushed) = oneshot::channel();
        batches.push(Outgoing::Flushed(done))?;
        flushed.await.map_err(|_| BatchQueue::stopped())
    }

    /// Sends a control message: credit and cancels need no order with data.
    async fn publish_now(&self, headers: HeaderMap, payload: Bytes) -> Result<(), Error> {
        self.sent.store(true, Ordering::Relaxed);
        publish(&self.nats, &self.subject, headers, payload).await
    }

    async fn send_credit(&self, credit: u32) {
        let mut headers = HeaderMap::new();
        headers.insert(name::CREDIT, credit.to_string());
        if let Err(err) = self.publish_now(headers, Bytes::new()).await {
            tracing::debug!(error = %err, "sending stream credit");
        }
    }

    pub(crate) async fn send_cancel(&self) {
        let mut headers = HeaderMap::new();
        headers.insert(name::CANCEL, "true");
        if let Err(err) = self.publish_now(headers, Bytes::new()).await {
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

async fn publish(nats: &async_nats::Client, subject: &Subject, headers: HeaderMap, payload: Bytes) -> Result<(), Error> {
    nats.publish_with_headers(subject.clone(), headers, payload)
        .await
        .map_err(|err| Error::unavailable(format!("sending on the stream: {err}")))
}

/// What goes through the batch writer, in order.
enum Outgoing {
    /// One encoded message (its credit already taken).
    Data(Bytes),
    /// A point in the queue, signalled once everything before it is published.
    Flushed(oneshot::Sender<()>),
}

/// Room left in `max_payload` for a batch's header block (about 72 bytes at most).
const BATCH_HEADER_ROOM: usize = 128;

/// The queue in front of a task that publishes data to a peer that accepts
/// batches (PROTOCOL §9.9): a sender hands its message over and goes on,
/// and the task publishes everything that queued up meanwhile as one NATS
/// message. A sender faster than the wire therefore fills batches and a
/// slow one sends single messages: nothing waits to fill a batch. The
/// peer's credit, taken before a message is queued, bounds the queue.
struct BatchQueue {
    queue: mpsc::UnboundedSender<Outgoing>,
    /// Why the writer stopped (a publish that failed): later sends fail with it.
    failed: Arc<OnceLock<Error>>,
}

impl BatchQueue {
    fn spawn(nats: async_nats::Client, subject: Subject) -> BatchQueue {
        let (queue, outgoing) = mpsc::unbounded_channel();
        let failed = Arc::new(OnceLock::new());
        // The task ends once the `Outbound` is gone and the queue is drained.
        tokio::spawn(write_batches(nats, subject, outgoing, failed.clone()));
        BatchQueue { queue, failed }
    }

    fn push(&self, outgoing: Outgoing) -> Result<(), Error> {
        if let Some(err) = self.failed.get() {
            return Err(err.clone());
        }
        self.queue.send(outgoing).map_err(|_| Self::stopped())
    }

    fn stopped() -> Error {
        Error::unavailable("the stream's writer stopped")
    }
}

async fn write_batches(
    nats: async_nats::Client,
    subject: Subject,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    failed: Arc<OnceLock<Error>>,
) {
    let mut seq = 1u32;
    let mut next = outgoing.recv().await;
    while let Some(item) = next.take() {
        let published = match item {
            Outgoing::Flushed(done) => {
                let _ = done.send(());
                Ok(())
            }
            Outgoing::Data(first) => {
                let max_payload = nats.max_payload();
                let limit = match max_payload {
                    0 => wire::MAX_BATCH_BODY,
                    max => wire::MAX_BATCH_BODY.min(max.saturating_sub(BATCH_HEADER_ROOM)),
                };
                let mut body_len = wire::batch_record_len(first.len());
                let mut batch = vec![first];
                loop {
                    match outgoing.try_recv() {
                        Ok(Outgoing::Data(message)) if body_len + wire::batch_record_len(message.len()) <= limit => {
                            body_len += wire::batch_record_len(message.len());
                            batch.push(message);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let count = batch.len() as u32;
                let published = publish_batch(&nats, &subject, seq, batch, body_len).await;
                seq = seq.wrapping_add(count);
                published
            }
        };
        if let Err(err) = published {
            // Waiting flushes see the writer stop; senders see why on their next send.
            let _ = failed.set(err);
            return;
        }
        if next.is_none() {
            next = outgoing.recv().await;
        }
    }
}

/// Publishes messages `seq..` as one batch, or as ordinary data when alone.
async fn publish_batch(
    nats: &async_nats::Client,
    subject: &Subject,
    seq: u32,
    mut batch: Vec<Bytes>,
    body_len: usize,
) -> Result<(), Error> {
    let mut headers = HeaderMap::new();
    headers.insert(name::SEQ, seq.to_string());
    if batch.len() == 1 {
        let payload = batch.pop().unwrap_or_default();
        return publish(nats, subject, headers, payload).await;
    }
    headers.insert(name::BATCH, batch.len().to_string());
    let mut body = BytesMut::with_capacity(body_len);
    for message in &batch {
        wire::put_batch_record(&mut body, message);
    }
    publish(nats, subject, headers, body.freeze()).await
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
        // A protocol error (§9.6) fails the stream here; the local side then tells the peer.
        let protocol_error = match wire::classify(message) {
            Err(err) => Some(err),
            Ok(Frame::Credit(n)) => {
                if let Some(credit) = &outbound.credit {
                    credit.add_permits(n as usize);
                }
                None
            }
            Ok(Frame::Cancel) => {
                fail(Error::cancelled("the caller cancelled the stream"));
                return;
            }
            Ok(Frame::Data { .. } | Frame::Batch { .. }) if ended => None,
            Ok(Frame::Data { seq, payload }) => match admit(seq, 1, &mut expected_seq, &mut received, allowed) {
                Ok(()) => {
                    pass_on(&events, payload).await;
                    None
                }
                Err(err) => Some(err),
            },
            Ok(Frame::Batch { seq, count, payload }) => {
                match admit(seq, count, &mut expected_seq, &mut received, allowed)
                    .and_then(|()| wire::split_batch(payload, count))
                {
                    Ok(messages) => {
                        for payload in messages {
                            pass_on(&events, payload).await;
                        }
                        None
                    }
                    Err(err) => Some(err),
                }
            }
            Ok(Frame::End(result)) => {
                if !std::mem::replace(&mut ended, true) {
                    let _ = events.send(Event::End(result)).await;
                }
                None
            }
            Ok(Frame::Plain(payload, headers)) if plan.plain_is_result => {
                if !std::mem::replace(&mut ended, true) {
                    let _ = events.send(Event::End(Ok((payload, headers)))).await;
                }
                None
            }
            Ok(Frame::Plain(..) | Frame::Ack { .. }) => None,
        };
        if let Some(err) = protocol_error {
            let _ = events.send(Event::End(Err(err.clone()))).await;
            fail(err);
            return;
        }
    }
}

/// Checks `count` data messages from `seq` against the order and the
/// credit granted (`allowed`, `None`: no flow control), and counts them in.
fn admit(seq: u32, count: u32, expected_seq: &mut u32, received: &mut u64, allowed: Option<u64>) -> Result<(), Error> {
    if seq != *expected_seq {
        return Err(Error::new(crate::Code::DataLoss, format!("stream message {seq} arrived where {expected_seq} was expected")));
    }
    *expected_seq = expected_seq.wrapping_add(count);
    *received += u64::from(count);
    if allowed.is_some_and(|allowed| *received > allowed) {
        return Err(Error::resource_exhausted("the peer sent beyond the credit it was given"));
    }
    Ok(())
}

/// Hands one message to the local side. The receiver may be gone (a
/// handler that stopped reading): the reader goes on serving credit. Room
/// is there for most messages: no `send` future for those.
async fn pass_on(events: &mpsc::Sender<Event>, payload: Bytes) {
    if let Err(mpsc::error::TrySendError::Full(event)) = events.try_send(Event::Data(payload)) {
        let _ = events.send(event).await;
    }
}
