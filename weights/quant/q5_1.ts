// Q5_1: blocks of 32 weights, 24 bytes: f16 d; f16 m; u32 qh; u8 qs[16]. w = d * q + m.
// Activations: Q8_1.

import { checkRow, f32, int8View, readU32 } from "./common";
import { readF16, writeF16 } from "./half";
import { Q8_1_BYTES } from "./activations";

export const QK5_1 = 32;
export const Q5_1_BYTES = 24;

export function dequantize_q5_1(src: Uint8Array, n: number): Float32Array {
  const nb = checkRow("q5_1", n, QK5_1, src, Q5_1_BYTES);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * Q5_1_BYTES;
    const d = readF16(src, o);
    const m = readF16(src, o + 2);
    const qh = readU32(src, o + 4);
    for (let j = 0; j < 16; j++) {
      const b = src[o + 8 + j];
      const xh0 = ((qh >>> j) << 4) & 0x10;
      const xh1 = (qh >>> (j + 12)) & 0x10;
      y[i * 32 + j] = f32(f32(((b & 0x0f) | xh0) * d) + m);
      y[i * 32 + j + 16] = f32(f32(((b >> 4) | xh1) * d) + m);
    }
  }
  return y;
}

/** quantize_row_q5_1_ref: d = (max - min) / 31, m = min. */
export function quantize_q5_1(x: Float32Array): Uint8Array {
  const nb = checkRow("q5_1", x.length, QK5_1, undefined, Q5_1_BYTES);
  const out = new Uint8Array(nb * Q5_1_BYTES);
  for (let i = 0; i < nb; i++) {
    const xb = i * 32;
    let min = Infinity;
    let max = -Infinity;
    for (let j = 0; j < 32; j++) {
      const v = x[xb + j];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const d = f32(f32(max - min) / 31);
    const id = d !== 0 ? f32(1 / d) : 0;
    const o = i * Q5_1_BYTES;
    writeF16(out, o, d);
    writeF16(out, o + 2, min);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const x0 = f32(f32(x[xb + j] - min) * id);
      const x1 = f32(f32(x[xb + 16 + j] - min) * id);
      const xi0 = Math.trunc(f32(x0 + 0.5)) & 0xff; // (uint8_t)(x0 + 0.5f), no clamp in ggml
      const xi1 = Math.trunc(f32(x1 + 0.5)) & 0xff;
      out[o + 8 + j] = ((xi0 & 0x0f) | ((xi1 & 0x0f) << 4)) & 0xff;
      qh |= ((xi0 & 0x10) >> 4) << j;
      qh |= ((xi1 & 0x10) >> 4) << (j + 16);
    }
    out[o + 4] = qh & 0xff;
    out[o + 5] = (qh >>> 8) & 0xff;
    out[o + 6] = (qh >>> 16) & 0xff;
    out[o + 7] = (qh >>> 24) & 0xff;
  }
  return out;
}

/** ggml_vec_dot_q5_1_q8_1_generic. */
export function vecDot_q5_1_q8_1(w: Uint8Array, x: Uint8Array, n: number): number {
  const nb = checkRow("q5_1", n, QK5_1, w, Q5_1_BYTES);
  checkRow("q8_1", n, 32, x, Q8_1_BYTES);
  const xs = int8View(x);
  let sumf = 0;
  for (let i = 0; i < nb; i++) {
    const ow = i * Q5_1_BYTES;
    const ox = i * Q8_1_BYTES;
    const qh = readU32(w, ow + 4);
    let sumi0 = 0;
    let sumi1 = 0;
    for (let j = 0; j < 16; j++) {
      const b = w[ow + 8 + j];
      const xh0 = ((qh >>> j) << 4) & 0x10;
      const xh1 = (qh >>> (j + 12)) & 0x10;
      sumi0 += ((b & 0x0f) | xh0) * xs[ox + 4 + j];
      sumi1 += ((b >> 4) | xh1) * xs[ox + 4 + j + 16];
    }
    const dd = f32(readF16(w, ow) * readF16(x, ox));
    sumf = f32(sumf + f32(f32(dd * (sumi0 + sumi1)) + f32(readF16(w, ow + 2) * readF16(x, ox + 2))));
  }
  return sumf;
}
