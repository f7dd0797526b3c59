// Q6_K: super-blocks of 256 weights, 210 bytes: u8 ql[128] (low 4 bits); u8 qh[64] (high 2 bits);
// i8 scales[16] (one per 16 weights); f16 d. w = d*sc*(q-32). Activations: Q8_K.

import { Q8_K_BYTES, QK_K } from "./activations";
import { checkRow, int8View } from "./common";
import { f16ToF32, f32ToF16, readF16 } from "./half";
import { GROUP_MAX_EPS, makeQxQuants, nearestInt, q8KScale } from "./kquants";

/** Local, not imported: hot loops call it (see kquants.ts). */
const f32 = Math.fround;

export const Q6_K_BYTES = 210;

/** The 256 6-bit quants of the block at `o`, offset to -32..31, in weight order. */
function unpackQuants(src: Uint8Array, o: number, out: Int32Array): void {
  let ql = o;
  let qh = o + 128;
  for (let n = 0; n < QK_K; n += 128) {
    for (let l = 0; l < 32; l++) {
      const h = src[qh + l];
      out[n + l] = ((src[ql + l] & 0x0f) | (((h >> 0) & 3) << 4)) - 32;
      out[n + l + 32] = ((src[ql + l + 32] & 0x0f) | (((h >> 2) & 3) << 4)) - 32;
      out[n + l + 64] = ((src[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
      out[n + l + 96] = ((src[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
    }
    ql += 64;
    qh += 32;
  }
}

export function dequantize_q6_K(src: Uint8Array, n: number): Float32Array {
  const nb = checkRow("q6_K", n, QK_K, src, Q6_K_BYTES);
  const sc = int8View(src);
  const y = new Float32Array(n);
  const q = new Int32Array(QK_K);
  for (let i = 0; i < nb; i++) {
    const o = i * Q6_K_BYTES;
    const d = readF16(src, o + 208);
    unpackQuants(src, o, q);
    // y[l] = d * sc[l/16] * q[l]: scale index is l/16 within each 128-half, the half adds 8.
    for (let l = 0; l < QK_K; l++) y[i * QK_K + l] = f32(f32(d * sc[o + 192 + (l >> 4)]) * q[l]);
  }
  return y;
}

/** quantize_row_q6_K_ref: an 8-bit scale per 16 weights (make_qx_quants), 6-bit quants. */
export function quantize_q6_K(x: Float32Array): Uint8Array {
  const nb = checkRow("q6_K", x.length, QK_K, undefined, Q6_K_BYTES);
  const out = new Uint8Array(nb * Q6_K_BYTES);
  const L = new Int8Array(QK_K);
  const scales = new Float32Array(QK_K / 16);
  for (let i = 0; i < nb; i++) {
    const xb = i * QK_K;
    const o = i * Q6_K_BYTES;
    let maxScale = 0;
    let maxAbsScale = 0;
    for (let ib = 0; ib < QK_K / 16; ib++) {
      const scale = makeQxQuants(16, 32, x, xb + 16 * ib, L, 16 * ib);
      scales[ib] = scale;
      const absScale = Math.abs(scale);
      if (absScale > maxAbsScale) {
        maxAbsScale = absScale;
        maxScale = scale;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) continue; // the block stays all zeros (d = +0)
    const iscale = f32(-128 / maxScale);
    const dh = f32ToF16(f32(1 / iscale));
    out[o + 208] = dh & 0xff;
    out[o + 209] = dh >> 8;
    for (let ib = 0; ib < 16; ib++) out[o + 192 + ib] = Math.min(127, nearestInt(f32(iscale * scales[ib]))) & 0xff;
    const dAll = f16ToF32(dh);
    for (let j = 0; j < 16; j++) {
      const d = f32(dAll * ((out[o + 192 + j] << 24) >> 24));
      if (d === 0) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(f32(x[xb + 16 * j + ii] / d));
        L[16 * j + ii] = Math.max(-32, Math.min(31, l)) + 32;
      }
    }
    let ql = o;
    let qh = o + 128;
    for (let j = 0; j < QK_K; j += 128) {
      for (let l = 0; l < 32; l++) {
        const q1 = L[j + l] & 0xf;
        const q2 = L[j + l + 32] & 0xf;
        const q3 = L[j + l + 64] & 0xf;
        const q4 = L[j + l + 96] & 0xf;
        out[ql + l] = q1 | (q3 << 4);
        out[ql + l + 32] = q2 | (q4 << 4);
        out[qh + l] = (L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6);
      }
      ql += 64;
      qh += 32;
    }
  }
  return out;
}

/** ggml_vec_dot_q6_K_q8_K_generic. */
export function vecDot_q6_K_q8_K(w: Uint8Array, x: Uint8Array, n: number): number {
  const nb = checkRow("q6_K", n, QK_K, w, Q6_K_BYTES);
  checkRow("q8_K", n, QK_K, x, Q8_K_BYTES);
  const xs = int8View(x);
  const ws = int8View(w);
  const aux8 = new Int32Array(QK_K);
  const aux32 = new Int32Array(8);
  const sums = new Float32Array(8);
  for (let i = 0; i < nb; i++) {
    const ow = i * Q6_K_BYTES;
    const ox = i * Q8_K_BYTES;
    unpackQuants(w, ow, aux8);
    aux32.fill(0);
    for (let j = 0; j < 16; j++) {
      const scale = ws[ow + 192 + j];
      for (let l = 0; l < 16; l++) aux32[l & 7] += scale * (xs[ox + 4 + 16 * j + l] * aux8[16 * j + l]);
    }
    const d = f32(readF16(w, ow + 208) * q8KScale(x, ox));
    for (let l = 0; l < 8; l++) sums[l] = f32(sums[l] + f32(d * f32(aux32[l])));
  }
  let sumf = 0;
  for (let l = 0; l < 8; l++) sumf = f32(sumf + sums[l]);
  return sumf;
}
