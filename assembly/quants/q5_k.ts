// Q5_K: 256 weights in 176 bytes (ggml block_q5_K), dotted with Q8_K activations.
//   f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
// 8 sub-blocks of 32: w = d*sc[j]*q - dmin*m[j], q in [0, 31], sc and m 6-bit, packed in scales[12]
// as in Q4_K. Chunk c of qs (32 bytes) holds the low 4 bits of sub-block 2c in its low nibbles and
// of 2c+1 in its high nibbles; their 5th bits are bits 2c and 2c+1 of qh[l]. The min term uses the
// Q8_K block sums: sum(q8 * m) = m * bsum.
import { f16_to_f32 } from "./common";
import { QK_K, Q8K, scales03, scales47, mins03, mins47, byteOf, matmul_k_ref, matmul_k_tiles } from "./kquants";

@inline const BLOCK: usize = 176;



/** 16 weights of chunk c: the low (or high) nibbles of v plus 16 times bit 0 (or bit 1) of each
 * byte of hc, which is qh shifted right by 2c. i16 shifts are fine here: only bits that stay
 * inside their byte are kept. */
@inline function lowWeights(v: v128, hc: v128): v128 {
  return v128.or(v128.and(v, i8x16.splat(0x0f)), v128.and(i16x8.shl(hc, 4), i8x16.splat(0x10)));
}
@inline function highWeights(v: v128, hc: v128): v128 {
  return v128.or(v128.and(i16x8.shr_u(v, 4), i8x16.splat(0x0f)), v128.and(i16x8.shl(hc, 3), i8x16.splat(0x10)));
}

/** 16 times bit `bit` (a constant, 0..7) of each byte of qh: the bit moved to bit 4 by one shift
 *  and kept alone (i16 shifts are fine: only the bit that lands on bit 4 of its own byte is kept). */
@inline function fifthBits(qh: v128, bit: i32): v128 {
  const m = i8x16.splat(0x10);
  if (bit < 4) return v128.and(i16x8.shl(qh, <u32>(4 - bit)), m);
  return bit == 4 ? v128.and(qh, m) : v128.and(i16x8.shr_u(qh, <u32>(bit - 4)), m);
}

/** n weights from src to f32 at dst (dequantize_row_q5_K). */
export function dequantize_q5_k(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n / QK_K; b++) {
    const wb = src + <usize>b * BLOCK;
    const y = dst + <usize>b * 1024;
    const d = f16_to_f32(load<u16>(wb));
    const dmin = f16_to_f32(load<u16>(wb, 2));
    const a0 = load<u32>(wb, 4), a1 = load<u32>(wb, 8), a2 = load<u32>(wb, 12);
    const s03 = scales03(a0), s47 = scales47(a0, a2), m03 = mins03(a1), m47 = mins47(a1, a2);
    for (let c = 0; c < 4; c++) {
      const d1 = d * <f32>byteOf(s03, s47, 2 * c), m1 = dmin * <f32>byteOf(m03, m47, 2 * c);
      const d2 = d * <f32>byteOf(s03, s47, 2 * c + 1), m2 = dmin * <f32>byteOf(m03, m47, 2 * c + 1);
      const q = wb + 48 + (<usize>c << 5);
      const yc = y + (<usize>c << 8);
      const u1 = <u32>1 << (2 * c), u2 = <u32>2 << (2 * c);
      for (let l = 0; l < 32; l++) {
        const v = <u32>load<u8>(q + <usize>l), h = <u32>load<u8>(wb + 16 + <usize>l);
        store<f32>(yc + (<usize>l << 2), d1 * <f32>((v & 0xf) + (h & u1 ? 16 : 0)) - m1);
        store<f32>(yc + 128 + (<usize>l << 2), d2 * <f32>((v >> 4) + (h & u2 ? 16 : 0)) - m2);
      }
    }
  }
}

/** Scalar reference (ggml's ggml_vec_dot_q5_K_q8_K_generic): exact integer sums per block, then
 * the block's d and dmin applied in f32; on the file's layout, or on the packed one (see below). */
