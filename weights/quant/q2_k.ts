// Q2_K: super-blocks of 256 weights, 84 bytes: u8 scales[16] (low nibble scale, high nibble min, one
// per 16 weights); u8 qs[64] (2 bits each); f16 d; f16 dmin. w = d*sc*q - dmin*m. Activations: Q8_K.

import { Q8_K_BYTES, QK_K } from "./activations";
import { checkRow, f32, int8View } from "./common";
import { readF16 } from "./half";
import { q8KBsum, q8KScale } from "./kquants";

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
