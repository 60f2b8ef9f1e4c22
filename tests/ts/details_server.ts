/**
 * Serves `details.v1.ExplainService` (internal errors withheld) and
 * `details.v1.ExplainOpenService` (exposed) as proto/details/v1/details.proto
 * fixes them, for the cross-language error-details tests (PROTOCOL §4.1):
 * each case of `Explain` fails with the code, message, data and details the
 * proto names.
 *
 * usage: NATS_URL=nats://... node details_server.js. Prints `ready ID` once
 * serving; stops gracefully on SIGTERM (or when stdin closes), then prints
 * `stopped`.
 */

import { connect } from "@nats-io/transport-node";
import { create } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import type * as runtime from "nats-micro-runtime";
import { HintSchema } from "./gen/details/v1/details_pb.js";
import {
  ExplainOpenServiceError,
  ExplainServiceError,
  registerExplainOpenServiceHandlers,
  registerExplainServiceHandlers,
  type IExplainOpenServiceNats,
  type IExplainServiceNats,
} from "./gen/details/v1/details_nats.pb.js";
import type { ExplainRequest } from "./gen/details/v1/details_pb.js";

/** The `plain` case's data: `\0\xff{"id":42}\n`. */
const PLAIN_DATA = new Uint8Array([0x00, 0xff, 0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0x34, 0x32, 0x7d, 0x0a]);

type ErrorClass = runtime.ErrorClass<runtime.NatsMicroError>;

/** `Explain` as the proto fixes it, failing with errors of `errorClass`. */
function explain(errorClass: ErrorClass) {
  return (request: ExplainRequest, ctx: runtime.RequestContext) => {
    const fail = (code: string, data?: Uint8Array, options?: runtime.NatsMicroErrorOptions) =>
      new errorClass(code, ctx.method, request.case, data, options);
    switch (request.case) {
      case "plain":
        throw fail("NOT_FOUND", PLAIN_DATA);
      // snippet: ts-error-details-server
      case "standard":
        throw fail("FAILED_PRECONDITION", new TextEncoder().encode("d"))
          .withErrorInfo("STOCK_LOW", "shop.example", { sku: "A-1" })
          .withRetryInfo(1_500)
          .withQuotaFailure({ subject: "user:7", description: "daily" })
          .withPreconditionFailure({ type: "TOS", subject: "user:7", description: "terms" })
          .withBadRequest({ field: "items[0].qty", description: "must be positive" })
          .withRequestInfo("r-1", "s")
          .withResourceInfo({ resourceType: "order", resourceName: "o-9", owner: "u-7", description: "locked" })
          .withHelp({ description: "docs", url: "https://example.com/h" })
          .withLocalizedMessage("fr-FR", "échec");
      case "custom":
        throw fail("QUOTA_GONE").withDetail(HintSchema, { text: "hint", level: 7 }).withRetryInfo(250);
      // end snippet
      case "debug":
        throw fail("INTERNAL").withDebugInfo(["frame 1", "frame 2"], "secret").withErrorInfo("DEBUGGED", "shop.example");
      case "unknown":
        throw fail("ABORTED", undefined, {
          details: [create(AnySchema, { typeUrl: "type.googleapis.com/details.v1.Unlisted", value: new Uint8Array([0x08, 0x01]) })],
        });
      case "oversized": {
        const error = fail("INVALID_ARGUMENT");
        const text = "x".repeat(8192);
        for (let i = 0; i < 200; i++) {
          error.withLocalizedMessage("en", text);
        }
        throw error;
      }
      default:
        return { case: request.case };
    }
  };
}

const withheld: IExplainServiceNats = { explain: explain(ExplainServiceError) };
const open: IExplainOpenServiceNats = { explain: explain(ExplainOpenServiceError) };

const url = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const nc = await connect({ servers: url });
const services = [
  await registerExplainServiceHandlers(nc, withheld),
  await registerExplainOpenServiceHandlers(nc, open, { exposeInternalErrors: true }),
];
console.log(`ready ${services.map((s) => s.id).join(" ")}`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) {
    return;
  }
  stopping = true;
  await Promise.all(services.map((s) => s.stop({ drainTimeout: 2_000 })));
  await nc.drain();
  console.log("stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void stop());
process.stdin.on("end", () => void stop());
process.stdin.resume();
