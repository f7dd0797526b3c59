// Q5_0: blocks of 32 weights, 22 bytes: f16 d; u32 qh (bit j = 5th bit of weight j); u8 qs[16].
// w = d * (q - 16). Activations: Q8_0.

import { checkRow, f32, int8View, readU32 } from "./common";
import { readF16, writeF16 } from "./half";
import { Q8_0_BYTES } from "./activations";

export const QK5_0 = 32;
export const Q5_0_BYTES = 22;

export function dequantize_q5_0(src: Uint8Array, n: number): Float32Array {
  const nb = checkRow("q5_0", n, QK5_0, src, Q5_0_BYTES);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * Q5_0_BYTES;
    const d = readF16(src, o);
    const qh = readU32(src, o + 2);
    for (let j = 0; j < 16; j++) {
      const b = src[o + 6 + j];
      const xh0 = ((qh >>> j) << 4) & 0x10;
      const xh1 = (qh >>> (j + 12)) & 0x10;
      y[i * 32 + j] = f32((((b & 0x0f) | xh0) - 16) * d);
      y[i * 32 + j + 16] = f32((((b >> 4) | xh1) - 16) * d);
    }
  }
  return y;
}

/** quantize_row_q5_0_ref: d = max / -16 where max is the signed value of largest magnitude. */
export function quantize_q5_0(x: Float32Array): Uint8Array {
  const nb = checkRow("q5_0", x.length, QK5_0, undefined, Q5_0_BYTES);
  const out = new Uint8Array(nb * Q5_0_BYTES);
  for (let i = 0; i < nb; i++) {
    const xb = i * 32;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[xb + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f32(max / -16);
    const id = d !== 0 ? f32(1 / d) : 0;
    const o = i * Q5_0_BYTES;
    writeF16(out, o, d);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const x0 = f32(x[xb + j] * id);
      const x1 = f32(x[xb + 16 + j] * id);
      const xi0 = Math.min(31, Math.trunc(f32(x0 + 16.5)));
      const xi1 = Math.min(31, Math.trunc(f32(x1 + 16.5)));
      out[o + 6 + j] = ((xi0 & 0x0f) | ((xi1 & 0x0f) << 4)) & 0xff;
      qh |= ((xi0 & 0x10) >> 4) << j;
      qh |= ((xi1 & 0x10) >> 4) << (j + 16);
    }
    out[o + 2] = qh & 0xff;
    out[o + 3] = (qh >>> 8) & 0xff;
    out[o + 4] = (qh >>> 16) & 0xff;
    out[o + 5] = (qh >>> 24) & 0xff;
  }
  return out;
}

/** ggml_vec_dot_q5_0_q8_0_generic. */
export function vecDot_q5_0_q8_0(w: Uint8Array, x: Uint8Array, n: number): number {
  const nb = checkRow("q5_0", n, QK5_0, w, Q5_0_BYTES);
  checkRow("q8_0", n, 32, x, Q8_0_BYTES);
  const xs = int8View(x);
  let sumf = 0;
  for (let i = 0; i < nb; i++) {
    const ow = i * Q5_0_BYTES;
    const ox = i * Q8_0_BYTES;
    const qh = readU32(w, ow + 2);
    let sumi0 = 0;
    let sumi1 = 0;
    for (let j = 0; j < 16; j++) {
      const b = w[ow + 6 + j];
      const xh0 = ((qh >>> j) << 4) & 0x10;
      const xh1 = (qh >>> (j + 12)) & 0x10;
      sumi0 += (((b & 0x0f) | xh0) - 16) * xs[ox + 2 + j];
      sumi1 += (((b >> 4) | xh1) - 16) * xs[ox + 2 + j + 16];
    }
    sumf = f32(sumf + f32(f32(readF16(w, ow) * readF16(x, ox)) * (sumi0 + sumi1)));
  }
  return sumf;
}
