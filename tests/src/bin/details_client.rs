//! Runs the cross-language error-details scenario (PROTOCOL §4.1) against
//! whichever ExplainService and ExplainOpenService serve `proto/details/v1`
//! on `$NATS_URL`: one `ok <case>` line per check, exit status 1 with a
//! `FAIL <case>: …` line on the first mismatch.

use std::time::Duration;

use bytes::Bytes;
use nats_micro_runtime::rpc::{Any, BadRequest, DebugInfo, ErrorInfo, LocalizedMessage, RequestInfo, ResourceInfo};
use nats_micro_runtime::{Code, Error};
use nats_micro_tests::details::{OVERSIZED_COUNT, PLAIN_DATA, UNLISTED_TYPE_URL};
use nats_micro_tests::project::details::v1::explain_open_service_nats::ExplainOpenServiceClient;
use nats_micro_tests::project::details::v1::explain_service_nats::ExplainServiceClient;
use nats_micro_tests::project::details::v1::{ExplainRequest, Hint};

fn check(name: &str, ok: bool, detail: impl std::fmt::Debug) {
    if ok {
        println!("ok {name}");
    } else {
        println!("FAIL {name}: {detail:?}");
        std::process::exit(1);
    }
}

/// One of the two services, called the same way.
struct Target {
    /// Printed after the case name (`""` for ExplainService).
    suffix: &'static str,
    /// The subject of `Explain`.
    subject: &'static str,
    /// Whether internal errors are exposed (ExplainOpenService).
    open: bool,
}

async fn explain(nats: &async_nats::Client, target: &Target, case: &str) -> Result<Error, String> {
    let request = ExplainRequest { case: case.into() };
    let reply = if target.open {
        ExplainOpenServiceClient::new(nats.clone()).explain(request).await.map(drop).map_err(|err| err.into_inner())
    } else {
        ExplainServiceClient::new(nats.clone()).explain(request).await.map(drop).map_err(|err| err.into_inner())
    };
    match reply {
        Ok(()) => Err(format!("{case} succeeded")),
        Err(err) if err.is_transport() => Err(format!("{case}: transport failure {err}")),
        Err(err) => Ok(err),
    }
}

fn standard_ok(err: &Error) -> bool {
    let types: Vec<&str> = err.details_any().iter().map(|any| any.type_url.as_str()).collect();
    let expected_types = [
        "ErrorInfo",
        "RetryInfo",
        "QuotaFailure",
        "PreconditionFailure",
        "BadRequest",
        "RequestInfo",
        "ResourceInfo",
        "Help",
        "LocalizedMessage",
    ]
    .map(|name| format!("type.googleapis.com/google.rpc.{name}"));
    let info = err.error_info().unwrap_or_default();
    let quota = err.quota_failure().unwrap_or_default();
    let precondition = err.precondition_failure().unwrap_or_default();
    let bad = err.bad_request().unwrap_or_default();
    let request = err.request_info().unwrap_or_default();
    let resource = err.resource_info().unwrap_or_default();
    let help = err.help().unwrap_or_default();
    let localized = err.localized_message().unwrap_or_default();
    *err.code() == Code::FailedPrecondition
        && err.message() == "standard"
        && &err.data()[..] == b"d"
        && types == expected_types
        && info == ErrorInfo::new("STOCK_LOW", "shop.example", [("sku", "A-1")])
        && err.retry_info().and_then(|retry| retry.delay()) == Some(Duration::from_millis(1500))
        && quota.violations.len() == 1
        && (quota.violations[0].subject.as_str(), quota.violations[0].description.as_str()) == ("user:7", "daily")
        && precondition.violations.len() == 1
        && precondition.violations[0].r#type == "TOS"
        && precondition.violations[0].subject == "user:7"
        && precondition.violations[0].description == "terms"
        && bad.field_violations.len() == 1
        && bad.field_violations[0].field == "items[0].qty"
        && bad.field_violations[0].description == "must be positive"
        && request == RequestInfo { request_id: "r-1".into(), serving_data: "s".into() }
        && resource
            == ResourceInfo {
                resource_type: "order".into(),
                resource_name: "o-9".into(),
                owner: "u-7".into(),
                description: "locked".into(),
            }
        && help.links.len() == 1
        && (help.links[0].description.as_str(), help.links[0].url.as_str()) == ("docs", "https://example.com/h")
        && localized == LocalizedMessage { locale: "fr-FR".into(), message: "échec".into() }
}

