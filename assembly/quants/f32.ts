// F32 weights: plain float32; activations f32 (no rounding).
import { matmul_dense, matmul_dense_ref, dequantize_dense } from "./common";

@final class F32 {
  @inline size(): usize { return 4; }
  @inline lo8(p: usize): v128 { return v128.load(p); }
  @inline hi8(p: usize): v128 { return v128.load(p, 16); }
  @inline special(): bool { return false; }
  @inline lo8f(p: usize): v128 { return this.lo8(p); }
  @inline hi8f(p: usize): v128 { return this.hi8(p); }
  @inline exp8(p: usize): v128 { return i16x8.splat(0); }
  @inline elem(p: usize): f32 { return load<f32>(p); }
}

export function dequantize_f32(src: usize, dst: usize, n: i32): void {
  dequantize_dense<F32>(src, dst, n);
}

export function matmul_f32(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_dense<F32>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

export function matmul_f32_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_dense_ref<F32>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}
