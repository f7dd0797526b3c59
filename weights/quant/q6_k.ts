// Q6_K: super-blocks of 256 weights, 210 bytes: u8 ql[128] (low 4 bits); u8 qh[64] (high 2 bits);
// i8 scales[16] (one per 16 weights); f16 d. w = d*sc*(q-32). Activations: Q8_K.

import { Q8_K_BYTES, QK_K } from "./activations";
import { checkRow, f32, int8View } from "./common";
import { readF16 } from "./half";
import { q8KScale } from "./kquants";

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
