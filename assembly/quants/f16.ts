// F16 weights: IEEE half; activations rounded to f16 (convert_f32_f16). Both are widened to f32
// exactly, and their products (exact in f32) summed in f32, as ggml_vec_dot_f16 does.
import { matmul_dense, matmul_dense_ref, dequantize_dense, f16_to_f32, f16x8_lo_to_f32x4, f16x8_hi_to_f32x4, f16x4_hi_to_f32x4_finite } from "./common";

@final class F16 {
  @inline size(): usize { return 2; }
  @inline lo8(p: usize): v128 { return f16x8_lo_to_f32x4(p); }
  @inline hi8(p: usize): v128 { return f16x8_hi_to_f32x4(p); }
  @inline special(): bool { return true; }
  @inline lo8f(p: usize): v128 { return f16x4_hi_to_f32x4_finite(i16x8.shuffle(i16x8.splat(0), v128.load(p), 0, 8, 1, 9, 2, 10, 3, 11)); }
  @inline hi8f(p: usize): v128 { return f16x4_hi_to_f32x4_finite(i16x8.shuffle(i16x8.splat(0), v128.load(p), 4, 12, 5, 13, 6, 14, 7, 15)); }
  @inline exp8(p: usize): v128 { return v128.and(v128.load(p), i16x8.splat(0x7c00)); }
  @inline elem(p: usize): f32 { return f16_to_f32(load<u16>(p)); }
}

export function dequantize_f16(src: usize, dst: usize, n: i32): void {
  dequantize_dense<F16>(src, dst, n);
}

export function matmul_f16(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_dense<F16>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

export function matmul_f16_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_dense_ref<F16>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}
