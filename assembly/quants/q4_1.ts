// Q4_1: blocks of 32 weights, 20 bytes: f16 d; f16 m; u8 qs[16]. Byte j holds weight j in its low
// nibble and weight j+16 in its high nibble; w = d * nibble + m. Activations: q8_1, whose s = d*sum(q)
// carries the min term: dot = d_w d_x sum(q_w q_x) + m_w s_x.
import { matmul_b32, matmul_b32_ref, dequantize_b32, nibbles16 } from "./common";
import { matmul_x4, matmul_x4_ref } from "./b32x4";

@final class Q4_1 {
  @inline bytes(): usize { return 20; }
  @inline qsAt(): usize { return 4; }
  @inline plane(): bool { return false; }
  @inline hasMin(): bool { return true; }
  @inline wide(): bool { return true; }
  @inline offset(): i32 { return 0; }
  @inline dotAdd(): bool { return false; }
  @inline relaxed(): bool { return true; }
  @inline roffset(): i32 { return 0; }
  @inline ulo(p: usize): v128 { return this.lo(p); }
  @inline uhi(p: usize): v128 { return this.hi(p); }
  @inline w16(p: usize, i: i32): v128 { return nibbles16(p + 4, i); }
  @inline q(p: usize, j: i32): i32 {
    const byte = <i32>load<u8>(p + 4 + <usize>(j & 15));
    return j < 16 ? byte & 15 : byte >> 4;
  }
  @inline lo(p: usize): v128 {
    return v128.and(v128.load(p, 4), i8x16.splat(15));
  }
  @inline hi(p: usize): v128 {
    return v128.and(i16x8.shr_u(v128.load(p, 4), 4), i8x16.splat(15));
  }
}

export function dequantize_q4_1(src: usize, dst: usize, n: i32): void {
  dequantize_b32<Q4_1>(src, dst, n);
}

export function matmul_q4_1(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_b32<Q4_1>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
}

export function matmul_q4_1_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_b32_ref<Q4_1>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** matmul over Q4_1 rows interleaved by four (b32x4.ts): rowStart, rowEnd multiples of 4. */
export function matmul_q4_1x4(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_x4<Q4_1>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch);
}

export function matmul_q4_1x4_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_x4_ref<Q4_1>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}
