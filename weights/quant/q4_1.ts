// Q4_1: blocks of 32 weights, 20 bytes: f16 d; f16 m; u8 qs[16]. w = d * q + m. Activations: Q8_1.

import { checkRow, f32, int8View } from "./common";
import { readF16, writeF16 } from "./half";
import { Q8_1_BYTES } from "./activations";

export const QK4_1 = 32;
export const Q4_1_BYTES = 20;

export function dequantize_q4_1(src: Uint8Array, n: number): Float32Array {
  const nb = checkRow("q4_1", n, QK4_1, src, Q4_1_BYTES);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * Q4_1_BYTES;
    const d = readF16(src, o);
    const m = readF16(src, o + 2);
    for (let j = 0; j < 16; j++) {
      const b = src[o + 4 + j];
      y[i * 32 + j] = f32(f32((b & 0x0f) * d) + m);
      y[i * 32 + j + 16] = f32(f32((b >> 4) * d) + m);
    }
  }
  return y;
}

/** quantize_row_q4_1_ref: d = (max - min) / 15, m = min. */
export function quantize_q4_1(x: Float32Array): Uint8Array {
  const nb = checkRow("q4_1", x.length, QK4_1, undefined, Q4_1_BYTES);
  const out = new Uint8Array(nb * Q4_1_BYTES);
  for (let i = 0; i < nb; i++) {
    const xb = i * 32;
    let min = Infinity;
    let max = -Infinity;
    for (let j = 0; j < 32; j++) {
      const v = x[xb + j];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const d = f32(f32(max - min) / 15);
    const id = d !== 0 ? f32(1 / d) : 0;
    const o = i * Q4_1_BYTES;
    writeF16(out, o, d);
    writeF16(out, o + 2, min);
    for (let j = 0; j < 16; j++) {
      const x0 = f32(f32(x[xb + j] - min) * id);
      const x1 = f32(f32(x[xb + 16 + j] - min) * id);
      const xi0 = Math.min(15, Math.trunc(f32(x0 + 0.5)));
      const xi1 = Math.min(15, Math.trunc(f32(x1 + 0.5)));
      out[o + 4 + j] = (xi0 | (xi1 << 4)) & 0xff;
    }
  }
  return out;
}

/** ggml_vec_dot_q4_1_q8_1_generic: the weight's min m meets the activation's s = d * sum(q). */
export function vecDot_q4_1_q8_1(w: Uint8Array, x: Uint8Array, n: number): number {
  const nb = checkRow("q4_1", n, QK4_1, w, Q4_1_BYTES);
  checkRow("q8_1", n, 32, x, Q8_1_BYTES);
  const xs = int8View(x);
  let sumf = 0;
  for (let i = 0; i < nb; i++) {
    const ow = i * Q4_1_BYTES;
    const ox = i * Q8_1_BYTES;
    let sumi0 = 0;
    let sumi1 = 0;
    for (let j = 0; j < 16; j++) {
      const b = w[ow + 4 + j];
      sumi0 += (b & 0x0f) * xs[ox + 4 + j];
      sumi1 += (b >> 4) * xs[ox + 4 + j + 16];
    }
    const dd = f32(readF16(w, ow) * readF16(x, ox));
    sumf = f32(sumf + f32(f32(dd * (sumi0 + sumi1)) + f32(readF16(w, ow + 2) * readF16(x, ox + 2))));
  }
  return sumf;
}
