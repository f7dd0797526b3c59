// Q5_K: super-blocks of 256 weights, 176 bytes: f16 d; f16 dmin; u8 scales[12] (as Q4_K); u8 qh[32]
// (5th bits); u8 qs[128]. w = d*sc*q - dmin*m. Activations: Q8_K.

import { Q8_K_BYTES, QK_K } from "./activations";
import { checkRow, int8View } from "./common";
import { readF16 } from "./half";
import { q8KBsum, q8KScale, quantizeScaleMinK, scaleMinK4, scaleMinKScratch } from "./kquants";

/** Local, not imported: hot loops call it (see kquants.ts). */
const f32 = Math.fround;

export const Q5_K_BYTES = 176;

export function dequantize_q5_K(src: Uint8Array, n: number): Float32Array {
  const nb = checkRow("q5_K", n, QK_K, src, Q5_K_BYTES);
  const y = new Float32Array(n);
  const sm = { sc: 0, m: 0 };
  let yi = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * Q5_K_BYTES;
    const d = readF16(src, o);
    const min = readF16(src, o + 2);
    const qh = o + 16;
    let ql = o + 48;
    let u1 = 1;
    let u2 = 2;
    for (let is = 0; is < 8; is += 2) {
      scaleMinK4(is, src, o + 4, sm);
      const d1 = f32(d * sm.sc);
      const m1 = f32(min * sm.m);
      scaleMinK4(is + 1, src, o + 4, sm);
      const d2 = f32(d * sm.sc);
      const m2 = f32(min * sm.m);
      for (let l = 0; l < 32; l++) y[yi++] = f32(f32(d1 * ((src[ql + l] & 0x0f) + (src[qh + l] & u1 ? 16 : 0))) - m1);
      for (let l = 0; l < 32; l++) y[yi++] = f32(f32(d2 * ((src[ql + l] >> 4) + (src[qh + l] & u2 ? 16 : 0))) - m2);
      ql += 32;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
  return y;
}

/** quantize_row_q5_K_ref: 6-bit scales and mins per 32 weights (make_qkx2_quants), 5-bit quants. */
export function quantize_q5_K(x: Float32Array): Uint8Array {
  const nb = checkRow("q5_K", x.length, QK_K, undefined, Q5_K_BYTES);
  const out = new Uint8Array(nb * Q5_K_BYTES);
  const L = new Uint8Array(QK_K);
  const scratch = scaleMinKScratch();
  for (let i = 0; i < nb; i++) {
    const o = i * Q5_K_BYTES;
    quantizeScaleMinK(x, i * QK_K, 31, -0.5, 15, out, o, L, scratch);
    const qh = o + 16;
    let ql = o + 48;
    let m1 = 1;
    let m2 = 2;
    for (let n = 0; n < QK_K; n += 64) {
      for (let j = 0; j < 32; j++) {
        let l1 = L[n + j];
        if (l1 > 15) {
          l1 -= 16;
          out[qh + j] |= m1;
        }
        let l2 = L[n + j + 32];
        if (l2 > 15) {
          l2 -= 16;
          out[qh + j] |= m2;
        }
        out[ql + j] = l1 | (l2 << 4);
      }
      m1 <<= 2;
      m2 <<= 2;
      ql += 32;
    }
  }
  return out;
}

/** ggml_vec_dot_q5_K_q8_K_generic. */
export function vecDot_q5_K_q8_K(w: Uint8Array, x: Uint8Array, n: number): number {
  const nb = checkRow("q5_K", n, QK_K, w, Q5_K_BYTES);
  checkRow("q8_K", n, QK_K, x, Q8_K_BYTES);
  const xs = int8View(x);
  const aux8 = new Int32Array(QK_K);
  const aux32 = new Int32Array(8);
  const sums = new Float32Array(8);
  const sm = { sc: 0, m: 0 };
  let sumf = 0;
  for (let i = 0; i < nb; i++) {
    const ow = i * Q5_K_BYTES;
    const ox = i * Q8_K_BYTES;
    const hm = ow + 16;
    let m = 1;
    for (let j = 0; j < 4; j++) {
      const q4 = ow + 48 + 32 * j;
      for (let l = 0; l < 32; l++) aux8[64 * j + l] = (w[q4 + l] & 0x0f) + (w[hm + l] & m ? 16 : 0);
      m <<= 1;
      for (let l = 0; l < 32; l++) aux8[64 * j + 32 + l] = (w[q4 + l] >> 4) + (w[hm + l] & m ? 16 : 0);
      m <<= 1;
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
