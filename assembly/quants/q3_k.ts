// Q3_K: 256 weights in 110 bytes (ggml block_q3_K), dotted with Q8_K activations.
//   u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d
// 16 sub-blocks of 16: w = d*(sc[j] - 32)*q, q = low2 - (high bit set ? 0 : 4) in [-4, 3]. Pass p
// (0..7) covers weights 32p .. 32p+32: low2 = (qs[32(p >> 2) + l] >> 2(p & 3)) & 3 and the high bit
// is bit p of hmask[l], l in [0, 32); sub-blocks 2p (l < 16) and 2p+1. The 16 6-bit scales are
// packed in scales[12] (low nibbles in bytes 0-7, high 2 bits in bytes 8-11).
import { f16_to_f32, f16x4_hi_to_f32x4_finite, i32x4_hsum, i32x4_hsum4, store_rows4 } from "./common";
import { QK_K, Q8K, combine4, dx4, store_lanes4, matmul_k_ref, matmul_k_quads, dot16u, dot_u8_xp, interleavePairs, xEven, xOdd, eightPasses } from "./kquants";

@inline const BLOCK: usize = 110;

// The 16 scales (+32) as four u32 words of bytes (ggml's aux[] dance), from the words a0 a1 a2.
@inline function scales0(a0: u32, a2: u32): u32 { return (a0 & 0x0f0f0f0f) | ((a2 & 0x03030303) << 4); }
@inline function scales1(a1: u32, a2: u32): u32 { return (a1 & 0x0f0f0f0f) | (((a2 >> 2) & 0x03030303) << 4); }
@inline function scales2(a0: u32, a2: u32): u32 { return ((a0 >> 4) & 0x0f0f0f0f) | (((a2 >> 4) & 0x03030303) << 4); }
@inline function scales3(a1: u32, a2: u32): u32 { return ((a1 >> 4) & 0x0f0f0f0f) | (((a2 >> 6) & 0x03030303) << 4); }

/** 16 weights plus 4 (u8 in [0, 7]: low2 | high bit << 2) from qs bytes `v` shifted right by 2s and
 * hmask bytes `hc` shifted right by p (i16 shifts are fine: only bits that stay inside their byte
 * are kept). The loops subtract 4 * sum(q8) per sub-block (offsetTerm). */
@inline function biased(v: v128, hc: v128): v128 {
  return v128.or(v128.and(v, i8x16.splat(3)), v128.and(i16x8.shl(hc, 2), i8x16.splat(4)));
}

/** The 16 weights (i8 in [-4, 3]). */
@inline function weights(v: v128, hc: v128): v128 {
  return i8x16.sub(biased(v, hc), i8x16.splat(4));
}

/** The 16 scales - 32 of a block as i8 lanes, from its words a0 a1 a2 of scales[12]. */
@inline function scaleBytes(a0: u32, a1: u32, a2: u32): v128 {
  return i8x16.sub(i32x4.replace_lane(i32x4.replace_lane(i32x4.replace_lane(i32x4.splat(
    scales0(a0, a2)), 1, scales1(a1, a2)), 2, scales2(a0, a2)), 3, scales3(a1, a2)), i8x16.splat(32));
}

/** 4 * sum_j (scale_j - 32) * bsum_j of the Q8_K block at xb: what the +4 of biased() adds to a
 *  block's integer sum, as four i32 partial sums. */
@inline function offsetTerm(scales: v128, xb: usize): v128 {
  return i32x4.shl(i32x4.add(i32x4.dot_i16x8_s(v128.load(xb, 260), i16x8.extend_low_i8x16_s(scales)),
    i32x4.dot_i16x8_s(v128.load(xb, 276), i16x8.extend_high_i8x16_s(scales))), 2);
}

/** 16 weights times their scale, widened to i16 (two halves) for the token loop. */
@inline function widenLo(w: v128, scale: v128): v128 { return i16x8.mul(i16x8.extend_low_i8x16_s(w), scale); }
@inline function widenHi(w: v128, scale: v128): v128 { return i16x8.mul(i16x8.extend_high_i8x16_s(w), scale); }

