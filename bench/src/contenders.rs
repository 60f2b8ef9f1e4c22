//! The contenders: each has a server (run in its own process, so its peak
//! RSS is its own) and a caller (in the load generator's process). The
//! servers and callers of the TypeScript and Python contenders are programs
//! of those languages (see external.rs); the rest are here.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message;

use crate::echo::nats::echo_service_nats::{self, EchoService, EchoServiceClient, EchoServiceError};
use crate::echo::nats::{EchoRequest, EchoResponse};
use crate::echo::tonic::echo_service_client::EchoServiceClient as TonicClient;
use crate::echo::tonic::echo_service_server::{EchoService as TonicEcho, EchoServiceServer as TonicServer};
use crate::external::Language;

/// Subject of the hand-written responder.
const RAW_SUBJECT: &str = "bench.raw.echo";
/// Subject of the hand-written responder that decodes and encodes the messages.
const RAW_PROST_SUBJECT: &str = "bench.raw_prost.echo";
/// Subject of the hand-written responder that also reads the deadline header.
const RAW_DEADLINE_SUBJECT: &str = "bench.raw_deadline.echo";
/// Subject of the async-nats `service` module server.
const SERVICE_SUBJECT: &str = "bench.service.echo";

/// A contender in the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    /// async-nats request/reply against a hand-written responder: the floor.
    Raw,
    /// The same, with both sides decoding and encoding the prost messages
    /// (`EchoRequest` in, `EchoResponse` out): the floor of a typed layer,
    /// so that what the generated layer costs is apart from the codec's.
    RawProst,
    /// The same, with the caller's budget sent in `Nats-Micro-Timeout` on
    /// every request and read by the responder (PROTOCOL §3.2): the floor
    /// of any client that propagates deadlines over async-nats, since the
    /// header makes every request an HPUB that async-nats builds and parses.
    RawDeadline,
    /// Generated Rust client and server.
    Generated,
    /// A server on async-nats's own `service` module, called with raw requests.
    ServiceModule,
    /// tonic gRPC unary over loopback TCP.
    Tonic,
    /// Generated TypeScript server and client (node).
    TypeScript,
    /// Generated Python server and client.
    Python,
    /// A plain nats.js responder and requester (bench/ts, `raw`): the floor of the TypeScript contender.
    RawTypeScript,
    /// A plain nats-py responder and requester (bench/python, `raw`): the floor of the Python contender.
    RawPython,
}

impl Contender {
    /// All contenders, the baseline first.
    pub const ALL: [Contender; 10] = [
        Contender::Raw,
        Contender::RawProst,
        Contender::RawDeadline,
        Contender::Generated,
        Contender::ServiceModule,
        Contender::Tonic,
        Contender::RawTypeScript,
        Contender::TypeScript,
        Contender::RawPython,
        Contender::Python,
    ];

    /// Position in [`Contender::ALL`] (the key of the results).
    pub fn index(self) -> usize {
        Contender::ALL.iter().position(|&c| c == self).unwrap_or(0)
    }

    /// Whether this is a plain client and responder of another language
    /// (its programs run with `raw`).
    pub fn is_raw_program(self) -> bool {
        matches!(self, Contender::RawTypeScript | Contender::RawPython)
    }

    /// Name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Raw => "raw async-nats",
            Contender::RawProst => "raw async-nats + prost",
            Contender::RawDeadline => "raw + prost + deadline header",
            Contender::Generated => "generated (nats-micro)",
            Contender::ServiceModule => "async-nats service",
            Contender::Tonic => "tonic gRPC",
            Contender::TypeScript => "generated TypeScript",
            Contender::Python => "generated Python",
            Contender::RawTypeScript => "raw nats.js",
            Contender::RawPython => "raw nats-py",
        }
    }

    /// Token for the `serve` subcommand.
    pub fn token(self) -> &'static str {
        match self {
            Contender::Raw => "raw",
            Contender::RawProst => "raw-prost",
            Contender::RawDeadline => "raw-deadline",
            Contender::Generated => "generated",
            Contender::ServiceModule => "service",
            Contender::Tonic => "tonic",
            Contender::TypeScript => "typescript",
            Contender::Python => "python",
            Contender::RawTypeScript => "raw-typescript",
            Contender::RawPython => "raw-python",
        }
    }

    /// Parses a `serve` token (of a contender this binary serves).
    pub fn from_token(token: &str) -> Option<Contender> {
        Contender::ALL.into_iter().find(|c| c.language().is_none() && c.token() == token)
    }

    /// The language of a contender whose server and load generator are
    /// programs of another language; `None` for the Rust ones.
    pub fn language(self) -> Option<Language> {
        match self {
            Contender::TypeScript | Contender::RawTypeScript => Some(Language::TypeScript),
            Contender::Python | Contender::RawPython => Some(Language::Python),
            Contender::Raw
            | Contender::RawProst
            | Contender::RawDeadline
            | Contender::Generated
            | Contender::ServiceModule
            | Contender::Tonic => None,
        }
    }
}

