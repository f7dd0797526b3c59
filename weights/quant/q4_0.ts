// Q4_0: blocks of 32 weights, 18 bytes: f16 d; u8 qs[16] (low nibbles = weights 0..15, high = 16..31).
// w = d * (q - 8). Activations: Q8_0.

import { checkRow, f32, int8View } from "./common";
import { readF16, writeF16 } from "./half";
import { Q8_0_BYTES } from "./activations";

export const QK4_0 = 32;
export const Q4_0_BYTES = 18;

export function dequantize_q4_0(src: Uint8Array, n: number): Float32Array {
  const nb = checkRow("q4_0", n, QK4_0, src, Q4_0_BYTES);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * Q4_0_BYTES;
    const d = readF16(src, o);
    for (let j = 0; j < 16; j++) {
      const b = src[o + 2 + j];
      y[i * 32 + j] = f32(((b & 0x0f) - 8) * d);
      y[i * 32 + j + 16] = f32(((b >> 4) - 8) * d);
    }
  }
  return y;
}

/** quantize_row_q4_0_ref: d = max / -8 where max is the signed value of largest magnitude. */
export function quantize_q4_0(x: Float32Array): Uint8Array {
  const nb = checkRow("q4_0", x.length, QK4_0, undefined, Q4_0_BYTES);
  const out = new Uint8Array(nb * Q4_0_BYTES);
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
    const d = f32(max / -8);
    const id = d !== 0 ? f32(1 / d) : 0;
    const o = i * Q4_0_BYTES;
    writeF16(out, o, d);
    for (let j = 0; j < 16; j++) {
      const x0 = f32(x[xb + j] * id);
      const x1 = f32(x[xb + 16 + j] * id);
      const xi0 = Math.min(15, Math.trunc(f32(x0 + 8.5)));
      const xi1 = Math.min(15, Math.trunc(f32(x1 + 8.5)));
      out[o + 2 + j] = (xi0 | (xi1 << 4)) & 0xff;
    }
  }
  return out;
}

/** ggml_vec_dot_q4_0_q8_0_generic. */
export function vecDot_q4_0_q8_0(w: Uint8Array, x: Uint8Array, n: number): number {
  const nb = checkRow("q4_0", n, QK4_0, w, Q4_0_BYTES);
  checkRow("q8_0", n, 32, x, Q8_0_BYTES);
  const xs = int8View(x);
  let sumf = 0;
  for (let i = 0; i < nb; i++) {
    const ow = i * Q4_0_BYTES;
    const ox = i * Q8_0_BYTES;
    let sumi0 = 0;
    let sumi1 = 0;
    for (let j = 0; j < 16; j++) {
      const b = w[ow + 2 + j];
      sumi0 += ((b & 0x0f) - 8) * xs[ox + 2 + j];
      sumi1 += ((b >> 4) - 8) * xs[ox + 2 + j + 16];
    }
    sumf = f32(sumf + f32(f32((sumi0 + sumi1) * readF16(w, ow)) * readF16(x, ox)));
  }
  return sumf;
}
