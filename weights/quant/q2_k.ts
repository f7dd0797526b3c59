// Q2_K: super-blocks of 256 weights, 84 bytes: u8 scales[16] (low nibble scale, high nibble min, one
// per 16 weights); u8 qs[64] (2 bits each); f16 d; f16 dmin. w = d*sc*q - dmin*m. Activations: Q8_K.

import { Q8_K_BYTES, QK_K } from "./activations";
import { checkRow, int8View } from "./common";
import { f16ToF32, f32ToF16, readF16 } from "./half";
import { makeQkx2Quants, nearestInt, q8KBsum, q8KScale } from "./kquants";

/** Local, not imported: hot loops call it (see kquants.ts). */
const f32 = Math.fround;

export const Q2_K_BYTES = 84;

export function dequantize_q2_K(src: Uint8Array, n: number): Float32Array {
  const nb = checkRow("q2_K", n, QK_K, src, Q2_K_BYTES);
  const y = new Float32Array(n);
  let yi = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * Q2_K_BYTES;
    const d = readF16(src, o + 80);
    const min = readF16(src, o + 82);
    let is = 0;
    for (let half = 0; half < 2; half++) {
      const q = o + 16 + 32 * half;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let part = 0; part < 2; part++) {
          const sc = src[o + is++];
          const dl = f32(d * (sc & 0x0f));
          const ml = f32(min * (sc >> 4));
          for (let l = 0; l < 16; l++) y[yi++] = f32(f32(dl * ((src[q + 16 * part + l] >> shift) & 3)) - ml);
        }
      }
    }
  }
  return y;
}

/** quantize_row_q2_K_ref: per 16 weights a 4-bit scale and min (make_qkx2_quants, |x| weights). */
export function quantize_q2_K(x: Float32Array): Uint8Array {
  const nb = checkRow("q2_K", x.length, QK_K, undefined, Q2_K_BYTES);
  const out = new Uint8Array(nb * Q2_K_BYTES);
  const L = new Uint8Array(QK_K);
  const Laux = new Uint8Array(16);
  const weights = new Float32Array(16);
  const mins = new Float32Array(QK_K / 16);
  const scales = new Float32Array(QK_K / 16);
  const m = { min: 0 };
  const q4scale = 15;
  for (let i = 0; i < nb; i++) {
    const xb = i * QK_K;
    const o = i * Q2_K_BYTES;
    let maxScale = 0;
    let maxMin = 0;
    for (let j = 0; j < QK_K / 16; j++) {
      for (let l = 0; l < 16; l++) weights[l] = Math.abs(x[xb + 16 * j + l]);
      scales[j] = makeQkx2Quants(16, 3, x, xb + 16 * j, weights, L, 16 * j, Laux, -0.5, 0.1, 15, true, m);
      mins[j] = m.min;
      if (scales[j] > maxScale) maxScale = scales[j];
      if (mins[j] > maxMin) maxMin = mins[j];
    }
    let dh = 0;
    let dminh = 0;
    if (maxScale > 0) {
      const iscale = f32(q4scale / maxScale);
      for (let j = 0; j < 16; j++) out[o + j] = nearestInt(f32(iscale * scales[j])) & 0xff;
      dh = f32ToF16(f32(maxScale / q4scale));
    }
    if (maxMin > 0) {
      const iscale = f32(q4scale / maxMin);
      for (let j = 0; j < 16; j++) out[o + j] |= (nearestInt(f32(iscale * mins[j])) << 4) & 0xff;
      dminh = f32ToF16(f32(maxMin / q4scale));
    }
    out[o + 80] = dh & 0xff;
    out[o + 81] = dh >> 8;
    out[o + 82] = dminh & 0xff;
    out[o + 83] = dminh >> 8;
    const dAll = f16ToF32(dh);
    const dminAll = f16ToF32(dminh);
    for (let j = 0; j < 16; j++) {
      const d = f32(dAll * (out[o + j] & 0xf));
      if (d === 0) continue;
      const dm = f32(dminAll * (out[o + j] >> 4));
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(f32(f32(x[xb + 16 * j + ii] + dm) / d));
        L[16 * j + ii] = Math.max(0, Math.min(3, l));
      }
    }
    for (let j = 0; j < QK_K; j += 128) {
      for (let l = 0; l < 32; l++) {
        out[o + 16 + j / 4 + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6);
      }
    }
  }
  return out;
}

/** ggml_vec_dot_q2_K_q8_K_generic: the mins meet the q8 block sums. */
export function vecDot_q2_K_q8_K(w: Uint8Array, x: Uint8Array, n: number): number {
  const nb = checkRow("q2_K", n, QK_K, w, Q2_K_BYTES);
  checkRow("q8_K", n, QK_K, x, Q8_K_BYTES);
  const xs = int8View(x);
  let sumf = 0;
  for (let i = 0; i < nb; i++) {
    const ow = i * Q2_K_BYTES;
    const ox = i * Q8_K_BYTES;
    let summs = 0;
    for (let j = 0; j < 16; j++) summs += q8KBsum(x, ox, j) * (w[ow + j] >> 4);
    const yd = q8KScale(x, ox);
    const dall = f32(yd * readF16(w, ow + 80));
    const dmin = f32(yd * readF16(w, ow + 82));
    let isum = 0;
    let is = 0;
    let q8 = ox + 4;
    for (let k = 0; k < 2; k++) {
      const q2 = ow + 16 + 32 * k;
      for (let shift = 0; shift < 8; shift += 2) {
        let d = w[ow + is++] & 0x0f;
        let isuml = 0;
        for (let l = 0; l < 16; l++) isuml += xs[q8 + l] * ((w[q2 + l] >> shift) & 3);
        isum += d * isuml;
        d = w[ow + is++] & 0x0f;
        isuml = 0;
        for (let l = 16; l < 32; l++) isuml += xs[q8 + l] * ((w[q2 + l] >> shift) & 3);
        isum += d * isuml;
        q8 += 32;
      }
    }
    sumf = f32(sumf + f32(f32(dall * isum) - f32(dmin * summs)));
  }
  return sumf;
}
