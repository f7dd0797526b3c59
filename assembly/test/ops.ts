// Test-only f32 ops (build/kernels-test.wasm): they check the kernels' own exp and softmax, which the
// library's kernels use inline (SwiGLU, attention), a copy, and the half conversions of quants/common.ts.
import { expf, expf4, expNeg, expNeg4, softmaxRow } from "../ops/math";
import { f16x4_hi_to_f32x4, f16x4_hi_to_f32x4_finite, f16x4_hi_to_f32x4_nosub } from "../quants/common";

/** dst = src, n floats (the ranges may overlap). */
export function copy_f32(src: usize, dst: usize, n: i32): void {
  memory.copy(dst, src, <usize>n << 2);
}

/** Softmax of each of nRows contiguous rows of n floats, x to out (out may alias x); see softmaxRow. */
export function softmax_f32(x: usize, out: usize, nRows: i32, n: i32): void {
  for (let r = 0; r < nRows; r++) {
    const o = <usize>r * <usize>n << 2;
    softmaxRow(x + o, out + o, n);
  }
}

/** out = exp(x) with the kernels' own exp (about 2 ulp; see math.ts). */
export function exp_f32(x: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, expf4(v128.load(x + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, expf(load<f32>(x + o)));
  }
}

/** out = attention's exp (expNeg: exp for x <= 0, 0 below -69; see math.ts). */
export function exp_neg_f32(x: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, expNeg4(v128.load(x + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, expNeg(load<f32>(x + o)));
  }
}

/** n halves at src (n a multiple of 4) to f32 at dst with one of the SIMD conversions of
 *  quants/common.ts: 0 f16x4_hi_to_f32x4 (exact), 1 _finite, 2 _nosub. */
export function f16_to_f32_simd(src: usize, dst: usize, n: i32, which: i32): void {
  for (let i = 0; i < n; i += 4) {
    const v = i32x4.shl(v128.load16x4_u(src + (<usize>i << 1)), 16);
    const f = which == 0 ? f16x4_hi_to_f32x4(v) : which == 1 ? f16x4_hi_to_f32x4_finite(v) : f16x4_hi_to_f32x4_nosub(v);
    v128.store(dst + (<usize>i << 2), f);
  }
}
