// F32, F16 and BF16 rows. Dot products as ggml_vec_dot_f32/f16/bf16: each product in f32, the sum in
// f64 (ggml_float), the result rounded to f32. F16 weights meet f16 activations, BF16 meet bf16.

import { LITTLE_ENDIAN, convertF32ToBf16, convertF32ToF16, leBytes } from "./activations";
import { checkRow, f32 } from "./common";
import { bf16ToF32, f16ToF32Table } from "./half";

export const F32_BYTES = 4;
export const F16_BYTES = 2;
export const BF16_BYTES = 2;

export function dequantize_f32(src: Uint8Array, n: number): Float32Array {
  checkRow("f32", n, 1, src, F32_BYTES);
  const y = new Float32Array(n);
  new Uint8Array(y.buffer).set(src.subarray(0, 4 * n));
  if (!LITTLE_ENDIAN) {
    const view = new DataView(src.buffer, src.byteOffset, 4 * n);
    for (let i = 0; i < n; i++) y[i] = view.getFloat32(4 * i, true);
  }
  return y;
}

export function dequantize_f16(src: Uint8Array, n: number): Float32Array {
  checkRow("f16", n, 1, src, F16_BYTES);
  const table = f16ToF32Table();
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) y[i] = table[src[2 * i] | (src[2 * i + 1] << 8)];
  return y;
}

export function dequantize_bf16(src: Uint8Array, n: number): Float32Array {
  checkRow("bf16", n, 1, src, BF16_BYTES);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) y[i] = bf16ToF32(src[2 * i] | (src[2 * i + 1] << 8));
  return y;
}

export function quantize_f32(x: Float32Array): Uint8Array {
  return leBytes(Float32Array.from(x));
}

export const quantize_f16 = convertF32ToF16;
export const quantize_bf16 = convertF32ToBf16;

export function vecDot_f32_f32(w: Uint8Array, x: Uint8Array, n: number): number {
  const a = dequantize_f32(w, n);
  const b = dequantize_f32(x, n);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += f32(a[i] * b[i]);
  return f32(sum);
}

export function vecDot_f16_f16(w: Uint8Array, x: Uint8Array, n: number): number {
  const a = dequantize_f16(w, n);
  const b = dequantize_f16(x, n);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += f32(a[i] * b[i]);
  return f32(sum);
}

export function vecDot_bf16_bf16(w: Uint8Array, x: Uint8Array, n: number): number {
  const a = dequantize_bf16(w, n);
  const b = dequantize_bf16(x, n);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += f32(a[i] * b[i]);
  return f32(sum);
}
