// IQ4_NL: blocks of 32 weights, 18 bytes: f16 d; u8 qs[16] (low nibbles = weights 0..15, high =
// 16..31). w = d * KVALUES_IQ4NL[q], a fixed non-uniform grid. Activations: Q8_0. llama.cpp falls
// back to it for IQ types whose rows are not a multiple of 256, and writes it as the IQ4_NL ftype.

import { Q8_0_BYTES } from "./activations";
import { checkRow, int8View } from "./common";
import { readF16, writeF16 } from "./half";
import { GROUP_MAX_EPS } from "./kquants";

/** Local, not imported: hot loops call it (see kquants.ts). */
const f32 = Math.fround;

export const QK4_NL = 32;
export const IQ4_NL_BYTES = 18;
export const KVALUES_IQ4NL: readonly number[] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

export function dequantize_iq4_nl(src: Uint8Array, n: number): Float32Array {
  const nb = checkRow("iq4_nl", n, QK4_NL, src, IQ4_NL_BYTES);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * IQ4_NL_BYTES;
    const d = readF16(src, o);
    for (let j = 0; j < 16; j++) {
      const b = src[o + 2 + j];
      y[i * 32 + j] = f32(d * KVALUES_IQ4NL[b & 0x0f]);
      y[i * 32 + j + 16] = f32(d * KVALUES_IQ4NL[b >> 4]);
    }
  }
  return y;
}

/** best_index_int8: the index of the grid value nearest to x (ties to the upper one as C compares). */
function bestIndexInt8(values: readonly number[], x: number): number {
  const n = values.length;
  if (x <= values[0]) return 0;
  if (x >= values[n - 1]) return n - 1;
  let ml = 0;
  let mu = n - 1;
  while (mu - ml > 1) {
    const mav = (ml + mu) >> 1;
    if (x < values[mav]) mu = mav;
    else ml = mav;
  }
  return f32(x - values[mu - 1]) < f32(values[mu] - x) ? mu - 1 : mu;
}

/**
 * quantize_iq4_nl without an imatrix (quantize_row_iq4_nl_impl with super-block = block = 32,
 * ntry 7, weights x*x): per block, the scale from 15 trial grid fits by weighted least squares.
 */
export function quantize_iq4_nl(x: Float32Array): Uint8Array {
  const nb = checkRow("iq4_nl", x.length, QK4_NL, undefined, IQ4_NL_BYTES);
  const out = new Uint8Array(nb * IQ4_NL_BYTES);
  const values = KVALUES_IQ4NL;
  const weight = new Float32Array(32);
  const L = new Uint8Array(32);
  const ntry = 7;
  for (let ib = 0; ib < nb; ib++) {
    const xb = ib * 32;
    const o = ib * IQ4_NL_BYTES;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[xb + j];
      weight[j] = f32(v * v);
      const ax = Math.abs(v);
      if (ax > amax) {
        amax = ax;
        max = v;
      }
    }
    let scale = 0;
    if (amax >= GROUP_MAX_EPS) {
      let id = f32(1 / f32(-max / values[0]));
      let sumqx = 0;
      let sumq2 = 0;
      for (let j = 0; j < 32; j++) {
        const q = values[bestIndexInt8(values, f32(id * x[xb + j]))];
        const w = weight[j];
        sumqx = f32(sumqx + f32(f32(w * q) * x[xb + j]));
        sumq2 = f32(sumq2 + f32(f32(w * q) * q));
      }
      let d = f32(sumqx / sumq2);
      let best = f32(d * sumqx);
      for (let itry = -ntry; itry <= ntry; itry++) {
        id = f32((itry + values[0]) / max);
        sumqx = 0;
        sumq2 = 0;
        for (let j = 0; j < 32; j++) {
          const q = values[bestIndexInt8(values, f32(id * x[xb + j]))];
          const w = weight[j];
          sumqx = f32(sumqx + f32(f32(w * q) * x[xb + j]));
          sumq2 = f32(sumq2 + f32(f32(w * q) * q));
        }
        if (sumq2 > 0 && f32(sumqx * sumqx) > f32(best * sumq2)) {
          d = f32(sumqx / sumq2);
          best = f32(d * sumqx);
        }
      }
      scale = d;
    }
    writeF16(out, o, scale);
    const id = scale !== 0 ? f32(1 / scale) : 0;
    for (let j = 0; j < 32; j++) L[j] = bestIndexInt8(values, f32(id * x[xb + j]));
    for (let j = 0; j < 16; j++) out[o + 2 + j] = L[j] | (L[j + 16] << 4);
  }
  return out;
}

/** ggml_vec_dot_iq4_nl_q8_0_generic. */
export function vecDot_iq4_nl_q8_0(w: Uint8Array, x: Uint8Array, n: number): number {
  const nb = checkRow("iq4_nl", n, QK4_NL, w, IQ4_NL_BYTES);
  checkRow("q8_0", n, 32, x, Q8_0_BYTES);
  const xs = int8View(x);
  let sumf = 0;
  for (let i = 0; i < nb; i++) {
    const ow = i * IQ4_NL_BYTES;
    const ox = i * Q8_0_BYTES;
    const d = f32(readF16(x, ox) * readF16(w, ow));
    let sumi1 = 0;
    let sumi2 = 0;
    for (let j = 0; j < 16; j++) {
      const b = w[ow + 2 + j];
      sumi1 += xs[ox + 2 + j] * KVALUES_IQ4NL[b & 0x0f];
      sumi2 += xs[ox + 2 + j + 16] * KVALUES_IQ4NL[b >> 4];
    }
    sumf = f32(sumf + f32(d * (sumi1 + sumi2)));
  }
  return sumf;
}
