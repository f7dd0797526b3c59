// Q2_K: 256 weights in 84 bytes (ggml block_q2_K), dotted with Q8_K activations.
//   u8 scales[16]; u8 qs[64]; f16 d; f16 dmin
// 16 sub-blocks of 16: w = d*(scales[j] & 15)*q - dmin*(scales[j] >> 4), q 2-bit. Half n (128
// weights) uses qs[32n .. 32n+32): weight 128n + 32s + l is (qs[32n + l] >> 2s) & 3, l in [0, 32),
// in sub-block 8n + 2s + (l >= 16). The min term uses the Q8_K block sums: sum(q8 * m) = m * bsum.
import { f16_to_f32, f16x4_hi_to_f32x4_finite, i32x4_hsum, i32x4_hsum4, store_rows4 } from "./common";
import { QK_K, Q8K, minTerm, combineMin4, dx4, store_lanes4, matmul_k_ref, matmul_k_quads, dot16u, dot_u8_xp, interleavePairs, xEven, xOdd, eightPasses } from "./kquants";

@inline const BLOCK: usize = 84;

/** 16 weights times their scale, widened to i16 (two halves) for the token loop. */
@inline function widenLo(w: v128, scale: v128): v128 { return i16x8.mul(i16x8.extend_low_i8x16_u(w), scale); }
@inline function widenHi(w: v128, scale: v128): v128 { return i16x8.mul(i16x8.extend_high_i8x16_u(w), scale); }

/** dot of 16 pre-scaled i16 weights with 16 q8 at q, as four i32 partial sums. */
@inline function dot16w(wa: v128, wb: v128, q: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(wa, v128.load8x8_s(q)), i32x4.dot_i16x8_s(wb, v128.load8x8_s(q, 8)));
}

/** The low 2 bits of each of 16 bytes. */
@inline function crumbs(v: v128): v128 {
  return v128.and(v, i8x16.splat(3));
}

@inline function scaleAt(wb: usize, j: i32): v128 {
  return i16x8.splat(<i16>(load<u8>(wb + <usize>j) & 0xf));
}

/** The 16 mins (scales >> 4) as two i16x8. */
@inline function minsLo(wb: usize): v128 { return i16x8.extend_low_i8x16_u(v128.and(i16x8.shr_u(v128.load(wb), 4), i8x16.splat(0x0f))); }
@inline function minsHi(wb: usize): v128 { return i16x8.extend_high_i8x16_u(v128.and(i16x8.shr_u(v128.load(wb), 4), i8x16.splat(0x0f))); }




/** n weights from src to f32 at dst (dequantize_row_q2_K). */
export function dequantize_q2_k(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n / QK_K; b++) {
    const wb = src + <usize>b * BLOCK;
    const d = f16_to_f32(load<u16>(wb, 80));
    const min = f16_to_f32(load<u16>(wb, 82));
    let y = dst + <usize>b * 1024;
    for (let j = 0; j < 16; j++) {
      const sc = <u32>load<u8>(wb + <usize>j);
      const dl = d * <f32>(sc & 0xf), ml = min * <f32>(sc >> 4);
      // sub-block j: half j >> 3, pass (j >> 1) & 3, bytes (j & 1)*16 .. +16
      const q = wb + 16 + (<usize>(j >> 3) << 5) + (<usize>(j & 1) << 4);
      const shift = <u32>((j >> 1) & 3) << 1;
      for (let l = 0; l < 16; l++) {
        store<f32>(y, dl * <f32>((<u32>load<u8>(q + <usize>l) >> shift) & 3) - ml);
        y += 4;
      }
    }
  }
}

/** Scalar reference, as ggml's ggml_vec_dot_q2_K_q8_K_generic. */
function dotRef(wr: usize, xr: usize, nb: i32): f32 {
  let sumf: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb = xr + <usize>b * Q8K;
    let summs = 0;
    for (let j = 0; j < 16; j++) summs += <i32>load<i16>(xb + 260 + (<usize>j << 1)) * <i32>(load<u8>(wb + <usize>j) >> 4);
    const dx = load<f32>(xb);
    const dall = dx * f16_to_f32(load<u16>(wb, 80));
    const dmin = dx * f16_to_f32(load<u16>(wb, 82));
    let isum = 0;
    for (let j = 0; j < 16; j++) {
      const q = wb + 16 + (<usize>(j >> 3) << 5) + (<usize>(j & 1) << 4);
      const shift = <u32>((j >> 1) & 3) << 1;
      const q8 = xb + 4 + (<usize>j << 4);
      let isuml = 0;
      for (let l = 0; l < 16; l++) {
        isuml += <i32>load<i8>(q8 + <usize>l) * <i32>((<u32>load<u8>(q + <usize>l) >> shift) & 3);
      }
      isum += <i32>(load<u8>(wb + <usize>j) & 0xf) * isuml;
    }
    sumf += dall * <f32>isum - dmin * <f32>summs;
  }
  return sumf;
}

