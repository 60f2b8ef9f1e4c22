//! Runs the cross-language stream scenario against whichever StreamService
//! serves `proto/streams/v1` on `$NATS_URL`: one line per check, exit
//! status 1 on the first mismatch.

use futures_util::TryStreamExt;
use nats_micro_tests::project::streams::v1::stream_service_nats::StreamServiceClient;
use nats_micro_tests::project::streams::v1::{ChatMessage, CountUpRequest, Number};
use nats_micro_tests::streams::STOPPED_EARLY;

fn check(name: &str, ok: bool, detail: impl std::fmt::Debug) {
    if ok {
        println!("ok {name}");
    } else {
        println!("FAIL {name}: {detail:?}");
        std::process::exit(1);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = StreamServiceClient::new(async_nats::connect(url).await?);

    // snippet: rust-stream-client
    let mut numbers = client.count_up(CountUpRequest { start: 1, count: 5, ..Default::default() }).await?;
    let mut values = Vec::new();
    while let Some(number) = numbers.message().await? {
        values.push(number.value);
    }
    let sum = client.sum(futures_util::stream::iter((1..=10).map(|value| Number { value }))).await?;
    let said = ["hi", "there"].map(|text| ChatMessage { text: text.into() });
    let replies: Vec<ChatMessage> = client.chat(futures_util::stream::iter(said)).await?.try_collect().await?;
    // end snippet
    check("count_up 1..5", values == [1, 2, 3, 4, 5], &values);
    check("sum 1..10", sum.total == 55 && sum.count == 10, (sum.total, sum.count));
    let replies: Vec<&str> = replies.iter().map(|r| r.text.as_str()).collect();
    check("chat echo and bye", replies == ["echo: hi", "echo: there", "bye"], &replies);

    let mut numbers = client.count_up(CountUpRequest { count: 20_000, ..Default::default() }).await?;
    let first = numbers.message().await;
    let ok = matches!(&first, Err(err) if err.is_too_many() && err.data().as_ref() == b"20000");
    check("count_up TOO_MANY with data", ok, &first);

    let mut numbers = client.count_up(CountUpRequest { count: 10, fail_after: 2, ..Default::default() }).await?;
    let (a, b, c) = (numbers.message().await, numbers.message().await, numbers.message().await);
    let ok = matches!((&a, &b), (Ok(Some(x)), Ok(Some(y))) if x.value == 0 && y.value == 1)
        && matches!(&c, Err(err) if err.is_failed_precondition());
    check("count_up FAILED_PRECONDITION after 2", ok, (&a, &b, &c));

    let negative = client.sum(futures_util::stream::iter([Number { value: 4 }, Number { value: -1 }])).await;
    check("sum negative INVALID_ARGUMENT", matches!(&negative, Err(err) if err.is_invalid_argument()), &negative);

    // Dropping a stream cancels it: the server's handler stops early.
    let stopped_early = || async {
        let answer = client.ping(ChatMessage { text: STOPPED_EARLY.into() }).await?;
        Ok::<u64, Box<dyn std::error::Error>>(answer.text.parse()?)
    };
    let before = stopped_early().await?;
    let mut numbers = client.count_up(CountUpRequest { count: 10_000, delay_ms: 10, ..Default::default() }).await?;
    numbers.message().await?;
    drop(numbers);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut after = before;
    while after == before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        after = stopped_early().await?;
    }
    check("cancel stops the CountUp handler", after == before + 1, (before, after));
    Ok(())
}