/** dot of 16 pre-scaled i16 weights with 16 q8 at q, as four i32 partial sums. */
@inline function dot16w(wa: v128, wb: v128, q: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(wa, v128.load8x8_s(q)), i32x4.dot_i16x8_s(wb, v128.load8x8_s(q, 8)));
}

/** Scale j of a block (0..63, before the -32). */
@inline function scaleByte(wb: usize, j: i32): i32 {
  const a0 = load<u32>(wb, 96), a1 = load<u32>(wb, 100), a2 = load<u32>(wb, 104);
  const word = j < 4 ? scales0(a0, a2) : j < 8 ? scales1(a1, a2) : j < 12 ? scales2(a0, a2) : scales3(a1, a2);
  return <i32>((word >> (<u32>(j & 3) << 3)) & 0xff);
}

/** n weights from src to f32 at dst (dequantize_row_q3_K). */
export function dequantize_q3_k(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n / QK_K; b++) {
    const wb = src + <usize>b * BLOCK;
    const dAll = f16_to_f32(load<u16>(wb, 108));
    let y = dst + <usize>b * 1024;
    for (let j = 0; j < 16; j++) {
      const dl = dAll * <f32>(scaleByte(wb, j) - 32);
      const p = j >> 1;
      const half = <usize>(j & 1) << 4;
      const q = wb + 32 + (<usize>(p >> 2) << 5) + half;
      const shift = <u32>(p & 3) << 1;
      for (let l = 0; l < 16; l++) {
        const low2 = <i32>((<u32>load<u8>(q + <usize>l) >> shift) & 3);
        const high = (<u32>load<u8>(wb + half + <usize>l) >> <u32>p) & 1;
        store<f32>(y, dl * <f32>(low2 - (high ? 0 : 4)));
        y += 4;
      }
    }
  }
}

/** Scalar reference (ggml's ggml_vec_dot_q3_K_q8_K_generic): the exact integer sum of a block,
 * then its d applied in f32; on the file's layout, or on the packed one (see below). */
@inline function dotRefOf(wr: usize, xr: usize, nb: i32, packed: bool): f32 {
  let sumf: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb = xr + <usize>b * Q8K;
    let isum = 0;
    for (let j = 0; j < 16; j++) {
      const p = j >> 1;
      const half = <usize>(j & 1) << 4;
      const q = wb + 32 + (<usize>(p >> 2) << 5) + half;
      const shift = <u32>(p & 3) << 1;
      const set = wb + <usize>(48 * (j >> 3)), g = j & 7;
      const q8 = xb + 4 + (<usize>j << 4);
      let s = 0;
      for (let l = 0; l < 16; l++) {
        let u: u32; // the weight + 4
        if (packed) {
          const a = <u32>load<u8>(set + <usize>l), bb = <u32>load<u8>(set + 16 + <usize>l), c = <u32>load<u8>(set + 32 + <usize>l);
          u = g == 0 ? a & 7 : g == 1 ? (a >> 3) & 7 : g == 2 ? bb & 7 : g == 3 ? (bb >> 3) & 7 : g == 4 ? c & 7
            : g == 5 ? (c >> 3) & 7 : g == 6 ? (a >> 6) | ((bb >> 4) & 4) : ((bb >> 7) & 1) | ((c >> 5) & 6);
        } else {
          u = ((<u32>load<u8>(q + <usize>l) >> shift) & 3) | (((<u32>load<u8>(wb + half + <usize>l) >> <u32>p) & 1) << 2);
        }
        s += <i32>load<i8>(q8 + <usize>l) * (<i32>u - 4);
      }
      isum += (scaleByte(wb, j) - 32) * s;
    }
    const d = f16_to_f32(load<u16>(wb, 108)) * load<f32>(xb);
    sumf += d * <f32>isum;
  }
  return sumf;
}

function dotRef(wr: usize, xr: usize, nb: i32): f32 { return dotRefOf(wr, xr, nb, false); }

export function matmul_q3_k_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_ref<Q3K>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

