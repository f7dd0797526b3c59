// Q4_0: blocks of 32 weights, 18 bytes: f16 d; u8 qs[16]. Byte j holds weight j in its low nibble
// and weight j+16 in its high nibble; w = d * (nibble - 8). Activations: q8_0.
import { matmul_b32, matmul_b32_ref, dequantize_b32, nibbles16 } from "./common";
import { matmul_x4, matmul_x4_ref } from "./b32x4";

@final class Q4_0 {
  @inline bytes(): usize { return 18; }
  @inline qsAt(): usize { return 2; }
  @inline plane(): bool { return false; }
  @inline hasMin(): bool { return false; }
  @inline wide(): bool { return true; }
  @inline offset(): i32 { return 8; }
  @inline dotAdd(): bool { return false; }
  @inline relaxed(): bool { return true; }
  @inline roffset(): i32 { return 8; }
  @inline ulo(p: usize): v128 { return v128.and(v128.load(p, 2), i8x16.splat(15)); }
  @inline uhi(p: usize): v128 { return v128.and(i16x8.shr_u(v128.load(p, 2), 4), i8x16.splat(15)); }
  @inline w16(p: usize, i: i32): v128 { return nibbles16(p + 2, i); }
  @inline q(p: usize, j: i32): i32 {
    const byte = <i32>load<u8>(p + 2 + <usize>(j & 15));
    return (j < 16 ? byte & 15 : byte >> 4) - 8;
  }
  @inline lo(p: usize): v128 {
    return i8x16.sub(v128.and(v128.load(p, 2), i8x16.splat(15)), i8x16.splat(8));
  }
  @inline hi(p: usize): v128 { // a 16-bit shift and a mask: V8 has no byte shift
    return i8x16.sub(v128.and(i16x8.shr_u(v128.load(p, 2), 4), i8x16.splat(15)), i8x16.splat(8));
  }
}

export function dequantize_q4_0(src: usize, dst: usize, n: i32): void {
  dequantize_b32<Q4_0>(src, dst, n);
}

export function matmul_q4_0(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_b32<Q4_0>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
}

export function matmul_q4_0_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_b32_ref<Q4_0>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** matmul over Q4_0 rows interleaved by four (b32x4.ts): rowStart, rowEnd multiples of 4. */
export function matmul_q4_0x4(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_x4<Q4_0>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
}

export function matmul_q4_0x4_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_x4_ref<Q4_0>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}
