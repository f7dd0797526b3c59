// Q5_0: blocks of 32 weights, 22 bytes: f16 d; u8 qh[4] (bit j = 5th bit of weight j); u8 qs[16]
// (byte j: weight j low nibble, weight j+16 high nibble); w = d * ((nibble | bit << 4) - 16).
// Activations: q8_0.
import { matmul_b32, matmul_b32_ref, dequantize_b32, high_bits_set } from "./common";
import { matmul_x4, matmul_x4_ref } from "./b32x4";

@final class Q5_0 {
  @inline bytes(): usize { return 22; }
  @inline qsAt(): usize { return 6; }
  @inline plane(): bool { return true; }
  @inline hasMin(): bool { return false; }
  @inline wide(): bool { return false; }
  @inline offset(): i32 { return 0; }
  @inline dotAdd(): bool { return false; }
  @inline relaxed(): bool { return true; }
  @inline roffset(): i32 { return 16; }
  @inline ulo(p: usize): v128 {
    return v128.or(v128.and(v128.load(p, 6), i8x16.splat(15)), v128.and(high_bits_set(p + 2, false), i8x16.splat(16)));
  }
  @inline uhi(p: usize): v128 {
    const nibbles = v128.and(i16x8.shr_u(v128.load(p, 6), 4), i8x16.splat(15));
    return v128.or(nibbles, v128.and(high_bits_set(p + 2, true), i8x16.splat(16)));
  }
  @inline w16(p: usize, i: i32): v128 { return i16x8.splat(0); } // not wide: lo and hi serve
  @inline q(p: usize, j: i32): i32 {
    const byte = <i32>load<u8>(p + 6 + <usize>(j & 15));
    const high = (load<u32>(p, 2) >> <u32>j) & 1;
    return ((j < 16 ? byte & 15 : byte >> 4) | <i32>(high << 4)) - 16;
  }
  // (nibble | 0xf0 where the 5th bit is clear) is nibble + 16*bit - 16 as an i8: ggml's AVX trick.
  @inline lo(p: usize): v128 {
    const nibbles = v128.and(v128.load(p, 6), i8x16.splat(15));
    return v128.or(nibbles, v128.andnot(i8x16.splat(<i8>0xf0), high_bits_set(p + 2, false)));
  }
  @inline hi(p: usize): v128 {
    const nibbles = v128.and(i16x8.shr_u(v128.load(p, 6), 4), i8x16.splat(15));
    return v128.or(nibbles, v128.andnot(i8x16.splat(<i8>0xf0), high_bits_set(p + 2, true)));
  }
}

export function dequantize_q5_0(src: usize, dst: usize, n: i32): void {
  dequantize_b32<Q5_0>(src, dst, n);
}

export function matmul_q5_0(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_b32<Q5_0>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
}

export function matmul_q5_0_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_b32_ref<Q5_0>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** matmul over Q5_0 rows interleaved by four (b32x4.ts): rowStart, rowEnd multiples of 4. */
export function matmul_q5_0x4(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_x4<Q5_0>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
}

export function matmul_q5_0x4_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_x4_ref<Q5_0>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}