// ---- One token ----
// Pass p (0..7) of a block is sub-blocks 2p and 2p + 1 (32 weights). Their biased weights (u8 in
// [0, 7]) give two dot_u8_xp (relaxed dots in the relaxed build; i16 lanes at most 2 * 7 * 127),
// interleaved and added pairwise (at most 3556) so that one i32x4.dot_i16x8_s by the pair of scales
// (an i32 lane of the scales' i16 lanes, one pshufd) widens and scales both. The bias (+4 per
// weight) comes off once per block: 4 * sum_j scale_j * bsum_j (offsetTerm). The integer sum of a
// block is exact; the f32 sum is dotRef's: (d * dx) * isum, block after block.

/** The biased weights of pass p, lanes 0-15 or 16-31: low2 from the qs bytes v (of half p >> 2),
 *  the high bit (bit p) from the hmask bytes h, moved to bit 2 (i16 shifts are fine: only bits that
 *  stay inside their byte are kept). */
@inline function passWeights(v: v128, h: v128, p: i32): v128 {
  const s = (p & 3) << 1;
  const low = v128.and(s == 0 ? v : i16x8.shr_u(v, <u32>s), i8x16.splat(3));
  const high = p < 2 ? i16x8.shl(h, <u32>(2 - p)) : p == 2 ? h : i16x8.shr_u(h, <u32>(p - 2));
  return v128.or(low, v128.and(high, i8x16.splat(4)));
}

/** acc + the i32x4 partial sums of pass p against the Q8_K block xb, each sub-block's integer sum
 *  times its scale: qa, qb the 32 qs bytes of the pass's half, ha, hb the block's 32 hmask bytes;
 *  sp: the pair of scales (2p, 2p + 1) in every i32 lane. */
@inline function passDot(acc: v128, qa: v128, qb: v128, ha: v128, hb: v128, xb: usize, p: i32, sp: v128): v128 {
  const x0 = v128.load(xb + 4 + (<usize>p << 5)), x1 = v128.load(xb + 20 + (<usize>p << 5));
  const l = dot_u8_xp(passWeights(qa, ha, p), xEven(x0), xOdd(x0));
  const h = dot_u8_xp(passWeights(qb, hb, p), xEven(x1), xOdd(x1));
  return i32x4.add(acc, i32x4.dot_i16x8_s(interleavePairs(l, h), sp));
}

/** The exact integer sum of block wb against the Q8_K block xb (dotRef's isum), as i32x4 partial
 *  sums (seq: see eightPasses). */
@inline function blockDot(wb: usize, xb: usize, seq: usize): v128 {
  const sv = scaleBytes(load<u32>(wb, 96), load<u32>(wb, 100), load<u32>(wb, 104));
  const lo = i16x8.extend_low_i8x16_s(sv), hi = i16x8.extend_high_i8x16_s(sv);
  return eightPasses<Q3K>(i32x4.neg(offsetTerm(sv, xb)), wb, xb, lo, hi, seq);
}

/** The exact integer sum of block wb against the Q8_K block xb in the file's layout or the packed
 *  one (blockDot, blockDotPacked). */
@inline function blockDotOf(wb: usize, xb: usize, seq: usize, packed: bool): v128 {
  return packed ? blockDotPacked(wb, xb, seq) : blockDot(wb, xb, seq);
}

/** One row against one token, summed as dotRef; seq: a word that may be written (the row's output). */
@inline function rowDot1Of(wr: usize, x0: usize, nb: i32, seq: usize, packed: bool): f32 {
  let sum: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb = x0 + <usize>b * Q8K;
    const isum = i32x4_hsum(blockDotOf(wb, xb, seq, packed));
    sum += (f16_to_f32(load<u16>(wb, 108)) * load<f32>(xb)) * <f32>isum;
  }
  return sum;
}

/** Rows w, w + gap, w + 2*gap, w + 3*gap against one token at x, stored at out, out + 4*outGap, ...
 *  (four long sequential streams, see matmul_b32); the block's f32 work serves the four rows in
 *  lanes. Summed as dotRef (and as rowDot1). */
