// Scalar helpers shared by the quantizers: float32 rounding as C does it, byte views.

/** float32 rounding of a double: apply after every operation C does in `float`. */
export const f32 = Math.fround;

/** Round half to even (what `_mm256_round_ps(v, _MM_ROUND_NEAREST)` and ggml's `nearest_int` do). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v); // ties go up
  return r - v === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

/**
 * C's `roundf` of a float32 value: half away from zero. v ± 0.5 is exact in f64 wherever the result
 * can reach the next integer (|v| < 2^23), so the truncation rounds correctly.
 */
export function roundHalfAway(v: number): number {
  return Math.trunc(v < 0 ? v - 0.5 : v + 0.5);
}

/** The same bytes as signed int8. */
export function int8View(bytes: Uint8Array): Int8Array {
  return new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function readU32(bytes: Uint8Array, o: number): number {
  return (bytes[o] | (bytes[o + 1] << 8) | (bytes[o + 2] << 16) | (bytes[o + 3] << 24)) >>> 0;
}

export function readI16(bytes: Uint8Array, o: number): number {
  return ((bytes[o] | (bytes[o + 1] << 8)) << 16) >> 16;
}

export function readF32(bytes: Uint8Array, o: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset + o, 4).getFloat32(0, true);
}

export function checkRow(name: string, n: number, blockSize: number, bytes: Uint8Array | undefined, typeSize: number): number {
  if (n % blockSize !== 0) {
    throw new RangeError(`${name}: row length ${n} is not a multiple of the block size ${blockSize}`);
  }
  const nb = n / blockSize;
  if (bytes && bytes.length < nb * typeSize) {
    throw new RangeError(`${name}: ${n} values need ${nb * typeSize} bytes, got ${bytes.length}`);
  }
  return nb;
}
