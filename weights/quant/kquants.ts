// Pieces the k-quant files share: the q8_K activation block and the packed 6-bit scales of
// Q4_K/Q5_K.

import { readF32 } from "./common";

/** q8_K block at `o`: f32 d; i8 qs[256] at o+4; i16 bsums[16] at o+260. */
export function q8KScale(x: Uint8Array, o: number): number {
  return readF32(x, o);
}

export function q8KBsum(x: Uint8Array, o: number, g: number): number {
  const p = o + 260 + 2 * g;
  return ((x[p] | (x[p + 1] << 8)) << 16) >> 16;
}

/** get_scale_min_k4: sub-block j's 6-bit scale and min from the 12 packed bytes at `q + o`. */
export function scaleMinK4(j: number, q: Uint8Array, o: number, out: { sc: number; m: number }): void {
  if (j < 4) {
    out.sc = q[o + j] & 63;
    out.m = q[o + j + 4] & 63;
  } else {
    out.sc = (q[o + j + 4] & 0x0f) | ((q[o + j - 4] >> 6) << 4);
    out.m = (q[o + j + 4] >> 4) | ((q[o + j] >> 6) << 4);
  }
}