@inline function rows4Of(w: usize, gap: usize, x: usize, nb: i32, out: usize, outGap: usize, packed: bool): void {
  const g2 = gap << 1, g3 = gap * 3;
  let acc = f32x4.splat(0); // lane r: row r
  for (let b = 0; b < nb; b++) {
    const w0 = w + <usize>b * BLOCK;
    const xb = x + <usize>b * Q8K;
    const isum = i32x4_hsum4(blockDotOf(w0, xb, out, packed), blockDotOf(w0 + gap, xb, out, packed),
      blockDotOf(w0 + g2, xb, out, packed), blockDotOf(w0 + g3, xb, out, packed));
    let h = v128.load16_splat(w0 + 108);
    h = v128.load16_lane(w0 + gap + 108, h, 3);
    h = v128.load16_lane(w0 + g2 + 108, h, 5);
    h = v128.load16_lane(w0 + g3 + 108, h, 7);
    const d = f32x4.mul(f16x4_hi_to_f32x4_finite(h), f32x4.splat(load<f32>(xb)));
    acc = f32x4.add(acc, f32x4.mul(d, f32x4.convert_i32x4_s(isum)));
  }
  store_rows4(out, outGap, acc);
}

function rowDot1(wr: usize, x0: usize, nb: i32, seq: usize): f32 { return rowDot1Of(wr, x0, nb, seq, false); }
function rows4(w: usize, gap: usize, x: usize, nb: i32, out: usize, outGap: usize): void { rows4Of(w, gap, x, nb, out, outGap, false); }
function rowDot1Packed(wr: usize, x0: usize, nb: i32, seq: usize): f32 { return rowDot1Of(wr, x0, nb, seq, true); }
function rows4Packed(w: usize, gap: usize, x: usize, nb: i32, out: usize, outGap: usize): void { rows4Of(w, gap, x, nb, out, outGap, true); }

/** The end of a block in the four-token tiles (rowDot4, rowDot4Packed): the relaxed build's bias
 *  off the i32 sums, then each token's whole integer sum and its f32 term as dotRef (lane t: token
 *  t; see Q2_K), added to f. */
@inline function tileBlockEnd(f: v128, wb: usize, scales0v: v128, acc0: v128, acc1: v128, acc2: v128, acc3: v128,
  xb0: usize, xb1: usize, xb2: usize, xb3: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    acc0 = i32x4.sub(acc0, offsetTerm(scales0v, xb0));
    acc1 = i32x4.sub(acc1, offsetTerm(scales0v, xb1));
    acc2 = i32x4.sub(acc2, offsetTerm(scales0v, xb2));
    acc3 = i32x4.sub(acc3, offsetTerm(scales0v, xb3));
  }
  return combine4(f, i32x4_hsum4(acc0, acc1, acc2, acc3), dx4(xb0, xb1, xb2, xb3), f16_to_f32(load<u16>(wb, 108)));
}

/** One row against four tokens: each weight block is decoded once for the four. SIMD128 widens it
 * to i16 and scales it, so a token costs two sign-extending loads and two i16 dot products per 16
 * weights; the relaxed build keeps the biased weights as u8: one relaxed dot and one widening dot,
 * and subtracts the bias once per block. */
function rowDot4(wr: usize, x0: usize, x1: usize, x2: usize, x3: usize, nb: i32,
  o0: usize, o1: usize, o2: usize, o3: usize): void {
  let f = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xo = <usize>b * Q8K;
    const xb0 = x0 + xo, xb1 = x1 + xo, xb2 = x2 + xo, xb3 = x3 + xo;
    const a0 = load<u32>(wb, 96), a1 = load<u32>(wb, 100), a2 = load<u32>(wb, 104);
    // the 16 scales - 32, advanced by one byte per piece (a loop-carried value is computed once)
    const scales0v = scaleBytes(a0, a1, a2);
    let scales = scales0v;
    let acc0 = i32x4.splat(0), acc1 = i32x4.splat(0), acc2 = i32x4.splat(0), acc3 = i32x4.splat(0);
    let qo: usize = 4;
    for (let p = 0; p < 16; p++) {
      // piece p = sub-block p: bytes (p & 1) of half p >> 3, pass (p >> 1) & 3, hmask bit p >> 1
      const i = <usize>(p & 1) << 4;
      const v = i16x8.shr_u(v128.load(wb + 32 + (<usize>(p >> 3) << 5) + i), p & 6);
      const hc = i16x8.shr_u(v128.load(wb + i), p >> 1);
      const scv = i16x8.splat(<i16>i8x16.extract_lane_s(scales, 0));
      if (ASC_FEATURE_RELAXED_SIMD) { // biased weights as u8 straight into the relaxed dot
        const u = biased(v, hc);
        acc0 = i32x4.add(acc0, dot16u(u, scv, xb0 + qo));
        acc1 = i32x4.add(acc1, dot16u(u, scv, xb1 + qo));
        acc2 = i32x4.add(acc2, dot16u(u, scv, xb2 + qo));
        acc3 = i32x4.add(acc3, dot16u(u, scv, xb3 + qo));
      } else {
        const w = weights(v, hc);
        const wa = widenLo(w, scv), wh = widenHi(w, scv);
        acc0 = i32x4.add(acc0, dot16w(wa, wh, xb0 + qo));
        acc1 = i32x4.add(acc1, dot16w(wa, wh, xb1 + qo));
        acc2 = i32x4.add(acc2, dot16w(wa, wh, xb2 + qo));
        acc3 = i32x4.add(acc3, dot16w(wa, wh, xb3 + qo));
      }
      qo += 16;
      scales = i8x16.shuffle(scales, scales, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0);
    }
    f = tileBlockEnd(f, wb, scales0v, acc0, acc1, acc2, acc3, xb0, xb1, xb2, xb3);
  }
  store_lanes4(f, o0, o1, o2, o3);
}

