// BF16 weights: bfloat16 (the upper half of an f32); activations rounded to bf16
// (convert_f32_bf16). Products are exact in f32 and summed in f32, as ggml_vec_dot_bf16 does.
import { matmul_dense, matmul_dense_ref, dequantize_dense, bf16_to_f32, bf16x8_lo_to_f32x4, bf16x8_hi_to_f32x4 } from "./common";

@final class BF16 {
  @inline size(): usize { return 2; }
  @inline lo8(p: usize): v128 { return bf16x8_lo_to_f32x4(p); }
  @inline hi8(p: usize): v128 { return bf16x8_hi_to_f32x4(p); }
  @inline special(): bool { return false; }
  @inline lo8f(p: usize): v128 { return this.lo8(p); }
  @inline hi8f(p: usize): v128 { return this.hi8(p); }
  @inline exp8(p: usize): v128 { return i16x8.splat(0); }
  @inline elem(p: usize): f32 { return bf16_to_f32(load<u16>(p)); }
}

export function dequantize_bf16(src: usize, dst: usize, n: i32): void {
  dequantize_dense<BF16>(src, dst, n);
}

export function matmul_bf16(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_dense<BF16>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

export function matmul_bf16_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_dense_ref<BF16>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}
