// IQ4_NL: blocks of 32 weights, 18 bytes: f16 d; u8 qs[16] (byte j: weight j low nibble, weight
// j+16 high nibble); w = d * kvalues[nibble], a non-linear 4-bit grid. Activations: q8_0.
import { matmul_b32, matmul_b32_ref, dequantize_b32, swizzle_const } from "./common";
import { matmul_x4, matmul_x4_ref } from "./b32x4";

/** kvalues_iq4nl, as a constant vector (no static data): looked up with i8x16.swizzle. */
@inline function kvalues(): v128 {
  return i8x16(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
}

@final class IQ4_NL {
  @inline bytes(): usize { return 18; }
  @inline qsAt(): usize { return 2; }
  @inline plane(): bool { return false; }
  @inline hasMin(): bool { return false; }
  @inline wide(): bool { return false; }
  @inline offset(): i32 { return 0; }
  @inline dotAdd(): bool { return false; }
  @inline relaxed(): bool { return false; }
  @inline roffset(): i32 { return 0; }
  @inline w16(p: usize, i: i32): v128 { return i16x8.splat(0); } // not wide: lo and hi serve
  @inline q(p: usize, j: i32): i32 {
    const byte = <i32>load<u8>(p + 2 + <usize>(j & 15));
    const index = j < 16 ? byte & 15 : byte >> 4;
    return i8x16.extract_lane_s(i8x16.swizzle(kvalues(), i8x16.splat(<i8>index)), 0);
  }
  // indices in [0, 16): the relaxed build's relaxed_swizzle is one pshufb (V8's swizzle first
  // saturates the indices, one more instruction and constant)
  @inline lo(p: usize): v128 {
    return swizzle_const(kvalues(), v128.and(v128.load(p, 2), i8x16.splat(15)));
  }
  @inline hi(p: usize): v128 {
    return swizzle_const(kvalues(), v128.and(i16x8.shr_u(v128.load(p, 2), 4), i8x16.splat(15)));
  }
}

export function dequantize_iq4_nl(src: usize, dst: usize, n: i32): void {
  dequantize_b32<IQ4_NL>(src, dst, n);
}

export function matmul_iq4_nl(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_b32<IQ4_NL>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
}

export function matmul_iq4_nl_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_b32_ref<IQ4_NL>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** matmul over IQ4_NL rows interleaved by four (b32x4.ts): rowStart, rowEnd multiples of 4. */
export function matmul_iq4_nlx4(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_x4<IQ4_NL>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
}

export function matmul_iq4_nlx4_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_x4_ref<IQ4_NL>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}