export function matmul_q3_k(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_quads<Q3K>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** Q3_K's row kernels, for the shared loops in kquants.ts. */
@final class Q3K {
  @inline bytes(): usize { return BLOCK; }
  @inline dotRef(wr: usize, xr: usize, nb: i32): f32 { return dotRef(wr, xr, nb); }
  @inline qs(): usize { return 32; }
  @inline hmask(wb: usize, i: i32): v128 { return v128.load(wb + (<usize>i << 4)); }
  @inline pass(acc: v128, qa: v128, qb: v128, ha: v128, hb: v128, xb: usize, p: i32, sp: v128): v128 {
    return passDot(acc, qa, qb, ha, hb, xb, p, sp);
  }
  @inline dot1(wr: usize, x: usize, nb: i32, seq: usize): f32 { return rowDot1(wr, x, nb, seq); }
  @inline rows4(w: usize, gap: usize, x: usize, nb: i32, out: usize, outGap: usize): void { rows4(w, gap, x, nb, out, outGap); }
  @inline dot4(wr: usize, x0: usize, x1: usize, x2: usize, x3: usize, nb: i32,
    o0: usize, o1: usize, o2: usize, o3: usize): void { rowDot4(wr, x0, x1, x2, x3, nb, o0, o1, o2, o3); }
}


// ---- The packed layout ("q3_kp"): what the loader makes of a Q3_K matrix that only matmuls read ----
// (compute/model/interleave.ts packQ3K). A block keeps its 110 bytes, its scales (bytes 96-107) and
// d (108) where the file has them; its 96 bytes of hmask and qs become two sets of 48 bytes, set s
// for sub-blocks 8s..8s+7. With u(j, l) = low2 | high << 2 (the weight + 4, in [0, 7]) of weight
// 16j + l of the block and g = j - 8s, byte l (0..15) of the set's three 16-byte vectors A, B, C:
//   A[l] = u(8s, l) | u(8s+1, l) << 3 | (u(8s+6, l) & 3) << 6
//   B[l] = u(8s+2, l) | u(8s+3, l) << 3 | (u(8s+6, l) >> 2) << 6 | (u(8s+7, l) & 1) << 7
//   C[l] = u(8s+4, l) | u(8s+5, l) << 3 | (u(8s+7, l) >> 1) << 6
// Sub-blocks g = 0..5 of a set decode with an and (and a shift), 6 and 7 with five instructions: 19
// for 128 weights where the file's layout takes 40 (low2 and the hmask bit, each shifted and masked,
// then or-ed). The integer sums are those of the file's layout, so are the bits of every result.

/** The 16 biased weights u (u8 in [0, 7]) of sub-block g (0..7, a constant in the one-token loops)
 *  of a set from its vectors a, b, c (i16 shifts are fine: only bits that stay inside their byte are
 *  kept). */
@inline function packedU(a: v128, b: v128, c: v128, g: i32): v128 {
  const m7 = i8x16.splat(7);
  if (g == 6) return v128.or(v128.and(i16x8.shr_u(a, 6), i8x16.splat(3)), v128.and(i16x8.shr_u(b, 4), i8x16.splat(4)));
  if (g == 7) return v128.or(v128.and(i16x8.shr_u(b, 7), i8x16.splat(1)), v128.and(i16x8.shr_u(c, 5), i8x16.splat(6)));
  const v = g < 2 ? a : g < 4 ? b : c;
  return v128.and((g & 1) != 0 ? i16x8.shr_u(v, 3) : v, m7);
}

/** Scalar reference on the packed layout: dotRef's sums, bit for bit. */
function dotRefPacked(wr: usize, xr: usize, nb: i32): f32 { return dotRefOf(wr, xr, nb, true); }

/** acc + the i32x4 partial sums of sub-blocks j and j + 1 (biased weights ul, uh) against the Q8_K
 *  block xb, as passDot. */
@inline function packedPass(acc: v128, ul: v128, uh: v128, xb: usize, j: i32, sp: v128): v128 {
  const x0 = v128.load(xb + 4 + (<usize>j << 4)), x1 = v128.load(xb + 20 + (<usize>j << 4));
  const l = dot_u8_xp(ul, xEven(x0), xOdd(x0));
  const h = dot_u8_xp(uh, xEven(x1), xOdd(x1));
  return i32x4.add(acc, i32x4.dot_i16x8_s(interleavePairs(l, h), sp));
}

/** acc + set s (a constant) of block wb against the Q8_K block xb; sc: the set's eight scales as i16
 *  lanes; seq: see eightPasses (a store after each pass keeps V8 from hoisting the loads). */
@inline function packedSet(acc: v128, wb: usize, xb: usize, s: i32, sc: v128, seq: usize): v128 {
  const p = wb + <usize>(48 * s);
  const a = v128.load(p), b = v128.load(p, 16), c = v128.load(p, 32);
  const j = s << 3;
  acc = packedPass(acc, packedU(a, b, c, 0), packedU(a, b, c, 1), xb, j, i32x4.shuffle(sc, sc, 0, 0, 0, 0)); v128.store32_lane(seq, acc, 0);
  acc = packedPass(acc, packedU(a, b, c, 2), packedU(a, b, c, 3), xb, j + 2, i32x4.shuffle(sc, sc, 1, 1, 1, 1)); v128.store32_lane(seq, acc, 0);
  acc = packedPass(acc, packedU(a, b, c, 4), packedU(a, b, c, 5), xb, j + 4, i32x4.shuffle(sc, sc, 2, 2, 2, 2)); v128.store32_lane(seq, acc, 0);
  acc = packedPass(acc, packedU(a, b, c, 6), packedU(a, b, c, 7), xb, j + 6, i32x4.shuffle(sc, sc, 3, 3, 3, 3)); v128.store32_lane(seq, acc, 0);
  return acc;
}

/** blockDot on the packed layout: the same i32 sums. */
@inline function blockDotPacked(wb: usize, xb: usize, seq: usize): v128 {
  const sv = scaleBytes(load<u32>(wb, 96), load<u32>(wb, 100), load<u32>(wb, 104));
  const acc = packedSet(i32x4.neg(offsetTerm(sv, xb)), wb, xb, 0, i16x8.extend_low_i8x16_s(sv), seq);
  return packedSet(acc, wb, xb, 1, i16x8.extend_high_i8x16_s(sv), seq);
}

/** rowDot4 (one row, four tokens) on the packed layout: the same sums. A pass of the loop is two
 *  sub-blocks: the low and the high three bits of A, B or C, or (the fourth of a set) sub-blocks 6
 *  and 7 from all three. */
function rowDot4Packed(wr: usize, x0: usize, x1: usize, x2: usize, x3: usize, nb: i32,
  o0: usize, o1: usize, o2: usize, o3: usize): void {
  let f = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xo = <usize>b * Q8K;
    const xb0 = x0 + xo, xb1 = x1 + xo, xb2 = x2 + xo, xb3 = x3 + xo;
    const scales0v = scaleBytes(load<u32>(wb, 96), load<u32>(wb, 100), load<u32>(wb, 104));
    let scales = scales0v;
    let acc0 = i32x4.splat(0), acc1 = i32x4.splat(0), acc2 = i32x4.splat(0), acc3 = i32x4.splat(0);
    let qo: usize = 4;
    for (let i = 0; i < 8; i++) {
      const p = wb + <usize>(48 * (i >> 2));
      let ul: v128, uh: v128;
      if ((i & 3) != 3) {
        const v = v128.load(p + (<usize>(i & 3) << 4));
        ul = v128.and(v, i8x16.splat(7));
        uh = v128.and(i16x8.shr_u(v, 3), i8x16.splat(7));
      } else {
        const a = v128.load(p), bv = v128.load(p, 16), c = v128.load(p, 32);
        ul = packedU(a, bv, c, 6);
        uh = packedU(a, bv, c, 7);
      }
      const sl = i16x8.splat(<i16>i8x16.extract_lane_s(scales, 0)), sh = i16x8.splat(<i16>i8x16.extract_lane_s(scales, 1));
      if (ASC_FEATURE_RELAXED_SIMD) {
        acc0 = i32x4.add(acc0, i32x4.add(dot16u(ul, sl, xb0 + qo), dot16u(uh, sh, xb0 + qo + 16)));
        acc1 = i32x4.add(acc1, i32x4.add(dot16u(ul, sl, xb1 + qo), dot16u(uh, sh, xb1 + qo + 16)));
        acc2 = i32x4.add(acc2, i32x4.add(dot16u(ul, sl, xb2 + qo), dot16u(uh, sh, xb2 + qo + 16)));
        acc3 = i32x4.add(acc3, i32x4.add(dot16u(ul, sl, xb3 + qo), dot16u(uh, sh, xb3 + qo + 16)));
      } else {
        const wl = i8x16.sub(ul, i8x16.splat(4)), wh = i8x16.sub(uh, i8x16.splat(4));
        const la = widenLo(wl, sl), lb = widenHi(wl, sl), ha = widenLo(wh, sh), hb = widenHi(wh, sh);
        acc0 = i32x4.add(acc0, i32x4.add(dot16w(la, lb, xb0 + qo), dot16w(ha, hb, xb0 + qo + 16)));
        acc1 = i32x4.add(acc1, i32x4.add(dot16w(la, lb, xb1 + qo), dot16w(ha, hb, xb1 + qo + 16)));
        acc2 = i32x4.add(acc2, i32x4.add(dot16w(la, lb, xb2 + qo), dot16w(ha, hb, xb2 + qo + 16)));
        acc3 = i32x4.add(acc3, i32x4.add(dot16w(la, lb, xb3 + qo), dot16w(ha, hb, xb3 + qo + 16)));
      }
      qo += 32;
      scales = i8x16.shuffle(scales, scales, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1);
    }
    f = tileBlockEnd(f, wb, scales0v, acc0, acc1, acc2, acc3, xb0, xb1, xb2, xb3);
  }
  store_lanes4(f, o0, o1, o2, o3);
}