pub struct Echo;

impl EchoService for Echo {
    async fn echo(
        &self,
        _ctx: nats_micro_runtime::RequestContext,
        request: EchoRequest,
    ) -> Result<EchoResponse, EchoServiceError> {
        Ok(EchoResponse { payload: request.payload })
    }
}

#[tonic::async_trait]
impl TonicEcho for Echo {
    async fn echo(
        &self,
        request: tonic::Request<crate::echo::tonic::EchoRequest>,
    ) -> Result<tonic::Response<crate::echo::tonic::EchoResponse>, tonic::Status> {
        Ok(tonic::Response::new(crate::echo::tonic::EchoResponse { payload: request.into_inner().payload }))
    }
}

/// The error for asking this binary to serve or call a contender of another language.
fn not_rust(contender: Contender) -> String {
    format!("{} runs as programs of its own language (see external.rs)", contender.name())
}

/// Runs a contender's server until stdin closes; prints `ready <address>` once serving.
pub async fn serve(contender: Contender, nats_url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let address = start(contender, nats_url).await?;
    println!("ready {address}");
    // Serve until the parent closes our stdin; answer each `allocations` line
    // with the count of allocations so far (the counting allocator, main.rs).
    tokio::task::spawn_blocking(|| {
        use std::io::{BufRead, Write};
        for line in std::io::stdin().lock().lines() {
            if line?.trim() == "allocations" {
                let mut out = std::io::stdout().lock();
                writeln!(out, "allocations {}", crate::allocations())?;
                out.flush()?;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await??;
    Ok(())
}

/// Starts a contender's server on tasks of the current runtime; returns its
/// address (a subject, or tonic's URL). It serves until the runtime ends.
pub async fn start(contender: Contender, nats_url: &str) -> Result<String, Box<dyn std::error::Error>> {
    Ok(match contender {
        Contender::Tonic => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let address = listener.local_addr()?;
            let incoming = futures_util::stream::unfold(listener, |listener| async move {
                let accepted = listener.accept().await.map(|(stream, _)| {
                    let _ = stream.set_nodelay(true);
                    stream
                });
                Some((accepted, listener))
            });
            tokio::spawn(tonic::transport::Server::builder().add_service(TonicServer::new(Echo)).serve_with_incoming(incoming));
            format!("http://{address}")
        }
        Contender::Raw => {
            let nats = async_nats::connect(nats_url).await?;
            let mut requests = nats.subscribe(RAW_SUBJECT).await?;
            nats.flush().await?;
            tokio::spawn(async move {
                while let Some(message) = requests.next().await {
                    if let Some(reply) = message.reply {
                        let _ = nats.publish(reply, message.payload).await;
                    }
                }
            });
            RAW_SUBJECT.to_owned()
        }
        Contender::RawProst => {
            let nats = async_nats::connect(nats_url).await?;
            let mut requests = nats.subscribe(RAW_PROST_SUBJECT).await?;
            nats.flush().await?;
            tokio::spawn(async move {
                while let Some(message) = requests.next().await {
                    let (Some(reply), Ok(request)) = (message.reply, EchoRequest::decode(message.payload)) else { continue };
                    let response = EchoResponse { payload: request.payload }.encode_to_vec();
                    let _ = nats.publish(reply, response.into()).await;
                }
            });
            RAW_PROST_SUBJECT.to_owned()
        }
        Contender::RawDeadline => {
            let nats = async_nats::connect(nats_url).await?;
            let mut requests = nats.subscribe(RAW_DEADLINE_SUBJECT).await?;
            nats.flush().await?;
            tokio::spawn(async move {
                while let Some(message) = requests.next().await {
                    let budget = message.headers.as_ref().and_then(nats_micro_runtime::headers::request_budget);
                    let (Some(reply), Ok(request), Some(_)) = (message.reply, EchoRequest::decode(message.payload), budget)
                    else {
                        continue;
                    };
                    let response = EchoResponse { payload: request.payload }.encode_to_vec();
                    let _ = nats.publish(reply, response.into()).await;
                }
            });
            RAW_DEADLINE_SUBJECT.to_owned()
        }
        Contender::Generated => {
            let nats = async_nats::connect(nats_url).await?;
            let service = echo_service_nats::serve(&nats, Echo).await?;
            nats.flush().await?;
            std::mem::forget(service); // serves until the process ends
            echo_service_nats::SERVICE.subject_prefix.to_owned()
        }
        Contender::ServiceModule => {
            use async_nats::service::ServiceExt;
            let nats = async_nats::connect(nats_url).await?;
            // async-nats's service errors are Box<dyn Error + Send + Sync>, which `?` cannot rebox.
            let service = nats.service_builder().start("bench_service", "1.0.0").await.map_err(|e| e.to_string())?;
            let mut endpoint = service.endpoint(SERVICE_SUBJECT).await.map_err(|e| e.to_string())?;
            nats.flush().await?;
            tokio::spawn(async move {
                let _service = service;
                while let Some(request) = endpoint.next().await {
                    let payload = request.message.payload.clone();
                    let _ = request.respond(Ok(payload)).await;
                }
            });
            SERVICE_SUBJECT.to_owned()
        }
        Contender::TypeScript | Contender::Python | Contender::RawTypeScript | Contender::RawPython => {
            return Err(not_rust(contender).into());
        }
    })
}

/// The client side of a contender, with the request prepared once.
#[derive(Clone)]
pub enum Caller {
    /// Pre-encoded request bytes to a subject.
    Nats { nats: async_nats::Client, subject: &'static str, body: Bytes },
    /// The request encoded on every call, the reply decoded: raw + prost;
    /// with `deadline`, the budget header sent too.
    NatsProst { nats: async_nats::Client, subject: &'static str, request: EchoRequest, deadline: bool },
    /// The generated client.
    Generated { client: EchoServiceClient, request: EchoRequest },
    /// tonic's generated client.
    Tonic { client: TonicClient<tonic::transport::Channel>, request: crate::echo::tonic::EchoRequest },
}

impl Caller {
    /// Connects the caller for `contender` whose server printed `address`.
    pub async fn connect(
        contender: Contender,
        nats_url: &str,
        address: &str,
        payload: Bytes,
    ) -> Result<Caller, Box<dyn std::error::Error>> {
        let body = EchoRequest { payload: payload.clone() }.encode_to_vec().into();
        Ok(match contender {
            Contender::Raw => Caller::Nats { nats: async_nats::connect(nats_url).await?, subject: RAW_SUBJECT, body },
            Contender::RawProst | Contender::RawDeadline => Caller::NatsProst {
                nats: async_nats::connect(nats_url).await?,
                subject: if contender == Contender::RawProst { RAW_PROST_SUBJECT } else { RAW_DEADLINE_SUBJECT },
                request: EchoRequest { payload },
                deadline: contender == Contender::RawDeadline,
            },
            Contender::ServiceModule => {
                Caller::Nats { nats: async_nats::connect(nats_url).await?, subject: SERVICE_SUBJECT, body }
            }
            Contender::Generated => Caller::Generated {
                client: EchoServiceClient::new(async_nats::connect(nats_url).await?).with_timeout(Duration::from_secs(30)),
                request: EchoRequest { payload },
            },
            Contender::Tonic => {
                let channel = tonic::transport::Endpoint::from_shared(address.to_owned())?.tcp_nodelay(true).connect().await?;
                Caller::Tonic { client: TonicClient::new(channel), request: crate::echo::tonic::EchoRequest { payload } }
            }
            Contender::TypeScript | Contender::Python | Contender::RawTypeScript | Contender::RawPython => {
                return Err(not_rust(contender).into());
            }
        })
    }

    /// One echo call; checks the payload came back whole.
    pub async fn call(&mut self) -> Result<(), String> {
        let echoed = match self {
            Caller::Nats { nats, subject, body } => {
                let reply = nats.request(*subject, body.clone()).await.map_err(|e| e.to_string())?;
                reply.payload.len() == body.len()
            }
            Caller::NatsProst { nats, subject, request, deadline } => {
                let body = request.encode_to_vec().into();
                let reply = if *deadline {
                    let mut headers = async_nats::HeaderMap::new();
                    let budget = nats_micro_runtime::headers::encode_timeout(Duration::from_secs(30));
                    headers.insert(nats_micro_runtime::headers::TIMEOUT, budget);
                    nats.request_with_headers(*subject, headers, body).await
                } else {
                    nats.request(*subject, body).await
                };
                let reply = reply.map_err(|e| e.to_string())?;
                let response = EchoResponse::decode(reply.payload).map_err(|e| e.to_string())?;
                response.payload.len() == request.payload.len()
            }
            Caller::Generated { client, request } => {
                let response = client.echo(request.clone()).await.map_err(|e| e.to_string())?;
                response.payload.len() == request.payload.len()
            }
            Caller::Tonic { client, request } => {
                let response = client.echo(request.clone()).await.map_err(|e| e.to_string())?;
                response.get_ref().payload.len() == request.payload.len()
            }
        };
        if echoed { Ok(()) } else { Err("the echo lost bytes".into()) }
    }
}
