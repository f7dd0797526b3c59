// Q4_K: super-blocks of 256 weights, 144 bytes: f16 d; f16 dmin; u8 scales[12] (8 packed 6-bit
// scales and 8 mins, one per 32 weights); u8 qs[128]. w = d*sc*q - dmin*m. Activations: Q8_K.

import { Q8_K_BYTES, QK_K } from "./activations";
import { checkRow, int8View } from "./common";
import { readF16 } from "./half";
import { q8KBsum, q8KScale, quantizeScaleMinK, scaleMinK4, scaleMinKScratch } from "./kquants";

/** Local, not imported: hot loops call it (see kquants.ts). */
const f32 = Math.fround;

export const Q4_K_BYTES = 144;

export function dequantize_q4_K(src: Uint8Array, n: number): Float32Array {
  const nb = checkRow("q4_K", n, QK_K, src, Q4_K_BYTES);
  const y = new Float32Array(n);
  const sm = { sc: 0, m: 0 };
  let yi = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * Q4_K_BYTES;
    const d = readF16(src, o);
    const min = readF16(src, o + 2);
    let q = o + 16;
    for (let is = 0; is < 8; is += 2) {
      scaleMinK4(is, src, o + 4, sm);
      const d1 = f32(d * sm.sc);
      const m1 = f32(min * sm.m);
      scaleMinK4(is + 1, src, o + 4, sm);
      const d2 = f32(d * sm.sc);
      const m2 = f32(min * sm.m);
      for (let l = 0; l < 32; l++) y[yi++] = f32(f32(d1 * (src[q + l] & 0x0f)) - m1);
      for (let l = 0; l < 32; l++) y[yi++] = f32(f32(d2 * (src[q + l] >> 4)) - m2);
      q += 32;
    }
  }
  return y;
}

/** quantize_row_q4_K_ref: 6-bit scales and mins per 32 weights (make_qkx2_quants), 4-bit quants. */
export function quantize_q4_K(x: Float32Array): Uint8Array {
  const nb = checkRow("q4_K", x.length, QK_K, undefined, Q4_K_BYTES);
  const out = new Uint8Array(nb * Q4_K_BYTES);
  const L = new Uint8Array(QK_K);
  const scratch = scaleMinKScratch();
  for (let i = 0; i < nb; i++) {
    const o = i * Q4_K_BYTES;
    quantizeScaleMinK(x, i * QK_K, 15, -1, 20, out, o, L, scratch);
    let q = o + 16;
    for (let j = 0; j < QK_K; j += 64) {
      for (let l = 0; l < 32; l++) out[q + l] = L[j + l] | (L[j + l + 32] << 4);
      q += 32;
    }
  }
  return out;
}

/** ggml_vec_dot_q4_K_q8_K_generic. */
export function vecDot_q4_K_q8_K(w: Uint8Array, x: Uint8Array, n: number): number {
  const nb = checkRow("q4_K", n, QK_K, w, Q4_K_BYTES);
  checkRow("q8_K", n, QK_K, x, Q8_K_BYTES);
  const xs = int8View(x);
  const aux8 = new Int32Array(QK_K);
  const aux32 = new Int32Array(8);
  const sums = new Float32Array(8);
  const sm = { sc: 0, m: 0 };
  let sumf = 0;
  for (let i = 0; i < nb; i++) {
    const ow = i * Q4_K_BYTES;
    const ox = i * Q8_K_BYTES;
    for (let j = 0; j < 4; j++) {
      const q4 = ow + 16 + 32 * j;
      for (let l = 0; l < 32; l++) {
        aux8[64 * j + l] = w[q4 + l] & 0x0f;
        aux8[64 * j + 32 + l] = w[q4 + l] >> 4;
      }
    }
    let sumi = 0;
    for (let j = 0; j < 16; j++) {
      scaleMinK4(j >> 1, w, ow + 4, sm);
      sumi += q8KBsum(x, ox, j) * sm.m;
    }
    aux32.fill(0);
    for (let j = 0; j < 8; j++) {
      scaleMinK4(j, w, ow + 4, sm);
      for (let l = 0; l < 32; l++) aux32[l & 7] += sm.sc * (xs[ox + 4 + 32 * j + l] * aux8[32 * j + l]);
    }
    const yd = q8KScale(x, ox);
    const d = f32(readF16(w, ow) * yd);
    for (let l = 0; l < 8; l++) sums[l] = f32(sums[l] + f32(d * f32(aux32[l])));
    const dmin = f32(readF16(w, ow + 2) * yd);
    sumf = f32(sumf - f32(dmin * sumi));
  }
  for (let l = 0; l < 8; l++) sumf = f32(sumf + sums[l]);
  return sumf;
}