/** Q3_K's packed layout's row kernels, for the shared loops in kquants.ts. */
@final class Q3KPacked {
  @inline bytes(): usize { return BLOCK; }
  @inline dotRef(wr: usize, xr: usize, nb: i32): f32 { return dotRefPacked(wr, xr, nb); }
  @inline dot1(wr: usize, x: usize, nb: i32, seq: usize): f32 { return rowDot1Packed(wr, x, nb, seq); }
  @inline rows4(w: usize, gap: usize, x: usize, nb: i32, out: usize, outGap: usize): void { rows4Packed(w, gap, x, nb, out, outGap); }
  @inline dot4(wr: usize, x0: usize, x1: usize, x2: usize, x3: usize, nb: i32,
    o0: usize, o1: usize, o2: usize, o3: usize): void { rowDot4Packed(wr, x0, x1, x2, x3, nb, o0, o1, o2, o3); }
}

/** matmul (Kernel ABI) on a Q3_K matrix in the packed layout (see above). */
export function matmul_q3_kp(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_quads<Q3KPacked>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

export function matmul_q3_kp_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_ref<Q3KPacked>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** Biased weights u(j, l) (l = 0..15, u8 lanes) of sub-block j (a constant) of a block in the file's
 *  layout, from its hmask halves h0, h1 and its qs vectors q00, q01 (bytes 0-31), q10, q11 (32-63):
 *  low2 = (qs[32 (p >> 2) + 16 half + l] >> 2 (p & 3)) & 3, high = (hmask[16 half + l] >> p) & 1, with
 *  p = j >> 1, half = j & 1 (i16 shifts: the masks keep only bits that stayed in their byte). */
@inline function fileU(j: i32, h0: v128, h1: v128, q00: v128, q01: v128, q10: v128, q11: v128): v128 {
  const p = j >> 1, half = j & 1;
  const q = p < 4 ? (half != 0 ? q01 : q00) : (half != 0 ? q11 : q10);
  const h = half != 0 ? h1 : h0;
  return v128.or(v128.and(i16x8.shr_u(q, (p & 3) << 1), i8x16.splat(3)), i16x8.shl(v128.and(i16x8.shr_u(h, p), i8x16.splat(1)), 2));
}

/** Rewrites `blocks` Q3_K blocks at w (the file's layout) in the packed layout above, in place: the
 *  loader's packer (compute/model/interleave.ts packQ3K writes the same bytes in JavaScript, the
 *  reference the test holds it to). Every block is read whole before it is written. */
export function pack_q3_k(w: usize, blocks: i32): void {
  const m1 = i8x16.splat(1), m3 = i8x16.splat(3);
  for (let b = 0; b < blocks; b++) {
    const wb = w + <usize>b * BLOCK;
    const h0 = v128.load(wb), h1 = v128.load(wb, 16);
    const q00 = v128.load(wb, 32), q01 = v128.load(wb, 48), q10 = v128.load(wb, 64), q11 = v128.load(wb, 80);
    // set 0: sub-blocks 0-7, set 1: 8-15 (see the layout above)
    const u0 = fileU(0, h0, h1, q00, q01, q10, q11), u1 = fileU(1, h0, h1, q00, q01, q10, q11);
    const u2 = fileU(2, h0, h1, q00, q01, q10, q11), u3 = fileU(3, h0, h1, q00, q01, q10, q11);
    const u4 = fileU(4, h0, h1, q00, q01, q10, q11), u5 = fileU(5, h0, h1, q00, q01, q10, q11);
    const u6 = fileU(6, h0, h1, q00, q01, q10, q11), u7 = fileU(7, h0, h1, q00, q01, q10, q11);
    const u8 = fileU(8, h0, h1, q00, q01, q10, q11), u9 = fileU(9, h0, h1, q00, q01, q10, q11);
    const u10 = fileU(10, h0, h1, q00, q01, q10, q11), u11 = fileU(11, h0, h1, q00, q01, q10, q11);
    const u12 = fileU(12, h0, h1, q00, q01, q10, q11), u13 = fileU(13, h0, h1, q00, q01, q10, q11);
    const u14 = fileU(14, h0, h1, q00, q01, q10, q11), u15 = fileU(15, h0, h1, q00, q01, q10, q11);
    v128.store(wb, v128.or(v128.or(u0, i16x8.shl(u1, 3)), i16x8.shl(v128.and(u6, m3), 6)));
    v128.store(wb, v128.or(v128.or(v128.or(u2, i16x8.shl(u3, 3)), i16x8.shl(v128.and(i16x8.shr_u(u6, 2), m1), 6)),
      i16x8.shl(v128.and(u7, m1), 7)), 16);
    v128.store(wb, v128.or(v128.or(u4, i16x8.shl(u5, 3)), i16x8.shl(v128.and(i16x8.shr_u(u7, 1), m3), 6)), 32);
    v128.store(wb, v128.or(v128.or(u8, i16x8.shl(u9, 3)), i16x8.shl(v128.and(u14, m3), 6)), 48);
    v128.store(wb, v128.or(v128.or(v128.or(u10, i16x8.shl(u11, 3)), i16x8.shl(v128.and(i16x8.shr_u(u14, 2), m1), 6)),
      i16x8.shl(v128.and(u15, m1), 7)), 64);
    v128.store(wb, v128.or(v128.or(u12, i16x8.shl(u13, 3)), i16x8.shl(v128.and(i16x8.shr_u(u15, 1), m3), 6)), 80);
  }
}
