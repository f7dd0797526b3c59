// Q5_1: blocks of 32 weights, 24 bytes: f16 d; f16 m; u8 qh[4] (bit j = 5th bit of weight j);
// u8 qs[16] (byte j: weight j low nibble, weight j+16 high nibble); w = d * (nibble | bit << 4) + m.
// Activations: q8_1 (see q4_1.ts for the min term).
import { matmul_b32, matmul_b32_ref, dequantize_b32, high_bits_set } from "./common";
import { matmul_x4, matmul_x4_ref } from "./b32x4";

@final class Q5_1 {
  @inline bytes(): usize { return 24; }
  @inline qsAt(): usize { return 8; }
  @inline plane(): bool { return true; }
  @inline hasMin(): bool { return true; }
  @inline wide(): bool { return false; }
  @inline offset(): i32 { return 0; }
  @inline dotAdd(): bool { return false; }
  @inline relaxed(): bool { return true; }
  @inline roffset(): i32 { return 0; }
  @inline ulo(p: usize): v128 { return this.lo(p); }
  @inline uhi(p: usize): v128 { return this.hi(p); }
  @inline w16(p: usize, i: i32): v128 { return i16x8.splat(0); } // not wide: lo and hi serve
  @inline q(p: usize, j: i32): i32 {
    const byte = <i32>load<u8>(p + 8 + <usize>(j & 15));
    const high = (load<u32>(p, 4) >> <u32>j) & 1;
    return (j < 16 ? byte & 15 : byte >> 4) | <i32>(high << 4);
  }
  @inline lo(p: usize): v128 {
    const nibbles = v128.and(v128.load(p, 8), i8x16.splat(15));
    return v128.or(nibbles, v128.and(high_bits_set(p + 4, false), i8x16.splat(16)));
  }
  @inline hi(p: usize): v128 {
    const nibbles = v128.and(i16x8.shr_u(v128.load(p, 8), 4), i8x16.splat(15));
    return v128.or(nibbles, v128.and(high_bits_set(p + 4, true), i8x16.splat(16)));
  }
}

export function dequantize_q5_1(src: usize, dst: usize, n: i32): void {
  dequantize_b32<Q5_1>(src, dst, n);
}

export function matmul_q5_1(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_b32<Q5_1>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
}

export function matmul_q5_1_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_b32_ref<Q5_1>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** matmul over Q5_1 rows interleaved by four (b32x4.ts): rowStart, rowEnd multiples of 4. */
export function matmul_q5_1x4(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_x4<Q5_1>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
}

export function matmul_q5_1x4_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_x4_ref<Q5_1>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}
