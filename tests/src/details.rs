//! The ExplainService and ExplainOpenService of
//! `proto/details/v1/details.proto`: `Explain` fails in the fixed ways the
//! proto's comments list, one per `case`, with typed error details.

use std::time::Duration;

use nats_micro_runtime::rpc::{
    Any, ErrorInfo, Help, HelpLink, PreconditionFailure, PreconditionViolation, QuotaFailure, QuotaViolation, ResourceInfo,
};
use nats_micro_runtime::{Error, RequestContext};

use crate::project::details::v1::explain_open_service_nats::{ExplainOpenService, ExplainOpenServiceError};
use crate::project::details::v1::explain_service_nats::{ExplainService, ExplainServiceError};
use crate::project::details::v1::{ExplainRequest, ExplainResponse, Hint};

/// The error data of the `plain` case: `\0\xff{"id":42}\n`.
pub const PLAIN_DATA: &[u8] = b"\x00\xff{\"id\":42}\n";
/// The type URL of the `unknown` case's detail, a type no runtime knows.
pub const UNLISTED_TYPE_URL: &str = "type.googleapis.com/details.v1.Unlisted";
/// How many LocalizedMessages the `oversized` case adds.
pub const OVERSIZED_COUNT: usize = 200;

/// `details.v1.Hint` is sent as a detail, so it names itself (prost-build
/// is not asked to generate `Name` impls for the project's messages).
impl prost::Name for Hint {
    const NAME: &'static str = "Hint";
    const PACKAGE: &'static str = "details.v1";
    fn type_url() -> String {
        nats_micro_runtime::rpc::type_url::<Self>()
    }
}

/// The error of `case`, as the proto fixes it; `None` for a case that succeeds.
pub fn explain_error(case: &str) -> Option<Error> {
    let err = match case {
        "plain" => Error::not_found("plain").with_data(PLAIN_DATA),
        "standard" => Error::failed_precondition("standard")
            .with_data(&b"d"[..])
            .with_error_info(ErrorInfo::new("STOCK_LOW", "shop.example", [("sku", "A-1")]))
            .with_retry_info(Duration::from_millis(1500))
            .with_quota_failure(QuotaFailure {
                violations: vec![QuotaViolation { subject: "user:7".into(), description: "daily".into(), ..Default::default() }],
            })
            .with_precondition_failure(PreconditionFailure {
                violations: vec![PreconditionViolation {
                    r#type: "TOS".into(),
                    subject: "user:7".into(),
                    description: "terms".into(),
                }],
            })
            .with_field_violation("items[0].qty", "must be positive")
            .with_request_info("r-1", "s")
            .with_resource_info(ResourceInfo {
                resource_type: "order".into(),
                resource_name: "o-9".into(),
                owner: "u-7".into(),
                description: "locked".into(),
            })
            .with_help(Help { links: vec![HelpLink { description: "docs".into(), url: "https://example.com/h".into() }] })
            .with_localized_message("fr-FR", "échec"),
        "custom" => quota_gone().into_inner(),
        "debug" => Error::internal("debug").with_debug_info(["frame 1", "frame 2"], "secret").with_error_info(ErrorInfo::new(
            "DEBUGGED",
            "shop.example",
            [] as [(&str, &str); 0],
        )),
        "unknown" => Error::aborted("unknown").with_any(Any { type_url: UNLISTED_TYPE_URL.into(), value: vec![0x08, 0x01] }),
        "oversized" => (0..OVERSIZED_COUNT)
            .fold(Error::invalid_argument("oversized"), |err, _| err.with_localized_message("en", "x".repeat(8192))),
        _ => return None,
    };
    Some(err)
}

// snippet: rust-details-server
/// The `custom` case: a code of the proto's `error_codes`, with a message of
/// the proto (`Hint`, which implements `prost::Name`) and a retry hint as details.
fn quota_gone() -> ExplainServiceError {
    ExplainServiceError::quota_gone("custom")
        .with_detail(&Hint { text: "hint".into(), level: 7 })
        .with_retry_info(Duration::from_millis(250))
}
// end snippet

fn explain(request: ExplainRequest) -> Result<ExplainResponse, Error> {
    match explain_error(&request.case) {
        Some(err) => Err(err),
        None => Ok(ExplainResponse { case: request.case }),
    }
}

/// Both services: the same `Explain`, served with internal errors withheld
/// (ExplainService) and exposed (ExplainOpenService, see [`serve_both`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Explainer;

impl ExplainService for Explainer {
    async fn explain(&self, _ctx: RequestContext, request: ExplainRequest) -> Result<ExplainResponse, ExplainServiceError> {
        Ok(explain(request)?)
    }
}

impl ExplainOpenService for Explainer {
    async fn explain(&self, _ctx: RequestContext, request: ExplainRequest) -> Result<ExplainResponse, ExplainOpenServiceError> {
        Ok(explain(request)?)
    }
}

/// Starts ExplainService (internal errors withheld, as the proto says) and
/// ExplainOpenService (internal errors exposed) on `nats`.
pub async fn serve_both(
    nats: &async_nats::Client,
) -> Result<(nats_micro_runtime::Service, nats_micro_runtime::Service), nats_micro_runtime::StartError> {
    use crate::project::details::v1::{explain_open_service_nats, explain_service_nats};
    let withheld = explain_service_nats::serve(nats, Explainer).await?;
    let open = explain_open_service_nats::service_builder(Explainer).expose_internal_errors(true).start(nats).await?;
    Ok((withheld, open))
}
