/** pattern(seed) of the persistence scenario (proto/store/v1/store.proto): byte i is (i * 31 + seed) mod 251. */

/** `length` bytes of pattern(seed) from byte `start`. */
export function pattern(start: number, length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    out[i] = (((start + i) % 251) * 31 + seed) % 251;
  }
  return out;
}

/** pattern(seed) of `size` bytes, made piece by piece (never held whole). */
export async function* patternSource(size: number, seed: number, piece = 256 * 1024): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < size; offset += piece) {
    yield pattern(offset, Math.min(piece, size - offset), seed);
  }
}
