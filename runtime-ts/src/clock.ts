/** The monotonic clock deadlines, statistics and stream liveness are measured on. */

/** Milliseconds on a monotonic clock. */
export function now(): number {
  return performance.now();
}
