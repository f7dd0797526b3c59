// Q3_K: super-blocks of 256 weights, 110 bytes: u8 hmask[32] (high bit); u8 qs[64] (low 2 bits);
// u8 scales[12] (16 packed 6-bit scales, offset 32); f16 d. w = d*(sc-32)*(q-4). Activations: Q8_K.

import { Q8_K_BYTES, QK_K } from "./activations";
import { checkRow, int8View, readU32 } from "./common";
import { f16ToF32, f32ToF16, readF16 } from "./half";
import { makeQ3Quants, nearestInt, q8KScale } from "./kquants";

/** Local, not imported: hot loops call it (see kquants.ts). */
const f32 = Math.fround;

export const Q3_K_BYTES = 110;

/** The 16 6-bit scales (0..63, not yet offset by -32) from the 12 bytes at `src + o`. */
function unpackScales(src: Uint8Array, o: number, out: Int32Array): void {
  const kmask1 = 0x03030303;
  const kmask2 = 0x0f0f0f0f;
  const a0 = readU32(src, o);
  const a1 = readU32(src, o + 4);
  const tmp = readU32(src, o + 8);
  const words = [
    (a0 & kmask2) | (((tmp >>> 0) & kmask1) << 4),
    (a1 & kmask2) | (((tmp >>> 2) & kmask1) << 4),
    ((a0 >>> 4) & kmask2) | (((tmp >>> 4) & kmask1) << 4),
    ((a1 >>> 4) & kmask2) | (((tmp >>> 6) & kmask1) << 4),
  ];
  for (let k = 0; k < 16; k++) out[k] = (words[k >> 2] >>> (8 * (k & 3))) & 0xff;
}

export function dequantize_q3_K(src: Uint8Array, n: number): Float32Array {
  const nb = checkRow("q3_K", n, QK_K, src, Q3_K_BYTES);
  const y = new Float32Array(n);
  const scales = new Int32Array(16);
  let yi = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * Q3_K_BYTES;
    const dAll = readF16(src, o + 108);
    unpackScales(src, o + 96, scales);
    let is = 0;
    let m = 1;
    for (let half = 0; half < 2; half++) {
      const q = o + 32 + 32 * half;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let part = 0; part < 2; part++) {
          const dl = f32(dAll * (scales[is++] - 32));
          for (let l = 16 * part; l < 16 * part + 16; l++) {
            const v = ((src[q + l] >> shift) & 3) - ((src[o + l] & m) !== 0 ? 0 : 4);
            y[yi++] = f32(dl * v);
          }
        }
        m <<= 1;
      }
    }
  }
  return y;
}

/** quantize_row_q3_K_ref: per 16 weights a 6-bit signed scale (make_q3_quants), 3-bit quants. */
export function quantize_q3_K(x: Float32Array): Uint8Array {
  const nb = checkRow("q3_K", x.length, QK_K, undefined, Q3_K_BYTES);
  const out = new Uint8Array(nb * Q3_K_BYTES);
  const L = new Int8Array(QK_K);
  const scales = new Float32Array(QK_K / 16);
  for (let i = 0; i < nb; i++) {
    const xb = i * QK_K;
    const o = i * Q3_K_BYTES;
    const sc = o + 96; // scales[12]
    let maxScale = 0;
    let amax = 0;
    for (let j = 0; j < QK_K / 16; j++) {
      scales[j] = makeQ3Quants(16, 4, x, xb + 16 * j, L, 16 * j);
      const scale = Math.abs(scales[j]);
      if (scale > amax) {
        amax = scale;
        maxScale = scales[j];
      }
    }
    let dh = 0;
    if (maxScale !== 0) {
      const iscale = f32(-32 / maxScale);
      for (let j = 0; j < QK_K / 16; j++) {
        let l = (nearestInt(f32(iscale * scales[j])) << 24) >> 24; // int8_t
        l = Math.max(-32, Math.min(31, l)) + 32;
        if (j < 8) out[sc + j] = l & 0xf;
        else out[sc + j - 8] |= (l & 0xf) << 4;
        l >>= 4;
        out[sc + (j % 4) + 8] |= l << (2 * (j >> 2));
      }
      dh = f32ToF16(f32(1 / iscale));
    }
    out[o + 108] = dh & 0xff;
    out[o + 109] = dh >> 8;
    const dAll = f16ToF32(dh);
    for (let j = 0; j < QK_K / 16; j++) {
      let s = j < 8 ? out[sc + j] & 0xf : out[sc + j - 8] >> 4;
      s = (s | (((out[sc + 8 + (j % 4)] >> (2 * (j >> 2))) & 3) << 4)) - 32;
      const d = f32(dAll * s);
      if (d === 0) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(f32(x[xb + 16 * j + ii] / d));
        L[16 * j + ii] = Math.max(-4, Math.min(3, l)) + 4;
      }
    }
    // hmask[32] at o: the high bit of the first 32 quants in bit 0, the next 32 in bit 1, ...
    let m = 0;
    let hm = 1;
    for (let j = 0; j < QK_K; j++) {
      if (L[j] > 3) {
        out[o + m] |= hm;
        L[j] -= 4;
      }
      if (++m === QK_K / 8) {
        m = 0;
        hm <<= 1;
      }
    }
    for (let j = 0; j < QK_K; j += 128) {
      for (let l = 0; l < 32; l++) {
        out[o + 32 + j / 4 + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6);
      }
    }
  }
  return out;
}

/** ggml_vec_dot_q3_K_q8_K_generic: integer sums per 8 lanes, scaled per super-block in f32. */
export function vecDot_q3_K_q8_K(w: Uint8Array, x: Uint8Array, n: number): number {
  const nb = checkRow("q3_K", n, QK_K, w, Q3_K_BYTES);
  checkRow("q8_K", n, QK_K, x, Q8_K_BYTES);
  const xs = int8View(x);
  const aux8 = new Int32Array(QK_K);
  const aux32 = new Int32Array(8);
  const sums = new Float32Array(8);
  const scales = new Int32Array(16);
  for (let i = 0; i < nb; i++) {
    const ow = i * Q3_K_BYTES;
    const ox = i * Q8_K_BYTES;
    let a = 0;
    let m = 1;
    for (let half = 0; half < 2; half++) {
      const q3 = ow + 32 + 32 * half;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let l = 0; l < 32; l++) aux8[a + l] = ((w[q3 + l] >> shift) & 3) - ((w[ow + l] & m) !== 0 ? 0 : 4);
        a += 32;
        m <<= 1;
      }
    }
    unpackScales(w, ow + 96, scales);
    aux32.fill(0);
    let q8 = ox + 4;
    a = 0;
    for (let j = 0; j < QK_K / 16; j++) {
      const sc = scales[j] - 32;
      for (let l = 0; l < 16; l++) aux32[l & 7] += sc * (xs[q8 + l] * aux8[a + l]);
      q8 += 16;
      a += 16;
    }
    const d = f32(readF16(w, ow + 108) * q8KScale(x, ox));
    for (let l = 0; l < 8; l++) sums[l] = f32(sums[l] + f32(d * f32(aux32[l])));
  }
  let sumf = 0;
  for (let l = 0; l < 8; l++) sumf = f32(sumf + sums[l]);
  return sumf;
}