export function matmul_q2_k_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_ref<Q2K>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

// ---- One token ----
// Pass p (0..7) of a block is sub-blocks 2p and 2p + 1 (32 weights: qs bytes 0-15 and 16-31 of half
// p >> 2, shifted right by 2(p & 3)). Their crumbs (u8 in [0, 3]) give two dot_u8_xp (relaxed dots
// in the relaxed build; i16 lanes at most 2 * 3 * 127), interleaved and added pairwise (at most
// 1524) so that one i32x4.dot_i16x8_s by the pair of scales (an i32 lane of the scales' i16 lanes)
// widens and scales both. The min term is bsums times the mins (minTerm). A block's integer sums
// are exact; the f32 sum is dotRef's: (dx * d) * isum - (dx * dmin) * msum, block after block.

/** acc + the i32x4 partial sums of pass p against the Q8_K block xb, each sub-block's integer sum
 *  times its scale: qa, qb the 32 qs bytes of the pass's half; sp: the pair of scales (2p, 2p + 1)
 *  in every i32 lane. */
@inline function passDot(acc: v128, qa: v128, qb: v128, xb: usize, p: i32, sp: v128): v128 {
  const s = <u32>(p & 3) << 1;
  const u0 = crumbs(s == 0 ? qa : i16x8.shr_u(qa, s)), u1 = crumbs(s == 0 ? qb : i16x8.shr_u(qb, s));
  const x0 = v128.load(xb + 4 + (<usize>p << 5)), x1 = v128.load(xb + 20 + (<usize>p << 5));
  const l = dot_u8_xp(u0, xEven(x0), xOdd(x0)), h = dot_u8_xp(u1, xEven(x1), xOdd(x1));
  return i32x4.add(acc, i32x4.dot_i16x8_s(interleavePairs(l, h), sp));
}

/** dotRef's isum of block wb against the Q8_K block xb, as i32x4 partial sums (seq: see eightPasses). */
@inline function blockDot(wb: usize, xb: usize, seq: usize): v128 {
  const sv = v128.and(v128.load(wb), i8x16.splat(0x0f));
  const lo = i16x8.extend_low_i8x16_u(sv), hi = i16x8.extend_high_i8x16_u(sv);
  return eightPasses<Q2K>(i32x4.splat(0), wb, xb, lo, hi, seq);
}

/** One row against one token, summed as dotRef; seq: a word that may be written (the row's output). */
function rowDot1(wr: usize, x0: usize, nb: i32, seq: usize): f32 {
  let sum: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb = x0 + <usize>b * Q8K;
    const isum = i32x4_hsum(blockDot(wb, xb, seq));
    const msum = i32x4_hsum(minTerm(xb, minsLo(wb), minsHi(wb)));
    const dx = load<f32>(xb);
    sum += (dx * f16_to_f32(load<u16>(wb, 80))) * <f32>isum - (dx * f16_to_f32(load<u16>(wb, 82))) * <f32>msum;
  }
  return sum;
}

/** Rows w, w + gap, w + 2*gap, w + 3*gap against one token at x, stored at out, out + 4*outGap, ...
 *  (four long sequential streams, see matmul_b32); the block's f32 work serves the four rows in
 *  lanes. Summed as dotRef (and as rowDot1). */
function rows4(w: usize, gap: usize, x: usize, nb: i32, out: usize, outGap: usize): void {
  const g2 = gap << 1, g3 = gap * 3;
  let acc = f32x4.splat(0); // lane r: row r
  for (let b = 0; b < nb; b++) {
    const w0 = w + <usize>b * BLOCK, w1 = w0 + gap, w2 = w0 + g2, w3 = w0 + g3;
    const xb = x + <usize>b * Q8K;
    const isum = i32x4_hsum4(blockDot(w0, xb, out), blockDot(w1, xb, out), blockDot(w2, xb, out), blockDot(w3, xb, out));
    const msum = i32x4_hsum4(minTerm(xb, minsLo(w0), minsHi(w0)), minTerm(xb, minsLo(w1), minsHi(w1)),
      minTerm(xb, minsLo(w2), minsHi(w2)), minTerm(xb, minsLo(w3), minsHi(w3)));
    let h = v128.load32_splat(w0 + 80); // lane r: row r's d (low half) and dmin (high half)
    h = v128.load32_lane(w1 + 80, h, 1);
    h = v128.load32_lane(w2 + 80, h, 2);
    h = v128.load32_lane(w3 + 80, h, 3);
    const dx = f32x4.splat(load<f32>(xb));
    const d = f32x4.mul(dx, f16x4_hi_to_f32x4_finite(i32x4.shl(h, 16))), dmin = f32x4.mul(dx, f16x4_hi_to_f32x4_finite(h));
    acc = f32x4.add(acc, f32x4.sub(f32x4.mul(d, f32x4.convert_i32x4_s(isum)), f32x4.mul(dmin, f32x4.convert_i32x4_s(msum))));
  }
  store_rows4(out, outGap, acc);
}

