// Q5_K: 256 weights in 176 bytes (ggml block_q5_K), dotted with Q8_K activations.
//   f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
// 8 sub-blocks of 32: w = d*sc[j]*q - dmin*m[j], q in [0, 31], sc and m 6-bit, packed in scales[12]
// as in Q4_K. Chunk c of qs (32 bytes) holds the low 4 bits of sub-block 2c in its low nibbles and
// of 2c+1 in its high nibbles; their 5th bits are bits 2c and 2c+1 of qh[l]. The min term uses the
// Q8_K block sums: sum(q8 * m) = m * bsum.
import { f16_to_f32 } from "./common";
import { QK_K, Q8K, scales03, scales47, mins03, mins47, byteOf, minsPairs, minTerm, hsum, combineMin, matmul_k_ref, matmul_k_quads } from "./kquants";

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

/** scale * dot(w, q8) over 32 weights, as four i32 partial sums. */
@inline function dot32(w0: v128, w1: v128, scale: v128, q: usize): v128 {
  const q0 = v128.load(q);
  const q1 = v128.load(q, 16);
  const s = i16x8.add(
    i16x8.add(i16x8.extmul_low_i8x16_s(w0, q0), i16x8.extmul_high_i8x16_s(w0, q0)),
    i16x8.add(i16x8.extmul_low_i8x16_s(w1, q1), i16x8.extmul_high_i8x16_s(w1, q1)));
  return i32x4.dot_i16x8_s(s, scale);
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
 * the block's d and dmin applied in f32. */
function dotRef(wr: usize, xr: usize, nb: i32): f32 {
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
      const q = wb + 48 + (<usize>(j >> 1) << 5);
      const shift = <u32>(j & 1) << 2;
      let s = 0;
      for (let l = 0; l < 32; l++) {
        const high = (<u32>load<u8>(wb + 16 + <usize>l) >> <u32>j) & 1;
        const w = <i32>(((<u32>load<u8>(q + <usize>l) >> shift) & 0xf) | (high << 4));
        s += w * <i32>load<i8>(xb + 4 + <usize>(32 * j + l));
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

export function matmul_q5_k_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  matmul_k_ref<Q5K>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** One row against one token. */
function rowDot1(wr: usize, x0: usize, nb: i32): f32 {
  let f0 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb0 = x0 + <usize>b * Q8K;
    const a0 = load<u32>(wb, 4), a1 = load<u32>(wb, 8), a2 = load<u32>(wb, 12);
    const m03 = mins03(a1), m47 = mins47(a1, a2);
    // the scales advance by shifts: TurboFan would recompute loop invariants at every iteration
    let sc = <u64>scales03(a0) | (<u64>scales47(a0, a2) << 32);
    let acc0 = i32x4.splat(0);
    let hc0 = v128.load(wb, 16), hc1 = v128.load(wb, 32);
    for (let c = 0; c < 4; c++) {
      const q = wb + 48 + (<usize>c << 5);
      const v0 = v128.load(q), v1 = v128.load(q, 16);
      const scLo = i16x8.splat(<i16>(sc & 0xff));
      const scHi = i16x8.splat(<i16>((sc >> 8) & 0xff));
      sc >>= 16;
      const xo = (<usize>c << 6) + 4;
      acc0 = i32x4.add(acc0, dot32(lowWeights(v0, hc0), lowWeights(v1, hc1), scLo, xb0 + xo));
      acc0 = i32x4.add(acc0, dot32(highWeights(v0, hc0), highWeights(v1, hc1), scHi, xb0 + xo + 32));
      hc0 = i16x8.shr_u(hc0, 2);
      hc1 = i16x8.shr_u(hc1, 2);
    }
    const mLo = minsPairs(m03, m47, 0), mHi = minsPairs(m03, m47, 1);
    const d = f16_to_f32(load<u16>(wb)), dmin = f16_to_f32(load<u16>(wb, 2));
    f0 = combineMin(f0, acc0, minTerm(xb0, mLo, mHi), xb0, d, dmin);
  }
  return hsum(f0);
}

/** 16 weights (u8 lanes) times their scale, widened to two i16x8 halves for the token loop. */
@inline function widenLo(u: v128, scale: v128): v128 { return i16x8.mul(i16x8.extend_low_i8x16_u(u), scale); }
@inline function widenHi(u: v128, scale: v128): v128 { return i16x8.mul(i16x8.extend_high_i8x16_u(u), scale); }

/** dot of 16 pre-scaled i16 weights (wa, wb) with 16 q8 at q, as four i32 partial sums. */
@inline function dot16w(wa: v128, wb: v128, q: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(wa, v128.load8x8_s(q)), i32x4.dot_i16x8_s(wb, v128.load8x8_s(q, 8)));
}

/** One row against four tokens: each weight block is decoded (widened to i16 and scaled) once for
 * the four, so a token costs two sign-extending loads and two i16 dot products per 16 weights. */
function rowDot4(wr: usize, x0: usize, x1: usize, x2: usize, x3: usize, nb: i32,
  o0: usize, o1: usize, o2: usize, o3: usize): void {
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xo = <usize>b * Q8K;
    const xb0 = x0 + xo, xb1 = x1 + xo, xb2 = x2 + xo, xb3 = x3 + xo;
    const a0 = load<u32>(wb, 4), a1 = load<u32>(wb, 8), a2 = load<u32>(wb, 12);
    const m03 = mins03(a1), m47 = mins47(a1, a2);
    let sc = <u64>scales03(a0) | (<u64>scales47(a0, a2) << 32);
    let acc0 = i32x4.splat(0), acc1 = i32x4.splat(0), acc2 = i32x4.splat(0), acc3 = i32x4.splat(0);
    let qo: usize = 4;
    for (let p = 0; p < 16; p++) {
      // piece p: 16 bytes (p & 1) of chunk p >> 2, low nibbles (sub-block 2c) or high (2c+1);
      // its 5th bits are bit p >> 1 of the matching qh bytes
      const i = <usize>(p & 1) << 4;
      const v = v128.load(wb + 48 + (<usize>(p >> 2) << 5) + i);
      const h = i16x8.shl(i16x8.shr_u(v128.load(wb + 16 + i), p >> 1), 4);
      const u = v128.or(v128.and(i16x8.shr_u(v, (p & 2) << 1), i8x16.splat(0x0f)), v128.and(h, i8x16.splat(0x10)));
      const scv = i16x8.splat(<i16>(sc & 0xff));
      const wa = widenLo(u, scv), wh = widenHi(u, scv);
      acc0 = i32x4.add(acc0, dot16w(wa, wh, xb0 + qo));
      acc1 = i32x4.add(acc1, dot16w(wa, wh, xb1 + qo));
      acc2 = i32x4.add(acc2, dot16w(wa, wh, xb2 + qo));
      acc3 = i32x4.add(acc3, dot16w(wa, wh, xb3 + qo));
      qo += 16;
      sc >>= <u64>(p & 1) << 3;
    }
    const mLo = minsPairs(m03, m47, 0), mHi = minsPairs(m03, m47, 1);
    const d = f16_to_f32(load<u16>(wb)), dmin = f16_to_f32(load<u16>(wb, 2));
    f0 = combineMin(f0, acc0, minTerm(xb0, mLo, mHi), xb0, d, dmin);
    f1 = combineMin(f1, acc1, minTerm(xb1, mLo, mHi), xb1, d, dmin);
    f2 = combineMin(f2, acc2, minTerm(xb2, mLo, mHi), xb2, d, dmin);
    f3 = combineMin(f3, acc3, minTerm(xb3, mLo, mHi), xb3, d, dmin);
  }
  store<f32>(o0, hsum(f0));
  store<f32>(o1, hsum(f1));
  store<f32>(o2, hsum(f2));
  store<f32>(o3, hsum(f3));
}

export function matmul_q5_k(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  matmul_k_quads<Q5K>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** Q5_K's row kernels, for the shared loops in kquants.ts. */
@final class Q5K {
  @inline bytes(): usize { return BLOCK; }
  @inline dotRef(wr: usize, xr: usize, nb: i32): f32 { return dotRef(wr, xr, nb); }
  @inline dot1(wr: usize, x: usize, nb: i32): f32 { return rowDot1(wr, x, nb); }
  @inline dot4(wr: usize, x0: usize, x1: usize, x2: usize, x3: usize, nb: i32,
    o0: usize, o1: usize, o2: usize, o3: usize): void { rowDot4(wr, x0, x1, x2, x3, nb, o0, o1, o2, o3); }
}
