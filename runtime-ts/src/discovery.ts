/** ADR-32 discovery documents: the replies to `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`. */

import type { EndpointInfo } from "./spec.js";

/** One ADR-32 discovery document's common fields. */
export interface Identity {
  type: string;
  name: string;
  id: string;
  version: string;
  metadata: Record<string, string>;
}

/** Reply to `$SRV.PING`. */
export type PingResponse = Identity;

/** Reply to `$SRV.INFO`. */
export interface InfoResponse extends Identity {
  description: string;
  endpoints: EndpointInfo[];
}

/** One endpoint in a STATS reply. */
export interface EndpointStats {
  name: string;
  subject: string;
  queue_group?: string;
  num_requests: number;
  num_errors: number;
  last_error: string;
  processing_time: number;
  average_processing_time: number;
  /**
   * Our own counters: `shed`, the requests refused because the backlog was
   * full (PROTOCOL §5); `persist_failures`, for an endpoint that persists
   * its responses, the writes that failed (PROTOCOL §12.2).
   */
  data: { shed: number; persist_failures?: number };
}

/** Reply to `$SRV.STATS`. */
export interface StatsResponse extends Identity {
  started: string;
  endpoints: EndpointStats[];
}