/** One row against four tokens: each weight block is decoded once for the four. SIMD128 widens it
 * to i16 and scales it, so a token costs two sign-extending loads and two i16 dot products per 16
 * weights; the relaxed build keeps the crumbs as u8: one relaxed dot and one widening dot. */
function rowDot4(wr: usize, x0: usize, x1: usize, x2: usize, x3: usize, nb: i32,
  o0: usize, o1: usize, o2: usize, o3: usize): void {
  let f = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xo = <usize>b * Q8K;
    const xb0 = x0 + xo, xb1 = x1 + xo, xb2 = x2 + xo, xb3 = x3 + xo;
    let acc0 = i32x4.splat(0), acc1 = i32x4.splat(0), acc2 = i32x4.splat(0), acc3 = i32x4.splat(0);
    let qo: usize = 4;
    for (let p = 0; p < 16; p++) {
      // piece p = sub-block p: bytes (p & 1) of half p >> 3, pass (p >> 1) & 3
      const v = v128.load(wb + 16 + (<usize>(p >> 3) << 5) + (<usize>(p & 1) << 4));
      const w = crumbs(i16x8.shr_u(v, p & 6));
      const scv = scaleAt(wb, p);
      if (ASC_FEATURE_RELAXED_SIMD) { // the crumbs as u8 straight into the relaxed dot
        acc0 = i32x4.add(acc0, dot16u(w, scv, xb0 + qo));
        acc1 = i32x4.add(acc1, dot16u(w, scv, xb1 + qo));
        acc2 = i32x4.add(acc2, dot16u(w, scv, xb2 + qo));
        acc3 = i32x4.add(acc3, dot16u(w, scv, xb3 + qo));
      } else {
        const wa = widenLo(w, scv), wh = widenHi(w, scv);
        acc0 = i32x4.add(acc0, dot16w(wa, wh, xb0 + qo));
        acc1 = i32x4.add(acc1, dot16w(wa, wh, xb1 + qo));
        acc2 = i32x4.add(acc2, dot16w(wa, wh, xb2 + qo));
        acc3 = i32x4.add(acc3, dot16w(wa, wh, xb3 + qo));
      }
      qo += 16;
    }
    const mLo = minsLo(wb), mHi = minsHi(wb);
    const d = f16_to_f32(load<u16>(wb, 80)), dmin = f16_to_f32(load<u16>(wb, 82));
    // each token's whole integer sums, then its f32 terms as dotRef (lane t: token t), so that a
    // token's result does not depend on the tokens beside it
    const msum = i32x4_hsum4(minTerm(xb0, mLo, mHi), minTerm(xb1, mLo, mHi), minTerm(xb2, mLo, mHi), minTerm(xb3, mLo, mHi));
    f = combineMin4(f, i32x4_hsum4(acc0, acc1, acc2, acc3), msum, dx4(xb0, xb1, xb2, xb3), d, dmin);
  }
  store_lanes4(f, o0, o1, o2, o3);
}

export function matmul_q2_k(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_quads<Q2K>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** Q2_K's row kernels, for the shared loops in kquants.ts. */
@final class Q2K {
  @inline bytes(): usize { return BLOCK; }
  @inline dotRef(wr: usize, xr: usize, nb: i32): f32 { return dotRef(wr, xr, nb); }
  @inline qs(): usize { return 16; }
  @inline hmask(wb: usize, i: i32): v128 { return i32x4.splat(0); } // none
  @inline pass(acc: v128, qa: v128, qb: v128, ha: v128, hb: v128, xb: usize, p: i32, sp: v128): v128 {
    return passDot(acc, qa, qb, xb, p, sp);
  }
  @inline dot1(wr: usize, x: usize, nb: i32, seq: usize): f32 { return rowDot1(wr, x, nb, seq); }
  @inline rows4(w: usize, gap: usize, x: usize, nb: i32, out: usize, outGap: usize): void { rows4(w, gap, x, nb, out, outGap); }
  @inline dot4(wr: usize, x0: usize, x1: usize, x2: usize, x3: usize, nb: i32,
    o0: usize, o1: usize, o2: usize, o3: usize): void { rowDot4(wr, x0, x1, x2, x3, nb, o0, o1, o2, o3); }
}
