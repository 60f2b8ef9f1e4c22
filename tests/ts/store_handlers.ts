/**
 * The handlers of `store.v1.ProfileService` as the persistence scenario
 * fixes them (see store_server.ts), shared by the server program and the
 * checks.
 */

import { createHash } from "node:crypto";

import * as runtime from "nats-micro-runtime";
import type { Profile } from "./gen/store/v1/store_pb.js";
import {
  type IProfileServiceNats,
  newProfileServiceProfileRejectedError,
  newProfileServiceUnavailableError,
  ProfileServiceNatsSpec,
} from "./gen/store/v1/store_nats.pb.js";
import { pattern, patternSource } from "./store_pattern.js";

/** The scenario's handlers, with their own per-id call counter. */
export function storeHandlers(): IProfileServiceNats {
  const seen = new Map<string, bigint>();

  function versioned(request: Profile, method: string): Profile {
    if (request.name === "reject") {
      throw newProfileServiceProfileRejectedError(method, `profile ${request.id} rejected`);
    }
    const version = (seen.get(request.id) ?? 0n) + 1n;
    seen.set(request.id, version);
    return { ...request, version };
  }

  return {
    saveProfile: (request, ctx) => versioned(request, ctx.method),
    createProfile: (request, ctx) => versioned(request, ctx.method),
    updateProfile: (request, ctx) => versioned(request, ctx.method),
    touchProfile: (request, ctx) => versioned(request, ctx.method),
    openSession(request) {
      const spec = ProfileServiceNatsSpec.methods.openSession;
      const key = runtime.requestKey(spec.input, spec.kvStore.key, request, "kv", spec.method);
      return { key, lifetime: { seconds: 1n } };
    },
    annotate: (request) => request,
    generateReport: (request) => ({ id: request.id, body: pattern(0, request.size, 0) }),
    // snippet: ts-chunked-server
    async upload(requests) {
      const hash = createHash("sha256");
      const upload = runtime.chunkedUploadReader(ProfileServiceNatsSpec.streams.upload, requests);
      for await (const chunk of upload) {
        hash.update(chunk);
      }
      return { size: BigInt(upload.result?.size ?? 0), sha256: hash.digest("hex") };
    },
    async *download(request, ctx) {
      const size = Number(request.size);
      const failAfter = Number(request.failAfter);
      let sent = 0;
      for await (const chunk of runtime.chunkedDownload(ProfileServiceNatsSpec.streams.download, patternSource(size, request.seed), ctx)) {
        if (failAfter > 0 && sent >= failAfter) {
          throw newProfileServiceUnavailableError(ctx.method, "cut");
        }
        sent += chunk.data?.length ?? 0;
        yield chunk;
      }
    },
    // end snippet
  };
}
