//! The OrderService the tests serve, and small helpers.

use std::sync::Arc;
use std::time::Duration;

use nats_micro_runtime::{Code, RequestContext};
pub use nats_micro_tests::harness::NatsServer;
pub use nats_micro_tests::project::order::v1::order_service_nats::{
    self as orders, OrderService, OrderServiceClient, OrderServiceError, OrderServiceErrorCode,
};
pub use nats_micro_tests::project::order::v1::{CreateOrderRequest, CreateOrderResponse, GetOrderRequest, LineItem, Order};
use tokio::sync::{Barrier, Notify};

/// Request header naming the code `CreateOrder` fails with.
pub const WANT_CODE: &str = "X-Want-Code";

/// Every code the OrderService can return: the built-ins, the canonical
/// extras and the three custom codes.
pub const ALL_CODES: [&str; 19] = [
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "INTERNAL",
    "UNAVAILABLE",
    "CANCELLED",
    "UNKNOWN",
    "DEADLINE_EXCEEDED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "DATA_LOSS",
    "ORDER_EXPIRED",
    "PAYMENT_FAILED",
    "STOCK_UNAVAILABLE",
];

/// An OrderService whose behaviour the request chooses:
/// - header `X-Want-Code: CODE` fails `CreateOrder` with CODE, message
///   `wanted CODE` and data `data:CODE`;
/// - customer `panic` panics, `uncoded` fails with a plain error, `slow`
///   sleeps past any deadline, `barrier` waits until `barrier` requests are
///   in flight at once;
/// - anything else succeeds, echoing the customer and the `X-Echo` header.
#[derive(Clone)]
pub struct TestOrders {
    pub barrier: Arc<Barrier>,
    /// Signalled when a `barrier` request enters the handler.
    pub entered: Arc<Notify>,
}

impl TestOrders {
    /// Requests from customer `barrier` wait until `n` of them are in flight.
    pub fn with_barrier(n: usize) -> Self {
        TestOrders { barrier: Arc::new(Barrier::new(n)), entered: Arc::default() }
    }
}

impl Default for TestOrders {
    fn default() -> Self {
        Self::with_barrier(1)
    }
}

/// An error with no code, to check it becomes INTERNAL without leaking.
#[derive(Debug)]
pub struct DatabaseDown;

impl std::fmt::Display for DatabaseDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("postgres://admin:hunter2@db/orders refused the connection")
    }
}

impl nats_micro_runtime::HandlerError for DatabaseDown {}

impl OrderService for TestOrders {
    async fn create_order(
        &self,
        ctx: RequestContext,
        request: CreateOrderRequest,
    ) -> Result<CreateOrderResponse, OrderServiceError> {
        if let Some(name) = ctx.header(WANT_CODE) {
            let code = OrderServiceErrorCode::from_code(&Code::from_wire(name));
            return Err(OrderServiceError::new(code, format!("wanted {name}")).with_data(format!("data:{name}").into_bytes()));
        }
        match request.customer_id.as_str() {
            "panic" => panic!("the handler blew up"),
            "uncoded" => Err(DatabaseDown)?,
            "slow" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            "barrier" => {
                self.entered.notify_one();
                self.barrier.wait().await;
            }
            _ => {}
        }
        if let Some(echo) = ctx.header("X-Echo") {
            ctx.set_response_header("X-Echoed", echo);
        }
        Ok(CreateOrderResponse {
            order: Some(Order { id: "o-1".into(), customer_id: request.customer_id, ..Default::default() }),
        })
    }

    async fn get_order(&self, _ctx: RequestContext, request: GetOrderRequest) -> Result<Order, OrderServiceError> {
        if request.id.is_empty() {
            return Err(OrderServiceError::not_found("no order with an empty id"));
        }
        Ok(Order { id: request.id, ..Default::default() })
    }
}

/// A request that succeeds.
pub fn order_request(customer: &str) -> CreateOrderRequest {
    CreateOrderRequest {
        customer_id: customer.into(),
        items: vec![LineItem { product_id: "p-1".into(), quantity: 2, unit_price_cents: 1250 }],
        ..Default::default()
    }
}

/// A nats-server, a started TestOrders service and a client.
pub struct Fixture {
    pub server: NatsServer,
    pub nats: async_nats::Client,
    pub service: nats_micro_runtime::Service,
    pub client: OrderServiceClient,
}

impl Fixture {
    /// Serves TestOrders with the proto's options.
    pub async fn start() -> Fixture {
        Self::start_with(|builder| builder).await
    }

    /// Serves TestOrders after `configure` adjusts the builder.
    pub async fn start_with(
        configure: impl FnOnce(nats_micro_runtime::ServiceBuilder) -> nats_micro_runtime::ServiceBuilder,
    ) -> Fixture {
        let server = NatsServer::start();
        let nats = server.connect().await;
        let service = configure(orders::service_builder(TestOrders::default())).start(&nats).await.expect("service starts");
        let client = OrderServiceClient::new(server.connect().await);
        Fixture { server, nats, service, client }
    }
}
