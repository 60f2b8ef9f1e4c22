/**
 * `nats-micro-runtime/node`: file helpers of chunked transfer (PROTOCOL
 * §12.5) for Node, kept out of the package's main entry so that it stays
 * usable in browsers. A file is read and written piece by piece, never held
 * in memory whole; a download lands in a temporary file beside its target,
 * renamed only once every check passed and removed on failure.
 *
 * ```ts
 * import { receiveToFile, sendFile } from "nats-micro-runtime/node";
 * const result = await sendFile("report.bin", (source) => client.uploadFrom(source));
 * const checked = await receiveToFile("copy.bin", (sink) => client.downloadTo({ id: "r1" }, sink));
 * ```
 */

import { createReadStream } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import type { ByteSink, ChunkedResult } from "./chunked.js";

/** The bytes of a file, read in pieces of `pieceSize` bytes (default 1 MiB). */
export function fileSource(path: string, pieceSize = 1024 * 1024): AsyncIterable<Uint8Array> {
  return createReadStream(path, { highWaterMark: pieceSize });
}

/** A {@link ByteSink} into a file: written to a temporary file beside `path`, renamed to `path` on `close()`, removed on `abort()`. */
export interface FileSink extends ByteSink {
  /** The temporary file being written. */
  readonly temporary: string;
  close(): Promise<void>;
  abort(reason?: unknown): Promise<void>;
}

/** A sink that writes `path` atomically (see {@link FileSink}). */
export function fileSink(path: string): FileSink {
  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.part`);
  let file: Awaited<ReturnType<typeof open>> | undefined;
  let opening: Promise<Awaited<ReturnType<typeof open>>> | undefined;
  const handle = () => {
    opening ??= open(temporary, "w").then((f) => {
      file = f;
      return f;
    });
    return opening;
  };
  return {
    temporary,
    async write(chunk) {
      const f = file ?? (await handle());
      let offset = 0;
      while (offset < chunk.length) {
        const { bytesWritten } = await f.write(chunk, offset, chunk.length - offset);
        offset += bytesWritten;
      }
    },
    async close() {
      const f = file ?? (await handle());
      await f.close();
      await rename(temporary, path);
    },
    async abort() {
      await file?.close().catch(() => undefined);
      await rm(temporary, { force: true });
    },
  };
}

/**
 * Sends a file through an upload: `upload` is a generated client's
 * `…From` method (or any function taking a byte source).
 *
 * ```ts
 * const result = await sendFile("big.bin", (source) => client.uploadFrom(source));
 * ```
 */
export function sendFile<R>(path: string, upload: (source: AsyncIterable<Uint8Array>) => Promise<R>): Promise<R> {
  return upload(fileSource(path));
}

/**
 * Receives a download into `path`: `download` is a generated client's
 * `…To` method bound to its request. The file appears only once the size
 * and digest were checked; on any failure nothing is left behind.
 *
 * ```ts
 * const checked = await receiveToFile("copy.bin", (sink) => client.downloadTo({ size: 1n << 26n }, sink));
 * ```
 */
export async function receiveToFile(path: string, download: (sink: ByteSink) => Promise<ChunkedResult>): Promise<ChunkedResult> {
  const sink = fileSink(path);
  try {
    return await download(sink);
  } catch (err) {
    // The download aborts its sink itself; a download that failed before touching it leaves nothing either.
    await sink.abort(err);
    throw err;
  }
}