@inline function dotRefOf(wr: usize, xr: usize, nb: i32, packed: bool): f32 {
  let sumf: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb = xr + <usize>b * Q8K;
    const a0 = load<u32>(wb, 4), a1 = load<u32>(wb, 8), a2 = load<u32>(wb, 12);
    const s03 = scales03(a0), s47 = scales47(a0, a2), m03 = mins03(a1), m47 = mins47(a1, a2);
    let sumi = 0;
    for (let j = 0; j < 16; j++) sumi += <i32>load<i16>(xb + 260 + (<usize>j << 1)) * byteOf(m03, m47, j >> 1);
    let isum = 0;
    for (let j = 0; j < 8; j++) {
      const c = j >> 1;
      const q = wb + 48 + (<usize>c << 5);
      let s = 0;
      for (let l = 0; l < 32; l++) {
        const v = <u32>load<u8>(q + <usize>l), h = <u32>load<u8>(wb + 16 + <usize>l);
        let w: u32;
        if (packed) w = (j & 1) == 0 ? v & 31 : (v >> 5) | (((h >> (2 * <u32>c)) & 3) << 3);
        else w = ((v >> (<u32>(j & 1) << 2)) & 0xf) | (((h >> <u32>j) & 1) << 4);
        s += <i32>w * <i32>load<i8>(xb + 4 + <usize>(32 * j + l));
      }
      isum += byteOf(s03, s47, j) * s;
    }
    const dx = load<f32>(xb);
    const d = f16_to_f32(load<u16>(wb)) * dx;
    const dmin = f16_to_f32(load<u16>(wb, 2)) * dx;
    sumf += d * <f32>isum;
    sumf -= dmin * <f32>sumi;
  }
  return sumf;
}

function dotRef(wr: usize, xr: usize, nb: i32): f32 { return dotRefOf(wr, xr, nb, false); }

export function matmul_q5_k_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_ref<Q5K>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}


