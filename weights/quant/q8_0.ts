// Q8_0: blocks of 32 weights, 34 bytes: f16 d; i8 qs[32]. w = d * q. Activations: Q8_0.

import { Q8_0_BYTES } from "./activations";
import { checkRow, f32, int8View, roundHalfAway } from "./common";
import { readF16, writeF16 } from "./half";

export const QK8_0 = 32;
export { Q8_0_BYTES };

export function dequantize_q8_0(src: Uint8Array, n: number): Float32Array {
  const nb = checkRow("q8_0", n, QK8_0, src, Q8_0_BYTES);
  const qs = int8View(src);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * Q8_0_BYTES;
    const d = readF16(src, o);
    for (let j = 0; j < 32; j++) y[i * 32 + j] = f32(qs[o + 2 + j] * d);
  }
  return y;
}

/**
 * quantize_row_q8_0_ref (what llama-quantize writes): d = amax/127, q = roundf(x * (1/d)). Not the
 * activation path, which multiplies by 127/amax and rounds half to even (see activations.ts).
 */
export function quantize_q8_0(x: Float32Array): Uint8Array {
  const nb = checkRow("q8_0", x.length, QK8_0, undefined, Q8_0_BYTES);
  const out = new Uint8Array(nb * Q8_0_BYTES);
  for (let i = 0; i < nb; i++) {
    const xb = i * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) {
      const a = Math.abs(x[xb + j]);
      if (a > amax) amax = a;
    }
    const d = f32(amax / 127);
    const id = d !== 0 ? f32(1 / d) : 0;
    const o = i * Q8_0_BYTES;
    writeF16(out, o, d);
    for (let j = 0; j < 32; j++) out[o + 2 + j] = roundHalfAway(f32(x[xb + j] * id)) & 0xff;
  }
  return out;
}

/** ggml_vec_dot_q8_0_q8_0_generic. */
export function vecDot_q8_0_q8_0(w: Uint8Array, x: Uint8Array, n: number): number {
  const nb = checkRow("q8_0", n, QK8_0, w, Q8_0_BYTES);
  checkRow("q8_0", n, 32, x, Q8_0_BYTES);
  const ws = int8View(w);
  const xs = int8View(x);
  let sumf = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * Q8_0_BYTES;
    let sumi = 0;
    for (let j = 2; j < 34; j++) sumi += ws[o + j] * xs[o + j];
    sumf = f32(sumf + f32(sumi * f32(readF16(w, o) * readF16(x, o))));
  }
  return sumf;
}
