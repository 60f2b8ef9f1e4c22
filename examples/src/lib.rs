//! The order example: an in-memory `OrderService` and a client that
//! triggers and handles its typed errors.

use std::collections::HashMap;
use std::sync::Mutex;

use nats_micro_runtime::RequestContext;

/// Messages and services generated from `proto/order/v1/order.proto`.
// snippet: include
pub mod order {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/order.v1.rs"));
    }
}
// end snippet

use order::v1::order::Status;
use order::v1::order_service_nats::{OrderService, OrderServiceClient, OrderServiceError};
use order::v1::{CreateOrderRequest, CreateOrderResponse, GetOrderRequest, LineItem, Order};

/// Carts older than this expire.
const CART_LIFETIME_MINUTES: i32 = 30;

/// Orders kept in memory, with a small stock.
#[derive(Default)]
pub struct InMemoryOrders {
    orders: Mutex<HashMap<String, Order>>,
}

// snippet: service
impl OrderService for InMemoryOrders {
    async fn create_order(
        &self,
        ctx: RequestContext,
        request: CreateOrderRequest,
    ) -> Result<CreateOrderResponse, OrderServiceError> {
        if request.items.is_empty() {
            return Err(OrderServiceError::invalid_argument("an order needs at least one item"));
        }
        if request.cart_age_minutes > CART_LIFETIME_MINUTES {
            return Err(OrderServiceError::order_expired(format!("order expired after {CART_LIFETIME_MINUTES} minutes")));
        }
        if request.card_token == "declined" {
            return Err(OrderServiceError::payment_failed("the card was declined"));
        }
        if let Some(item) = request.items.iter().find(|item| item.product_id == "sold-out") {
            return Err(
                OrderServiceError::stock_unavailable("an item is out of stock").with_data(item.product_id.clone().into_bytes())
            );
        }
        let mut orders = self.orders.lock().map_err(|_| OrderServiceError::internal("order store poisoned"))?;
        let id = format!("ord-{}", orders.len() + 1);
        let order = Order {
            id: id.clone(),
            customer_id: request.customer_id,
            total_cents: request.items.iter().map(|i| i.unit_price_cents * i64::from(i.quantity)).sum(),
            items: request.items,
            status: Status::Placed as i32,
        };
        orders.insert(id, order.clone());
        if let Some(trace) = ctx.header("X-Trace-Id") {
            ctx.set_response_header("X-Trace-Id", trace);
        }
        Ok(CreateOrderResponse { order: Some(order) })
    }

    async fn get_order(&self, _ctx: RequestContext, request: GetOrderRequest) -> Result<Order, OrderServiceError> {
        let orders = self.orders.lock().map_err(|_| OrderServiceError::internal("order store poisoned"))?;
        orders.get(&request.id).cloned().ok_or_else(|| OrderServiceError::not_found(format!("no order {}", request.id)))
    }
}
// end snippet

fn cart(product: &str, age_minutes: i32, card: &str) -> CreateOrderRequest {
    CreateOrderRequest {
        customer_id: "cust-7".into(),
        items: vec![LineItem { product_id: product.into(), quantity: 2, unit_price_cents: 1999 }],
        cart_age_minutes: age_minutes,
        card_token: card.into(),
    }
}

/// Places orders that succeed and fail, handling each typed error; returns
/// one line per call.
// snippet: client
pub async fn run_client(nats: async_nats::Client) -> Vec<String> {
    let client = OrderServiceClient::new(nats);
    let mut lines = Vec::new();
    let request = nats_micro_runtime::Request::new(cart("book", 5, "ok")).with_header("X-Trace-Id", "demo-1");
    match client.create_order(request).await {
        Ok(response) => {
            let trace = response.headers().get("X-Trace-Id").map(|v| v.as_str().to_owned()).unwrap_or_default();
            let order = response.into_inner().order.unwrap_or_default();
            lines.push(format!("placed {} for {} cents (trace {trace})", order.id, order.total_cents));
            match client.get_order(GetOrderRequest { id: order.id.clone() }).await {
                Ok(found) => lines.push(format!("found {} with {} item(s)", found.id, found.items.len())),
                Err(err) => lines.push(format!("unexpected: {err}")),
            }
        }
        Err(err) => lines.push(format!("unexpected: {err}")),
    }
    for (label, request) in [
        ("expired cart", cart("book", 45, "ok")),
        ("declined card", cart("book", 5, "declined")),
        ("sold out", cart("sold-out", 5, "ok")),
        ("empty order", CreateOrderRequest::default()),
    ] {
        let line = match client.create_order(request).await {
            Ok(_) => format!("{label}: unexpectedly placed"),
            Err(err) if err.is_order_expired() => {
                format!("{label}: ORDER_EXPIRED, ask the customer to refresh the cart ({})", err.message())
            }
            Err(err) if err.is_payment_failed() => format!("{label}: PAYMENT_FAILED, ask for another card ({})", err.message()),
            Err(err) if err.is_stock_unavailable() => {
                format!("{label}: STOCK_UNAVAILABLE, drop item {} ({})", String::from_utf8_lossy(err.data()), err.message())
            }
            Err(err) if err.is_invalid_argument() => format!("{label}: INVALID_ARGUMENT, fix the request ({})", err.message()),
            Err(err) => format!("{label}: unexpected {err}"),
        };
        lines.push(line);
    }
    match client.get_order(GetOrderRequest { id: "ord-404".into() }).await {
        Err(err) if err.is_not_found() => lines.push(format!("lookup: NOT_FOUND ({})", err.message())),
        other => lines.push(format!("lookup: unexpected {other:?}")),
    }
    lines
}
// end snippet