export function matmul_q5_k(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_tiles<Q5K>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** Q5_K's row kernels and weight decoding, for the shared loops in kquants.ts: the 5th bits of the
 *  16 weights from qs byte 16 half + l are bit 2c (low nibbles) or 2c + 1 (high) of qh[16 half + l]. */
@final class Q5K {
  @inline bytes(): usize { return BLOCK; }
  @inline dotRef(wr: usize, xr: usize, nb: i32): f32 { return dotRef(wr, xr, nb); }
  @inline qs(): usize { return 48; }
  @inline lo(v: v128, wb: usize, half: usize, c: i32): v128 { return lowWeights(v, i16x8.shr_u(v128.load(wb + 16 + (half << 4)), c << 1)); }
  @inline hi(v: v128, wb: usize, half: usize, c: i32): v128 { return highWeights(v, i16x8.shr_u(v128.load(wb + 16 + (half << 4)), c << 1)); }
  // The one-token loops pass c as a constant: one shift per 16 weights moves the 5th bit into place.
  @inline lo1(v: v128, wb: usize, half: usize, c: i32): v128 {
    return v128.or(v128.and(v, i8x16.splat(0x0f)), fifthBits(v128.load(wb + 16 + (half << 4)), c << 1));
  }
  @inline hi1(v: v128, wb: usize, half: usize, c: i32): v128 {
    return v128.or(v128.and(i16x8.shr_u(v, 4), i8x16.splat(0x0f)), fifthBits(v128.load(wb + 16 + (half << 4)), (c << 1) + 1));
  }
}

// ---- The packed layout ("q5_kp"): what the loader makes of a Q5_K matrix that only matmuls read ----
// (compute/model/interleave.ts packQ5K). A block keeps its 176 bytes, d, dmin and scales. With lo(c, l)
// and hi(c, l) the 5-bit weights l (0..31) of sub-blocks 2c and 2c + 1:
//   qs[32c + l] = lo(c, l) | (hi(c, l) & 7) << 5        (bytes 48-175, where the file has qs)
//   qh[l] bits 2c, 2c + 1 = hi(c, l) >> 3                (bytes 16-47, where the file has qh)
// so a low sub-block decodes with one and, a high one with five instructions (the file's layout
// takes four and five). The integer sums are those of the file's layout, so are the bits.

/** Scalar reference on the packed layout: dotRef's sums, bit for bit. */
function dotRefPacked(wr: usize, xr: usize, nb: i32): f32 { return dotRefOf(wr, xr, nb, true); }

/** The top two bits of the 16 high weights of chunk c (a constant in the one-token loops), half
 *  `half`, moved to bits 3 and 4 (i16 shifts are fine: only bits that stay inside their byte are kept). */
@inline function topBits(wb: usize, half: usize, c: i32): v128 {
  const h = v128.load(wb + 16 + (half << 4));
  const m = i8x16.splat(0x18);
  if (c == 0) return v128.and(i16x8.shl(h, 3), m);
  if (c == 1) return v128.and(i16x8.shl(h, 1), m);
  return v128.and(i16x8.shr_u(h, <u32>((c << 1) - 3)), m);
}

@inline function packedHigh(v: v128, top: v128): v128 {
  return v128.or(v128.and(i16x8.shr_u(v, 5), i8x16.splat(7)), top);
}

/** Q5_K's packed layout's weight decoding, for the shared loops in kquants.ts (as Q5K). */
@final class Q5KPacked {
  @inline bytes(): usize { return BLOCK; }
  @inline dotRef(wr: usize, xr: usize, nb: i32): f32 { return dotRefPacked(wr, xr, nb); }
  @inline qs(): usize { return 48; }
  @inline lo(v: v128, wb: usize, half: usize, c: i32): v128 { return v128.and(v, i8x16.splat(31)); }
  @inline hi(v: v128, wb: usize, half: usize, c: i32): v128 {
    // c is not a constant in the tiles: bits 2c, 2c + 1 down to 0 and 1, kept, then up to 3 and 4
    const h = v128.and(i16x8.shr_u(v128.load(wb + 16 + (half << 4)), <u32>(c << 1)), i8x16.splat(3));
    return packedHigh(v, i16x8.shl(h, 3));
  }
  @inline lo1(v: v128, wb: usize, half: usize, c: i32): v128 { return v128.and(v, i8x16.splat(31)); }
  @inline hi1(v: v128, wb: usize, half: usize, c: i32): v128 { return packedHigh(v, topBits(wb, half, c)); }
}

/** matmul (Kernel ABI) on a Q5_K matrix in the packed layout (see above). */
export function matmul_q5_kp(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_tiles<Q5KPacked>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

export function matmul_q5_kp_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_ref<Q5KPacked>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** Chunk c (a constant) of the 16 weights l = 16i..16i+15 (qs vector q, qh vector h of the file):
 *  stores the packed qs vector at p and returns the chunk's top bits, at bits 2c and 2c + 1. */
@inline function packChunk(p: usize, h: v128, c: i32): v128 {
  const q = v128.load(p);
  const one = i8x16.splat(1), m4 = i8x16.splat(0x0f);
  const lo = v128.or(v128.and(q, m4), i16x8.shl(v128.and(i16x8.shr_u(h, <u32>(2 * c)), one), 4));
  const hi = v128.or(v128.and(i16x8.shr_u(q, 4), m4), i16x8.shl(v128.and(i16x8.shr_u(h, <u32>(2 * c + 1)), one), 4));
  v128.store(p, v128.or(lo, i16x8.shl(v128.and(hi, i8x16.splat(7)), 5)));
  return i16x8.shl(v128.and(i16x8.shr_u(hi, 3), i8x16.splat(3)), <u32>(2 * c));
}

/** Rewrites `blocks` Q5_K blocks at w (the file's layout) in the packed layout above, in place: the
 *  loader's packer (compute/model/interleave.ts packQ5K writes the same bytes in JavaScript). */
export function pack_q5_k(w: usize, blocks: i32): void {
  for (let b = 0; b < blocks; b++) {
    const wb = w + <usize>b * BLOCK;
    for (let i: usize = 0; i < 32; i += 16) {
      const h = v128.load(wb + 16 + i), q = wb + 48 + i;
      const top = v128.or(v128.or(packChunk(q, h, 0), packChunk(q + 32, h, 1)), v128.or(packChunk(q + 64, h, 2), packChunk(q + 96, h, 3)));
      v128.store(wb + 16 + i, top);
    }
  }
}
