//! The example client gets every outcome it is written to handle.

use nats_micro_examples::{InMemoryOrders, order::v1::order_service_nats};
use nats_micro_test_support::harness::NatsServer;

#[tokio::test]
async fn example_client_handles_every_typed_error() {
    let server = NatsServer::start();
    let service = order_service_nats::serve(&server.connect().await, InMemoryOrders::default()).await.expect("starts");
    let lines = nats_micro_examples::run_client(server.connect().await).await;
    assert_eq!(
        lines,
        [
            "placed ord-1 for 3998 cents (trace demo-1)",
            "found ord-1 with 1 item(s)",
            "expired cart: ORDER_EXPIRED, ask the customer to refresh the cart (order expired after 30 minutes)",
            "declined card: PAYMENT_FAILED, ask for another card (the card was declined)",
            "sold out: STOCK_UNAVAILABLE, drop item sold-out (an item is out of stock)",
            "empty order: INVALID_ARGUMENT, fix the request (an order needs at least one item)",
            "lookup: NOT_FOUND (no order ord-404)",
        ]
    );
    service.stop().await;
}