async fn run(nats: &async_nats::Client, target: &Target) -> Result<(), Box<dyn std::error::Error>> {
    let name = |case: &str| format!("{case}{}", target.suffix);

    let err = explain(nats, target, "plain").await?;
    let ok = *err.code() == Code::NotFound && err.message() == "plain" && &err.data()[..] == PLAIN_DATA;
    check(&name("plain"), ok && err.details_any().is_empty(), &err);
    // The same, read raw: no marker, the body is exactly the data.
    let raw = nats
        .request(target.subject, Bytes::from(prost::Message::encode_to_vec(&ExplainRequest { case: "plain".into() })))
        .await?;
    let headers = raw.headers.clone().unwrap_or_default();
    let ok = headers.get("Nats-Micro-Error-Details").is_none()
        && headers.get("Nats-Service-Error").map(|v| v.as_str()) == Some("plain")
        && &raw.payload[..] == PLAIN_DATA;
    check(&name("plain raw"), ok, (&headers, &raw.payload));

    let err = explain(nats, target, "standard").await?;
    check(&name("standard"), standard_ok(&err), &err);

    let err = explain(nats, target, "custom").await?;
    // snippet: rust-details-client
    let hint: Option<Hint> = err.detail::<Hint>(); // any message type, found by its full name
    let retry_after: Option<Duration> = err.retry_info().and_then(|retry| retry.delay());
    let every_detail: &[Any] = err.details_any(); // in order, unknown types included
    // end snippet
    let types: Vec<&str> = every_detail.iter().map(|any| any.type_url.as_str()).collect();
    let ok = *err.code() == Code::custom("QUOTA_GONE")
        && err.message() == "custom"
        && err.data().is_empty()
        && types == ["type.googleapis.com/details.v1.Hint", "type.googleapis.com/google.rpc.RetryInfo"]
        && hint == Some(Hint { text: "hint".into(), level: 7 })
        && retry_after == Some(Duration::from_millis(250));
    check(&name("custom"), ok, &err);

    let err = explain(nats, target, "debug").await?;
    let debug = err.debug_info();
    let info = err.error_info();
    let ok = *err.code() == Code::Internal
        && err.message() == "debug"
        && info.is_some_and(|info| (info.reason.as_str(), info.domain.as_str()) == ("DEBUGGED", "shop.example"))
        && match target.open {
            true => {
                err.details_any().len() == 2
                    && debug
                        == Some(DebugInfo { stack_entries: vec!["frame 1".into(), "frame 2".into()], detail: "secret".into() })
            }
            false => err.details_any().len() == 1 && debug.is_none(),
        };
    check(&name("debug"), ok, &err);

    let err = explain(nats, target, "unknown").await?;
    let ok = *err.code() == Code::Aborted
        && err.message() == "unknown"
        && err.details_any().len() == 1
        && err.details_any()[0].type_url == UNLISTED_TYPE_URL
        && err.details_any()[0].value == [0x08, 0x01];
    check(&name("unknown"), ok, &err);

    let err = explain(nats, target, "oversized").await?;
    let localized = err.details::<LocalizedMessage>();
    let last = err.details_any().last().and_then(nats_micro_runtime::rpc::unpack::<ErrorInfo>);
    let kept = localized.len();
    let ok = *err.code() == Code::InvalidArgument
        && err.message() == "oversized"
        && kept > 0
        && kept < OVERSIZED_COUNT
        && err.details_any().len() == kept + 1
        && localized.iter().all(|m| m.locale == "en" && m.message.len() == 8192 && m.message.bytes().all(|b| b == b'x'))
        && last == Some(ErrorInfo::new("DETAILS_TRUNCATED", "nats-micro", [("dropped", (OVERSIZED_COUNT - kept).to_string())]));
    check(&name("oversized"), ok, (err.code(), err.message(), kept, &last));

    // A request that does not decode, sent raw: the runtime's INVALID_ARGUMENT with a BadRequest.
    let raw = nats.request(target.subject, Bytes::from_static(b"\xff\xff\xff")).await?;
    let headers = raw.headers.clone().unwrap_or_default();
    let err = Error::from_reply(&headers, &raw.payload);
    let violation = err.as_ref().and_then(Error::bad_request).filter(|bad| bad.field_violations.len() == 1);
    let ok = err.as_ref().is_some_and(|err| *err.code() == Code::InvalidArgument)
        && violation.is_some_and(|bad: BadRequest| !bad.field_violations[0].description.is_empty());
    check(&name("malformed"), ok, &err);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let nats = async_nats::connect(url).await?;
    run(&nats, &Target { suffix: "", subject: "details.v1.explain.explain", open: false }).await?;
    run(&nats, &Target { suffix: " (open)", subject: "details.v1.open.explain", open: true }).await?;
    Ok(())
}
