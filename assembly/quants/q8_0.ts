// Q8_0: blocks of 32 weights, 34 bytes: f16 d; i8 qs[32]; w = d * q. Activations: q8_0.
import { matmul_b32, matmul_b32_ref, dequantize_b32, dot_add_exact, DotAdd, NoDotAdd } from "./common";

/** Q8_0's codec; D (DotAdd or NoDotAdd) says whether the relaxed build's tiles of eight take the i32
 *  dot-add (dotAdd in common.ts), where matmul_q8_0 found it exact on u8: the same integer sums and
 *  f32 operations either way, so the same bits. */
@final class Q8_0Codec<D> {
  @inline bytes(): usize { return 34; }
  @inline qsAt(): usize { return 2; }
  @inline plane(): bool { return false; }
  @inline hasMin(): bool { return false; }
  @inline wide(): bool { return true; }
  @inline offset(): i32 { return 0; }
  @inline dotAdd(): bool { return changetype<D>(0).on(); }
  @inline relaxed(): bool { return false; }
  @inline roffset(): i32 { return 0; }
  @inline w16(p: usize, i: i32): v128 { return v128.load8x8_s(p + 2 + (<usize>i << 3)); }
  @inline q(p: usize, j: i32): i32 { return <i32>load<i8>(p + 2 + <usize>j); }
  @inline lo(p: usize): v128 { return v128.load(p, 2); }
  @inline hi(p: usize): v128 { return v128.load(p, 18); }
}
type Q8_0 = Q8_0Codec<NoDotAdd>;

export function dequantize_q8_0(src: usize, dst: usize, n: i32): void {
  dequantize_b32<Q8_0>(src, dst, n);
}

export function matmul_q8_0(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  if (ASC_FEATURE_RELAXED_SIMD && nTok >= 8 && scratch != 0 && dot_add_exact(k)) {
    matmul_b32<Q8_0Codec<DotAdd>>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
  } else {
    matmul_b32<Q8_0>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
  }
}

export function matmul_q8_0_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_b32_ref<Q8_0>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}
