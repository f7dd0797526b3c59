// Activation formats: what llama.cpp converts an f32 activation row to before a dot product with a
// weight row (the weight type's vec_dot_type), byte-identical to ggml's blocks:
//   q8_0  34 B per 32: f16 d; i8 qs[32]
//   q8_1  36 B per 32: f16 d; f16 s = fp16(d * sum(qs)); i8 qs[32]
//   q8_K 292 B per 256: f32 d; i8 qs[256]; i16 bsums[16] (sums of qs in groups of 16)
// q8_0/q8_1 follow the x86 AVX path of quantize_row_q8_0/q8_1 (the fixtures' llama.cpp build):
// q = round_half_even(x * (127/amax)), not the reference quantizer's x * (1/(amax/127)) with roundf.

import type { ActivationFormat } from "../gguf/types";
import { checkRow, f32, roundHalfEven } from "./common";
import { f32ToBf16, f32ToF16, writeF16 } from "./half";

export const Q8_0_BYTES = 34;
export const Q8_1_BYTES = 36;
export const QK_K = 256;
export const Q8_K_BYTES = 292;

export type { ActivationFormat } from "../gguf/types";
export { activationRowBytes } from "../gguf/types";

function quantizeQ8(x: Float32Array, withSum: boolean): Uint8Array {
  const blockBytes = withSum ? Q8_1_BYTES : Q8_0_BYTES;
  const qsOffset = withSum ? 4 : 2;
  const nb = checkRow(withSum ? "q8_1" : "q8_0", x.length, 32, undefined, blockBytes);
  const out = new Uint8Array(nb * blockBytes);
  for (let i = 0; i < nb; i++) {
    const xb = i * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) {
      const a = Math.abs(x[xb + j]);
      if (a > amax) amax = a;
    }
    const d = f32(amax / 127);
    const id = amax !== 0 ? f32(127 / amax) : 0;
    const o = i * blockBytes;
    writeF16(out, o, d);
    let sum = 0;
    for (let j = 0; j < 32; j++) {
      const q = roundHalfEven(f32(x[xb + j] * id));
      sum += q;
      out[o + qsOffset + j] = q & 0xff;
    }
    if (withSum) writeF16(out, o + 2, f32(d * sum));
  }
  return out;
}

/** f32 → q8_0 as llama.cpp's x86 quantize_row_q8_0 (AVX2). */
export function quantizeQ8_0Activations(x: Float32Array): Uint8Array {
  return quantizeQ8(x, false);
}

/** f32 → q8_1 as llama.cpp's x86 quantize_row_q8_1 (AVX2): q8_0 plus s = fp16(d * sum(q)), d the f32 value. */
export function quantizeQ8_1Activations(x: Float32Array): Uint8Array {
  return quantizeQ8(x, true);
}

/**
 * f32 → q8_K as quantize_row_q8_K_ref (x86 uses it too): max = the element of largest |x| (first on
 * ties), iscale = -127/max, q = min(127, nearest_even(iscale*x)), d = 1/iscale (f32). An all-zero
 * block gets d = 0 and zero quants; its bsums are written as zeros (ggml leaves them unset).
 */
export function quantizeQ8_KActivations(x: Float32Array): Uint8Array {
  const nb = checkRow("q8_K", x.length, QK_K, undefined, Q8_K_BYTES);
  const out = new Uint8Array(nb * Q8_K_BYTES);
  const view = new DataView(out.buffer);
  for (let i = 0; i < nb; i++) {
    const xb = i * QK_K;
    const o = i * Q8_K_BYTES;
    let max = 0;
    let amax = 0;
    for (let j = 0; j < QK_K; j++) {
      const ax = Math.abs(x[xb + j]);
      if (ax > amax) {
        amax = ax;
        max = x[xb + j];
      }
    }
    if (amax === 0) continue; // d = 0, qs = 0, bsums = 0
    const iscale = f32(-127 / max);
    for (let g = 0; g < QK_K / 16; g++) {
      let sum = 0;
      for (let j = g * 16; j < g * 16 + 16; j++) {
        const q = Math.min(127, roundHalfEven(f32(iscale * x[xb + j])));
        out[o + 4 + j] = q & 0xff;
        sum += q;
      }
      view.setInt16(o + 4 + QK_K + 2 * g, sum, true);
    }
    view.setFloat32(o, f32(1 / iscale), true);
  }
  return out;
}

/** f32 → f16, round to nearest even (ggml_cpu_fp32_to_fp16). */
export function convertF32ToF16(x: Float32Array): Uint8Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToF16(x[i]);
  return leBytes(out);
}

/** f32 → bf16, round to nearest even (ggml_cpu_fp32_to_bf16). */
export function convertF32ToBf16(x: Float32Array): Uint8Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToBf16(x[i]);
  return leBytes(out);
}

/** The little-endian bytes of a typed array (a view where the platform is little-endian). */
export function leBytes(a: Float32Array | Uint16Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const out = new Uint8Array(a.byteLength);
  const view = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++) {
    if (a instanceof Float32Array) view.setFloat32(4 * i, a[i], true);
    else view.setUint16(2 * i, a[i], true);
  }
  return out;
}

export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** f32 activations → `format`, as llama.cpp does before a dot product with a weight row. */
export function quantizeActivations(format: ActivationFormat, x: Float32Array): Uint8Array {
  switch (format) {
    case "f32": return leBytes(Float32Array.from(x));
    case "f16": return convertF32ToF16(x);
    case "bf16": return convertF32ToBf16(x);
    case "q8_0": return quantizeQ8_0Activations(x);
    case "q8_1": return quantizeQ8_1Activations(x);
    case "q8_K": return quantizeQ8_KActivations(x);
  }
}
