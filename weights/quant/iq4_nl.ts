// IQ4_NL: blocks of 32 weights, 18 bytes: f16 d; u8 qs[16] (low nibbles = weights 0..15, high =
// 16..31). w = d * KVALUES_IQ4NL[q], a fixed non-uniform grid. Activations: Q8_0. qwasm reads it
// (llama.cpp falls back to it for rows whose length is not a multiple of 256) but does not write it.

import { Q8_0_BYTES } from "./activations";
import { checkRow, f32, int8View } from "./common";
import { readF16 } from "./half";

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
