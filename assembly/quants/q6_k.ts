// Q6_K: 256 weights in 210 bytes (ggml block_q6_K), dotted with Q8_K activations.
//   u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
// 16 sub-blocks of 16: w = d*sc[j]*(q - 32), q 6-bit. Each half (128 weights) takes 64 bytes of ql
// and 32 of qh: for l in [0, 32), weight l   = ql[l] low nibble    | qh[l] bits 0-1 << 4,
//                                   weight l+32 = ql[l+32] low nibble | qh[l] bits 2-3 << 4,
//                                   weight l+64 = ql[l] high nibble   | qh[l] bits 4-5 << 4,
//                                   weight l+96 = ql[l+32] high nibble | qh[l] bits 6-7 << 4.
import { f16_to_f32, f16x2_rows_nosub, f16x4_hi_to_f32x4_nosub, i32x4_hsum, i32x4_hsum4, pair_cells, pair_halves, store_rows4, store_tile2x4 } from "./common";
import { QK_K, Q8K, matmul_k_ref, dot_u8_i8, dot_u8_xp, xEven, xOdd } from "./kquants";

@inline const BLOCK: usize = 210;
/** Rows done per pass over the tiles of tokens (see matmulGroup). */
@inline const ROWS_PER_PASS: i32 = 16;

@inline function scaleAt(wb: usize, j: i32): v128 {
  return i16x8.splat(<i16>load<i8>(wb + 192 + <usize>j));
}



/** n weights from src to f32 at dst (dequantize_row_q6_K). */
export function dequantize_q6_k(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n / QK_K; b++) {
    const wb = src + <usize>b * BLOCK;
    const d = f16_to_f32(load<u16>(wb, 208));
    for (let half = 0; half < 2; half++) {
      const ql = wb + (<usize>half << 6);
      const qh = wb + 128 + (<usize>half << 5);
      const sc = wb + 192 + (<usize>half << 3);
      const y = dst + <usize>b * 1024 + (<usize>half << 9);
      for (let l = 0; l < 32; l++) {
        const is = <usize>(l >> 4);
        const a = <i32>load<u8>(ql + <usize>l), c = <i32>load<u8>(ql + 32 + <usize>l), h = <i32>load<u8>(qh + <usize>l);
        const q1 = ((a & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((c & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((a >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((c >> 4) | (((h >> 6) & 3) << 4)) - 32;
        const yl = y + (<usize>l << 2);
        store<f32>(yl, d * <f32>load<i8>(sc + is) * <f32>q1);
        store<f32>(yl + 128, d * <f32>load<i8>(sc + is + 2) * <f32>q2);
        store<f32>(yl + 256, d * <f32>load<i8>(sc + is + 4) * <f32>q3);
        store<f32>(yl + 384, d * <f32>load<i8>(sc + is + 6) * <f32>q4);
      }
    }
  }
}

/** Scalar reference (ggml's ggml_vec_dot_q6_K_q8_K_generic): the exact integer sum of a block,
 * then its d applied in f32. */
function dotRef(wr: usize, xr: usize, nb: i32): f32 {
  let sumf: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb = xr + <usize>b * Q8K;
    let isum = 0;
    for (let half = 0; half < 2; half++) {
      const ql = wb + (<usize>half << 6);
      const qh = wb + 128 + (<usize>half << 5);
      const q8 = xb + 4 + (<usize>half << 7);
      const sc = wb + 192 + (<usize>half << 3);
      for (let l = 0; l < 32; l++) {
        const is = <usize>(l >> 4);
        const a = <i32>load<u8>(ql + <usize>l), c = <i32>load<u8>(ql + 32 + <usize>l), h = <i32>load<u8>(qh + <usize>l);
        isum += <i32>load<i8>(sc + is) * (((a & 0xf) | ((h & 3) << 4)) - 32) * <i32>load<i8>(q8 + <usize>l);
        isum += <i32>load<i8>(sc + is + 2) * (((c & 0xf) | (((h >> 2) & 3) << 4)) - 32) * <i32>load<i8>(q8 + 32 + <usize>l);
        isum += <i32>load<i8>(sc + is + 4) * (((a >> 4) | (((h >> 4) & 3) << 4)) - 32) * <i32>load<i8>(q8 + 64 + <usize>l);
        isum += <i32>load<i8>(sc + is + 6) * (((c >> 4) | (((h >> 6) & 3) << 4)) - 32) * <i32>load<i8>(q8 + 96 + <usize>l);
      }
    }
    const d = f16_to_f32(load<u16>(wb, 208)) * load<f32>(xb);
    sumf += d * <f32>isum;
  }
  return sumf;
}

export function matmul_q6_k_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_ref<Q6K>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

// ---- One token ----
// The 16 sub-blocks' scales apply to i16 sums: a piece of 32 weights (sub-blocks j, j + 1) gives
// two dot_u8_i8 (relaxed dots in the relaxed build; i16 lanes at most 2 * 63 * 127), interleaved and added pairwise (at most
// 4 * 63 * 127 = 32004, still an i16) so that lanes alternate j, j + 1: one i32x4.dot_i16x8_s by
// the pair of scales (an i32 lane of the half's scales, one pshufd) widens and scales them. The -32
// of every weight is taken once per block from the Q8_K block sums. A block's integer sum is exact;
// the f32 sum is matmul_q6_k_ref's: (d * dx) * isum, block after block.

/** The i32x4 partial sums of sc[j] * dot(u, x) for a piece of a half: weights u0 (16 weights,
 *  sub-block j) and u1 (sub-block j + 1) as u8, x at q, sp the scales (sc[j], sc[j + 1]) in every
 *  i32 lane. */
@inline function pieceDot(u0: v128, u1: v128, q: usize, sp: v128): v128 {
  const d0 = dot_u8_i8(u0, v128.load(q));
  const d1 = dot_u8_i8(u1, v128.load(q, 16));
  const pk = i16x8.add(i16x8.shuffle(d0, d1, 0, 8, 1, 9, 2, 10, 3, 11), i16x8.shuffle(d0, d1, 4, 12, 5, 13, 6, 14, 7, 15));
  return i32x4.dot_i16x8_s(pk, sp);
}

/** The weights (u8, 0..63) of piece `part` (0..3) of a half, 16 lanes: from the 16 ql bytes `a`
 *  (bytes 0-31 of the half's ql for parts 0 and 2, 32-63 for 1 and 3) and the 16 qh bytes `h`. */
@inline function pieceU(a: v128, h: v128, part: i32): v128 {
  const m4 = i8x16.splat(0x0f), m2 = i8x16.splat(0x30);
  const low = part < 2 ? v128.and(a, m4) : v128.and(i16x8.shr_u(a, 4), m4);
  const high = part == 0 ? i16x8.shl(h, 4) : part == 1 ? i16x8.shl(h, 2) : part == 2 ? h : i16x8.shr_u(h, 2);
  return v128.or(low, v128.and(high, m2));
}

/** acc + sum over a half (128 weights at ql, qh) of sc[j] * dot(q6 (without the -32), x at q), as
 *  i32x4 partial sums; s: the half's eight scales as i16. Parts 0 and 2 share their ql bytes, as
 *  do 1 and 3, and all four the qh bytes: each is loaded once. V8 hoists every load of a basic
 *  block to its top: a store after each piece (to seq, overwritten later) orders the next loads
 *  after it, so that the loads do not all live at once and spill. */
@inline function halfDot(acc: v128, ql: usize, qh: usize, q: usize, s: v128, seq: usize): v128 {
  const h0 = v128.load(qh), h1 = v128.load(qh, 16);
  const a0 = v128.load(ql), a1 = v128.load(ql, 16);
  acc = i32x4.add(acc, pieceDot(pieceU(a0, h0, 0), pieceU(a1, h1, 0), q, i32x4.shuffle(s, s, 0, 0, 0, 0)));
  v128.store32_lane(seq, acc, 0);
  acc = i32x4.add(acc, pieceDot(pieceU(a0, h0, 2), pieceU(a1, h1, 2), q + 64, i32x4.shuffle(s, s, 2, 2, 2, 2)));
  v128.store32_lane(seq, acc, 0);
  const b0 = v128.load(ql, 32), b1 = v128.load(ql, 48);
  acc = i32x4.add(acc, pieceDot(pieceU(b0, h0, 1), pieceU(b1, h1, 1), q + 32, i32x4.shuffle(s, s, 1, 1, 1, 1)));
  v128.store32_lane(seq, acc, 0);
  acc = i32x4.add(acc, pieceDot(pieceU(b0, h0, 3), pieceU(b1, h1, 3), q + 96, i32x4.shuffle(s, s, 3, 3, 3, 3)));
  v128.store32_lane(seq, acc, 0);
  return acc;
}

/** The exact integer sum of block wb against the Q8_K block xb, as i32x4 partials;
 *  seq: see halfDot. */
@inline function blockDot(wb: usize, xb: usize, seq: usize): v128 {
  const sc = v128.load(wb, 192);
  const sLo = i16x8.extend_low_i8x16_s(sc), sHi = i16x8.extend_high_i8x16_s(sc);
  const bs = i32x4.add(i32x4.dot_i16x8_s(v128.load(xb, 260), sLo), i32x4.dot_i16x8_s(v128.load(xb, 276), sHi));
  const isum = halfDot(i32x4.neg(i32x4.shl(bs, 5)), wb, wb + 128, xb + 4, sLo, seq); // the -32 of every weight
  return halfDot(isum, wb + 64, wb + 160, xb + 132, sHi, seq);
}

/** The i32x4 partial sums of piece `part` of a half of one row (ql, qh: the half's bytes; s: its
 *  eight scales as i16) times the 32 activations of the piece, prepared (see dot_u8_xp). */
@inline function rowPiece(ql: usize, qh: usize, s: v128, part: i32, xe0: v128, xo0: v128, xe1: v128, xo1: v128): v128 {
  const o = <usize>(part & 1) << 5;
  const d0 = dot_u8_xp(pieceU(v128.load(ql + o), v128.load(qh), part), xe0, xo0);
  const d1 = dot_u8_xp(pieceU(v128.load(ql + o, 16), v128.load(qh, 16), part), xe1, xo1);
  const pk = i16x8.add(i16x8.shuffle(d0, d1, 0, 8, 1, 9, 2, 10, 3, 11), i16x8.shuffle(d0, d1, 4, 12, 5, 13, 6, 14, 7, 15));
  const sp = part == 0 ? i32x4.shuffle(s, s, 0, 0, 0, 0) : part == 1 ? i32x4.shuffle(s, s, 1, 1, 1, 1)
    : part == 2 ? i32x4.shuffle(s, s, 2, 2, 2, 2) : i32x4.shuffle(s, s, 3, 3, 3, 3);
  return i32x4.dot_i16x8_s(pk, sp);
}

/** -32 * sum_j sc[j] * bsum[j] of block wb against the Q8_K block xb: the -32 of every weight. */
@inline function offsetTerm(wb: usize, xb: usize): v128 {
  const sc = v128.load(wb, 192);
  const bs = i32x4.add(i32x4.dot_i16x8_s(v128.load(xb, 260), i16x8.extend_low_i8x16_s(sc)),
    i32x4.dot_i16x8_s(v128.load(xb, 276), i16x8.extend_high_i8x16_s(sc)));
  return i32x4.neg(i32x4.shl(bs, 5));
}

/** Rows w, w + gap, w + 2*gap, w + 3*gap against one token at x, stored at out, out + 4*outGap, ...
 *  (four long sequential streams, see matmul_b32); the block's d and f32 work serve the four rows in
 *  lanes. Summed as matmul_q6_k_ref (and rowDot1).
 *  The relaxed build takes the rows one after the other (blockDot): a half's ql and qh bytes are
 *  loaded once for its four pieces, the activations (used as they are) once per row; measured
 *  16.5-16.9 GB/s one token against 15.7-15.9 for the pieces of the four rows in turn, which saves
 *  the activation loads but loads each row's bytes again for every piece. SIMD128 takes the pieces of
 *  the four rows in turn: its activations are split into even and odd bytes once for the four. */
function rowDot4(w: usize, gap: usize, x: usize, nb: i32, out: usize, outGap: usize): void {
  const g2 = gap << 1, g3 = gap * 3;
  let acc = f32x4.splat(0); // lane r: row r
  if (ASC_FEATURE_RELAXED_SIMD) {
    for (let b = 0; b < nb; b++) {
      const w0 = w + <usize>b * BLOCK;
      const xb = x + <usize>b * Q8K;
      const isum = i32x4_hsum4(blockDot(w0, xb, out), blockDot(w0 + gap, xb, out), blockDot(w0 + g2, xb, out), blockDot(w0 + g3, xb, out));
      let h = v128.load16_splat(w0 + 208);
      h = v128.load16_lane(w0 + gap + 208, h, 3);
      h = v128.load16_lane(w0 + g2 + 208, h, 5);
      h = v128.load16_lane(w0 + g3 + 208, h, 7);
      const d = f32x4.mul(f16x4_hi_to_f32x4_nosub(h), f32x4.splat(load<f32>(xb)));
      acc = f32x4.add(acc, f32x4.mul(d, f32x4.convert_i32x4_s(isum)));
    }
    store_rows4(out, outGap, acc);
    return;
  }
  for (let b = 0; b < nb; b++) {
    const w0 = w + <usize>b * BLOCK, w1 = w0 + gap, w2 = w0 + g2, w3 = w0 + g3;
    const xb = x + <usize>b * Q8K;
    let i0 = offsetTerm(w0, xb), i1 = offsetTerm(w1, xb), i2 = offsetTerm(w2, xb), i3 = offsetTerm(w3, xb);
    for (let half = 0; half < 2; half++) {
      const ol = <usize>half << 6, oh = <usize>128 + (<usize>half << 5), os = <usize>192 + (<usize>half << 3);
      const hq = xb + 4 + (<usize>half << 7);
      const s0 = v128.load8x8_s(w0 + os), s1 = v128.load8x8_s(w1 + os), s2 = v128.load8x8_s(w2 + os), s3 = v128.load8x8_s(w3 + os);
      // the stores order each row's loads after the previous row's work (V8 hoists loads: spills)
      {
        const x0 = v128.load(hq), x1 = v128.load(hq, 16);
        const e0 = xEven(x0), d0 = xOdd(x0), e1 = xEven(x1), d1 = xOdd(x1);
        i0 = i32x4.add(i0, rowPiece(w0 + ol, w0 + oh, s0, 0, e0, d0, e1, d1)); v128.store32_lane(out, i0, 0);
        i1 = i32x4.add(i1, rowPiece(w1 + ol, w1 + oh, s1, 0, e0, d0, e1, d1)); v128.store32_lane(out, i1, 0);
        i2 = i32x4.add(i2, rowPiece(w2 + ol, w2 + oh, s2, 0, e0, d0, e1, d1)); v128.store32_lane(out, i2, 0);
        i3 = i32x4.add(i3, rowPiece(w3 + ol, w3 + oh, s3, 0, e0, d0, e1, d1)); v128.store32_lane(out, i3, 0);
      }
      {
        const x0 = v128.load(hq, 32), x1 = v128.load(hq, 48);
        const e0 = xEven(x0), d0 = xOdd(x0), e1 = xEven(x1), d1 = xOdd(x1);
        i0 = i32x4.add(i0, rowPiece(w0 + ol, w0 + oh, s0, 1, e0, d0, e1, d1)); v128.store32_lane(out, i0, 0);
        i1 = i32x4.add(i1, rowPiece(w1 + ol, w1 + oh, s1, 1, e0, d0, e1, d1)); v128.store32_lane(out, i1, 0);
        i2 = i32x4.add(i2, rowPiece(w2 + ol, w2 + oh, s2, 1, e0, d0, e1, d1)); v128.store32_lane(out, i2, 0);
        i3 = i32x4.add(i3, rowPiece(w3 + ol, w3 + oh, s3, 1, e0, d0, e1, d1)); v128.store32_lane(out, i3, 0);
      }
      {
        const x0 = v128.load(hq, 64), x1 = v128.load(hq, 80);
        const e0 = xEven(x0), d0 = xOdd(x0), e1 = xEven(x1), d1 = xOdd(x1);
        i0 = i32x4.add(i0, rowPiece(w0 + ol, w0 + oh, s0, 2, e0, d0, e1, d1)); v128.store32_lane(out, i0, 0);
        i1 = i32x4.add(i1, rowPiece(w1 + ol, w1 + oh, s1, 2, e0, d0, e1, d1)); v128.store32_lane(out, i1, 0);
        i2 = i32x4.add(i2, rowPiece(w2 + ol, w2 + oh, s2, 2, e0, d0, e1, d1)); v128.store32_lane(out, i2, 0);
        i3 = i32x4.add(i3, rowPiece(w3 + ol, w3 + oh, s3, 2, e0, d0, e1, d1)); v128.store32_lane(out, i3, 0);
      }
      {
        const x0 = v128.load(hq, 96), x1 = v128.load(hq, 112);
        const e0 = xEven(x0), d0 = xOdd(x0), e1 = xEven(x1), d1 = xOdd(x1);
        i0 = i32x4.add(i0, rowPiece(w0 + ol, w0 + oh, s0, 3, e0, d0, e1, d1)); v128.store32_lane(out, i0, 0);
        i1 = i32x4.add(i1, rowPiece(w1 + ol, w1 + oh, s1, 3, e0, d0, e1, d1)); v128.store32_lane(out, i1, 0);
        i2 = i32x4.add(i2, rowPiece(w2 + ol, w2 + oh, s2, 3, e0, d0, e1, d1)); v128.store32_lane(out, i2, 0);
        i3 = i32x4.add(i3, rowPiece(w3 + ol, w3 + oh, s3, 3, e0, d0, e1, d1)); v128.store32_lane(out, i3, 0);
      }
    }
    let h = v128.load16_splat(w0 + 208);
    h = v128.load16_lane(w1 + 208, h, 3);
    h = v128.load16_lane(w2 + 208, h, 5);
    h = v128.load16_lane(w3 + 208, h, 7);
    const d = f32x4.mul(f16x4_hi_to_f32x4_nosub(h), f32x4.splat(load<f32>(xb)));
    acc = f32x4.add(acc, f32x4.mul(d, f32x4.convert_i32x4_s(i32x4_hsum4(i0, i1, i2, i3))));
  }
  store_rows4(out, outGap, acc);
}

/** One row against one token, summed as matmul_q6_k_ref; seq: a word that may be written (see
 *  halfDot). */
function rowDot1(wr: usize, x0: usize, nb: i32, seq: usize): f32 {
  let sum: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb = x0 + <usize>b * Q8K;
    const d = f32x4.extract_lane(f16x4_hi_to_f32x4_nosub(v128.load16_splat(wb + 208)), 0);
    sum += (d * load<f32>(xb)) * <f32>i32x4_hsum(blockDot(wb, xb, seq));
  }
  return sum;
}

// ---- Many tokens: tiles of two rows by four tokens (see "Many tokens" in common.ts) ----
// A piece of 32 weights is one part (l = 0..31) of one half: sub-blocks j and j + 1. SIMD128 widens
// its weights (q - 32) to i16 times their scales once for the four tokens. The relaxed-SIMD build
// keeps q (0..63) as u8 for i16x8.relaxed_dot_i8x16_i7x16_s (pairs: at most 2 * 63 * 127, no
// overflow), applies the scales in the i32x4.dot_i16x8_s that widens the sums, and takes the -32
// once per block from the Q8_K block sums: 32 * sum_j sc[j] * bsum[j]. Measured (4864x1024, 16
// tokens, Zen 4, Node 20): 2500 tokens/s with one row by four tokens, 3150 with these tiles, 3900
// relaxed.

/** Weights 16i..16i+15 (u8, 0..63) of part `part` of the half at ql, qh. The i16 shifts keep only
 *  bits that stay inside their byte. */
@inline function pieceQ(ql: usize, qh: usize, part: i32, i: i32): v128 {
  const o = <usize>i << 4;
  const a = v128.load(ql + (<usize>(part & 1) << 5) + o), h = v128.load(qh + o);
  const low = v128.and(i16x8.shr_u(a, (part >> 1) << 2), i8x16.splat(0x0f));
  return v128.or(low, v128.and(i16x8.shl(i16x8.shr_u(h, part << 1), 4), i8x16.splat(0x30)));
}

/** i32x4 partial sums of one cell and one piece: weights u0 (lanes 0-15), u1 (16-31) as from
 *  pieceQ, their sub-blocks' scales s0, s1 (i16 splats), the token's 32 q8 at q. */
@inline function cell(u0: v128, u1: v128, s0: v128, s1: v128, q: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(q), u0), s0),
      i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(q, 16), u1), s1));
  }
  const w0 = i8x16.sub(u0, i8x16.splat(32)), w1 = i8x16.sub(u1, i8x16.splat(32));
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.mul(i16x8.extend_low_i8x16_s(w0), s0), v128.load8x8_s(q)),
      i32x4.dot_i16x8_s(i16x8.mul(i16x8.extend_high_i8x16_s(w0), s0), v128.load8x8_s(q, 8))),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.mul(i16x8.extend_low_i8x16_s(w1), s1), v128.load8x8_s(q, 16)),
      i32x4.dot_i16x8_s(i16x8.mul(i16x8.extend_high_i8x16_s(w1), s1), v128.load8x8_s(q, 24))));
}

/** The cells (r0 t) (r1 t) (r0 t') (r1 t') of one piece (see pair_cells in common.ts). The stores
 *  order each token's loads after the previous token's dot products (see common.ts). */
@inline function cells(u0: v128, u1: v128, s0: v128, s1: v128, v0: v128, v1: v128, z0: v128, z1: v128,
  q: usize, dq: usize, seq: usize): v128 {
  const a = pair_halves(cell(u0, u1, s0, s1, q), cell(v0, v1, z0, z1, q));
  v128.store32_lane(seq, a, 0);
  const b = pair_halves(cell(u0, u1, s0, s1, q + dq), cell(v0, v1, z0, z1, q + dq));
  const c = pair_cells(a, b);
  v128.store32_lane(seq, c, 0);
  return c;
}

/** sum_j sc[j] * bsum[j] of the token at xb and the row whose scales are at sc, as i32x4 partials. */
@inline function scaledBsums(xb: usize, sc: usize): v128 {
  const s = v128.load(sc);
  return i32x4.add(i32x4.dot_i16x8_s(v128.load(xb, 260), i16x8.extend_low_i8x16_s(s)),
    i32x4.dot_i16x8_s(v128.load(xb, 276), i16x8.extend_high_i8x16_s(s)));
}

/** The cells (r0 t) (r1 t) (r0 t') (r1 t') of sum_j sc[j] * bsum[j] (rows' scales at sc0, sc1; tokens
 *  at xb + ta, xb + tb), for the -32 of the relaxed tiles. */
@inline function offsetCells(xb: usize, ta: usize, tb: usize, sc0: usize, sc1: usize): v128 {
  return pair_cells(pair_halves(scaledBsums(xb + ta, sc0), scaledBsums(xb + ta, sc1)),
    pair_halves(scaledBsums(xb + tb, sc0), scaledBsums(xb + tb, sc1)));
}

/** Rows wr and wr + rowBytes (rowBytes 0 and `two` false: one row) by four tokens at x, x + x1,
 *  x + x2, x + x3 (offsets may repeat), stored at o, o + o1, o + o2, o + o3 (bytes). */
@inline function tile2x4(wr: usize, rowBytes: usize, two: bool, x: usize, x1: usize, x2: usize, x3: usize, nb: i32,
  o: usize, o1: usize, o2: usize, o3: usize): void {
  let acc01 = f32x4.splat(0), acc23 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK, wb1 = wb + rowBytes;
    const xb = x + <usize>b * Q8K;
    let i01 = i32x4.splat(0), i23 = i32x4.splat(0);
    for (let half = 0; half < 2; half++) {
      const ql0 = wb + (<usize>half << 6), qh0 = wb + 128 + (<usize>half << 5);
      const ql1 = ql0 + rowBytes, qh1 = qh0 + rowBytes;
      const j = half << 3; // the half's first sub-block
      const q = xb + 4 + (<usize>half << 7);
      // the four parts written out: the shifts in pieceQ are then constants (V8 makes a variable
      // shift four instructions)
      {
        const u0 = pieceQ(ql0, qh0, 0, 0), u1 = pieceQ(ql0, qh0, 0, 1), v0 = pieceQ(ql1, qh1, 0, 0), v1 = pieceQ(ql1, qh1, 0, 1);
        const s0 = scaleAt(wb, j), s1 = scaleAt(wb, j + 1), z0 = scaleAt(wb1, j), z1 = scaleAt(wb1, j + 1);
        i01 = i32x4.add(i01, cells(u0, u1, s0, s1, v0, v1, z0, z1, q, x1, o));
        i23 = i32x4.add(i23, cells(u0, u1, s0, s1, v0, v1, z0, z1, q + x2, x3 - x2, o));
      }
      {
        const u0 = pieceQ(ql0, qh0, 1, 0), u1 = pieceQ(ql0, qh0, 1, 1), v0 = pieceQ(ql1, qh1, 1, 0), v1 = pieceQ(ql1, qh1, 1, 1);
        const s0 = scaleAt(wb, j + 2), s1 = scaleAt(wb, j + 3), z0 = scaleAt(wb1, j + 2), z1 = scaleAt(wb1, j + 3);
        i01 = i32x4.add(i01, cells(u0, u1, s0, s1, v0, v1, z0, z1, q + 32, x1, o));
        i23 = i32x4.add(i23, cells(u0, u1, s0, s1, v0, v1, z0, z1, q + 32 + x2, x3 - x2, o));
      }
      {
        const u0 = pieceQ(ql0, qh0, 2, 0), u1 = pieceQ(ql0, qh0, 2, 1), v0 = pieceQ(ql1, qh1, 2, 0), v1 = pieceQ(ql1, qh1, 2, 1);
        const s0 = scaleAt(wb, j + 4), s1 = scaleAt(wb, j + 5), z0 = scaleAt(wb1, j + 4), z1 = scaleAt(wb1, j + 5);
        i01 = i32x4.add(i01, cells(u0, u1, s0, s1, v0, v1, z0, z1, q + 64, x1, o));
        i23 = i32x4.add(i23, cells(u0, u1, s0, s1, v0, v1, z0, z1, q + 64 + x2, x3 - x2, o));
      }
      {
        const u0 = pieceQ(ql0, qh0, 3, 0), u1 = pieceQ(ql0, qh0, 3, 1), v0 = pieceQ(ql1, qh1, 3, 0), v1 = pieceQ(ql1, qh1, 3, 1);
        const s0 = scaleAt(wb, j + 6), s1 = scaleAt(wb, j + 7), z0 = scaleAt(wb1, j + 6), z1 = scaleAt(wb1, j + 7);
        i01 = i32x4.add(i01, cells(u0, u1, s0, s1, v0, v1, z0, z1, q + 96, x1, o));
        i23 = i32x4.add(i23, cells(u0, u1, s0, s1, v0, v1, z0, z1, q + 96 + x2, x3 - x2, o));
      }
    }
    if (ASC_FEATURE_RELAXED_SIMD) { // the -32 of every weight
      i01 = i32x4.sub(i01, i32x4.shl(offsetCells(xb, 0, x1, wb + 192, wb1 + 192), 5));
      i23 = i32x4.sub(i23, i32x4.shl(offsetCells(xb, x2, x3, wb + 192, wb1 + 192), 5));
    }
    let dxv = v128.load32_splat(xb);
    dxv = v128.load32_lane(xb + x1, dxv, 1);
    dxv = v128.load32_lane(xb + x2, dxv, 2);
    dxv = v128.load32_lane(xb + x3, dxv, 3);
    const d = f16x2_rows_nosub(wb + 208, rowBytes);
    acc01 = f32x4.add(acc01, f32x4.mul(f32x4.convert_i32x4_s(i01), f32x4.mul(d, i32x4.shuffle(dxv, dxv, 0, 0, 1, 1))));
    acc23 = f32x4.add(acc23, f32x4.mul(f32x4.convert_i32x4_s(i23), f32x4.mul(d, i32x4.shuffle(dxv, dxv, 2, 2, 3, 3))));
  }
  store_tile2x4(o, o1, o2, o3, acc01, acc23, two);
}

/** out[t][r] = dot(row r of W, x_t) for r in [rowStart, rowEnd), t in [0, nTok); see DEVELOPERS.md.
 * Tokens go in groups whose activations stay in cache (~256 KiB) while every row passes over them;
 * within a group each row takes the tokens four at a time. */
export function matmul_q6_k(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmulGroups(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, false);
}

/** matmul_q6_k on the file's layout (`packed` false) or the packed one (below). */
@inline function matmulGroups(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, packed: bool): void {
  const nb = k / QK_K;
  const group = max(4, (262144 / (nb * <i32>Q8K)) & ~3);
  for (let t0 = 0; t0 < nTok; t0 += group) {
    const n = min(group, nTok - t0);
    matmulGroup(w, x + <usize>(t0 * xStride), out + (<usize>(t0 * outStride) << 2), nb, rowStart, rowEnd, n, xStride, outStride, packed);
  }
}

@inline function matmulGroup(w: usize, x: usize, out: usize, nb: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, packed: bool): void {
  const rowBytes = <usize>nb * BLOCK;
  const xs = <usize>xStride, os = <usize>outStride << 2;
  // Tiles of four tokens, and three as a tile of four with the last repeated; one or two tokens
  // left take the one-token path.
  const tiled = (nTok & ~3) + ((nTok & 3) == 3 ? 3 : 0);
  for (let r0 = rowStart; r0 < rowEnd; r0 += ROWS_PER_PASS) { // rows stay in L2, a tile's tokens in L1
    const r1 = min(r0 + ROWS_PER_PASS, rowEnd);
    for (let t = 0; t < tiled; t += 4) {
      const last = <usize>min(3, tiled - t - 1);
      const xt = x + <usize>t * xs, ot = out + <usize>t * os;
      for (let r = r0; r < r1; r += 2) {
        const two = r + 1 < r1;
        if (packed) {
          tile2x4P(w + <usize>r * rowBytes, two ? rowBytes : 0, two, xt, xs, min<usize>(2, last) * xs, last * xs, nb,
            ot + (<usize>r << 2), os, min<usize>(2, last) * os, last * os);
        } else {
          tile2x4(w + <usize>r * rowBytes, two ? rowBytes : 0, two, xt, xs, min<usize>(2, last) * xs, last * xs, nb,
            ot + (<usize>r << 2), os, min<usize>(2, last) * os, last * os);
        }
      }
    }
  }
  for (let t = tiled; t < nTok; t++) {
    // four rows at a time from the four quarters of the range (see matmul_b32), then the rows left
    const quarter = (rowEnd - rowStart) >> 2;
    const xt = x + <usize>t * xs, ot = out + <usize>t * os;
    for (let r = rowStart; r < rowStart + quarter; r++) {
      if (packed) rowDot4P(w + <usize>r * rowBytes, <usize>quarter * rowBytes, xt, nb, ot + (<usize>r << 2), <usize>quarter);
      else rowDot4(w + <usize>r * rowBytes, <usize>quarter * rowBytes, xt, nb, ot + (<usize>r << 2), <usize>quarter);
    }
    for (let r = rowStart + 4 * quarter; r < rowEnd; r++) {
      const o = ot + (<usize>r << 2);
      store<f32>(o, packed ? rowDot1P(w + <usize>r * rowBytes, xt, nb, o) : rowDot1(w + <usize>r * rowBytes, xt, nb, o));
    }
  }
}

/** Q6_K's row kernels, for the shared loops in kquants.ts. */
@final class Q6K {
  @inline bytes(): usize { return BLOCK; }
  @inline dotRef(wr: usize, xr: usize, nb: i32): f32 { return dotRef(wr, xr, nb); }
}

// ---- The packed layout ("q6_kp"): what the loader makes of a Q6_K matrix that only matmuls read ----
// (compute/model/interleave.ts packQ6K). A block keeps its 210 bytes, its scales (bytes 192-207) and
// d (208). With q(j, l) the 6-bit weight l (0..15) of sub-block j (weights 16j..16j+15, scale sc[j]),
// bytes 0-191 are twelve 16-byte vectors V0..V11:
//   V_j[l] & 63 = q(j, l)                                                          (j < 12)
//   q(12 + m, l) = V_3m[l] >> 6 | (V_3m+1[l] >> 6) << 2 | (V_3m+2[l] >> 6) << 4     (m < 4)
// so twelve sub-blocks decode with one and, the other four with eight instructions, where the file's
// layout takes four to six per sub-block (its low and high bits come from two places, shifted by the
// part). The integer sums are those of the file's layout, so are the bits.

/** Scalar: the weight l of sub-block j of the packed block at wb. */
@inline function qPacked(wb: usize, j: i32, l: i32): i32 {
  if (j < 12) return <i32>load<u8>(wb + (<usize>j << 4) + <usize>l) & 63;
  const v = wb + <usize>(j - 12) * 48 + <usize>l;
  return (<i32>load<u8>(v) >> 6) | ((<i32>load<u8>(v, 16) >> 6) << 2) | ((<i32>load<u8>(v, 32) >> 6) << 4);
}

/** n weights from the packed blocks at src to f32 at dst: dequantize_q6_k's values, bit for bit (the
 *  LM head's rows when it is tied to token_embd, read by get_rows). */
export function dequantize_q6_kp(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n / QK_K; b++) {
    const wb = src + <usize>b * BLOCK;
    const d = f16_to_f32(load<u16>(wb, 208));
    const y = dst + <usize>b * 1024;
    for (let j = 0; j < 16; j++) {
      const ds = d * <f32>load<i8>(wb + 192 + <usize>j);
      for (let l = 0; l < 16; l++) store<f32>(y + (<usize>(16 * j + l) << 2), ds * <f32>(qPacked(wb, j, l) - 32));
    }
  }
}

/** Scalar reference on the packed layout: dotRef's integer sums and f32 operations, bit for bit. */
function dotRefPacked(wr: usize, xr: usize, nb: i32): f32 {
  let sumf: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb = xr + <usize>b * Q8K;
    let isum = 0;
    for (let j = 0; j < 16; j++) {
      const sc = <i32>load<i8>(wb + 192 + <usize>j);
      for (let l = 0; l < 16; l++) isum += sc * (qPacked(wb, j, l) - 32) * <i32>load<i8>(xb + 4 + <usize>(16 * j + l));
    }
    const d = f16_to_f32(load<u16>(wb, 208)) * load<f32>(xb);
    sumf += d * <f32>isum;
  }
  return sumf;
}

/** The 16 weights (u8, 0..63) of sub-block j of the packed block at wb; `spare` (a constant): j >= 12.
 *  The i16 shifts keep only bits that stay inside their byte. */
@inline function subPacked(wb: usize, j: i32, spare: bool): v128 {
  if (!spare) return v128.and(v128.load(wb + (<usize>j << 4)), i8x16.splat(0x3f));
  const v = wb + <usize>(j - 12) * 48;
  return v128.or(v128.or(
    v128.and(i16x8.shr_u(v128.load(v), 6), i8x16.splat(0x03)),
    v128.and(i16x8.shr_u(v128.load(v, 16), 4), i8x16.splat(0x0c))),
    v128.and(i16x8.shr_u(v128.load(v, 32), 2), i8x16.splat(0x30)));
}

/** (sc[2p], sc[2p + 1]) as i16 in every i32 lane, for i32x4.dot_i16x8_s. */
@inline function scalePair(wb: usize, p: i32): v128 {
  const s = v128.load8x8_s(wb + 192 + (<usize>p << 1));
  return i32x4.shuffle(s, s, 0, 0, 0, 0);
}

/** acc + piece p (a constant: sub-blocks 2p, 2p + 1) of the packed block wb against the Q8_K block
 *  xb, scaled; s: the eight scales of the piece's half as i16. */
@inline function pieceP(acc: v128, wb: usize, xb: usize, p: i32, s: v128, seq: usize): v128 {
  const sp = (p & 3) == 0 ? i32x4.shuffle(s, s, 0, 0, 0, 0) : (p & 3) == 1 ? i32x4.shuffle(s, s, 1, 1, 1, 1)
    : (p & 3) == 2 ? i32x4.shuffle(s, s, 2, 2, 2, 2) : i32x4.shuffle(s, s, 3, 3, 3, 3);
  acc = i32x4.add(acc, pieceDot(subPacked(wb, 2 * p, p >= 6), subPacked(wb, 2 * p + 1, p >= 6), xb + 4 + (<usize>p << 5), sp));
  v128.store32_lane(seq, acc, 0);
  return acc;
}

/** The exact integer sum of the packed block wb against the Q8_K block xb, as i32x4 partials (the
 *  relaxed build's one-token loops, and the rows left over by rowDot4P); seq: see halfDot. */
@inline function blockDotP(wb: usize, xb: usize, seq: usize): v128 {
  const sc = v128.load(wb, 192);
  const sLo = i16x8.extend_low_i8x16_s(sc), sHi = i16x8.extend_high_i8x16_s(sc);
  const bs = i32x4.add(i32x4.dot_i16x8_s(v128.load(xb, 260), sLo), i32x4.dot_i16x8_s(v128.load(xb, 276), sHi));
  let acc = i32x4.neg(i32x4.shl(bs, 5)); // the -32 of every weight
  acc = pieceP(acc, wb, xb, 0, sLo, seq);
  acc = pieceP(acc, wb, xb, 1, sLo, seq);
  acc = pieceP(acc, wb, xb, 2, sLo, seq);
  acc = pieceP(acc, wb, xb, 3, sLo, seq);
  acc = pieceP(acc, wb, xb, 4, sHi, seq);
  acc = pieceP(acc, wb, xb, 5, sHi, seq);
  acc = pieceP(acc, wb, xb, 6, sHi, seq);
  return pieceP(acc, wb, xb, 7, sHi, seq);
}

/** SIMD128: dot_u8_xp of the direct sub-block in the bytes v (weights in bits 0-5) with its mask
 *  folded into the even/odd split: even bytes `and 0x003f`, odd ones `>> 8` then `and 0x3f`. */
@inline function dotDirect(v: v128, xe: v128, xo: v128): v128 {
  return i16x8.add(i16x8.mul(v128.and(v, i16x8.splat(0x3f)), xe), i16x8.mul(v128.and(i16x8.shr_u(v, 8), i16x8.splat(0x3f)), xo));
}

/** SIMD128: the i32x4 partial sums of piece p (sub-blocks 2p, 2p + 1) of the packed block wb, scaled,
 *  against the 32 activations prepared by xEven / xOdd (e0, o0: the first 16; e1, o1: the second). */
@inline function rowPieceP(wb: usize, p: i32, spare: bool, e0: v128, o0: v128, e1: v128, o1: v128): v128 {
  let d0: v128, d1: v128;
  if (spare) {
    d0 = dot_u8_xp(subPacked(wb, 2 * p, true), e0, o0);
    d1 = dot_u8_xp(subPacked(wb, 2 * p + 1, true), e1, o1);
  } else {
    const v = wb + (<usize>p << 5);
    d0 = dotDirect(v128.load(v), e0, o0);
    d1 = dotDirect(v128.load(v, 16), e1, o1);
  }
  const pk = i16x8.add(i16x8.shuffle(d0, d1, 0, 8, 1, 9, 2, 10, 3, 11), i16x8.shuffle(d0, d1, 4, 12, 5, 13, 6, 14, 7, 15));
  return i32x4.dot_i16x8_s(pk, scalePair(wb, p));
}

/** rowDot4 on the packed layout. SIMD128 takes the pieces of the four rows in turn (the activations
 *  split once for the four); the relaxed build the rows one after the other (blockDotP). */
function rowDot4P(w: usize, gap: usize, x: usize, nb: i32, out: usize, outGap: usize): void {
  const g2 = gap << 1, g3 = gap * 3;
  let acc = f32x4.splat(0); // lane r: row r
  for (let b = 0; b < nb; b++) {
    const w0 = w + <usize>b * BLOCK, w1 = w0 + gap, w2 = w0 + g2, w3 = w0 + g3;
    const xb = x + <usize>b * Q8K;
    let isum: v128;
    if (ASC_FEATURE_RELAXED_SIMD) {
      isum = i32x4_hsum4(blockDotP(w0, xb, out), blockDotP(w1, xb, out), blockDotP(w2, xb, out), blockDotP(w3, xb, out));
    } else {
      let i0 = offsetTerm(w0, xb), i1 = offsetTerm(w1, xb), i2 = offsetTerm(w2, xb), i3 = offsetTerm(w3, xb);
      // the stores order each row's loads after the previous row's work (V8 hoists loads: spills)
      {
        const x0 = v128.load(xb, 4), x1 = v128.load(xb, 20);
        const e0 = xEven(x0), o0 = xOdd(x0), e1 = xEven(x1), o1 = xOdd(x1);
        i0 = i32x4.add(i0, rowPieceP(w0, 0, false, e0, o0, e1, o1)); v128.store32_lane(out, i0, 0);
        i1 = i32x4.add(i1, rowPieceP(w1, 0, false, e0, o0, e1, o1)); v128.store32_lane(out, i1, 0);
        i2 = i32x4.add(i2, rowPieceP(w2, 0, false, e0, o0, e1, o1)); v128.store32_lane(out, i2, 0);
        i3 = i32x4.add(i3, rowPieceP(w3, 0, false, e0, o0, e1, o1)); v128.store32_lane(out, i3, 0);
      }
      {
        const x0 = v128.load(xb, 36), x1 = v128.load(xb, 52);
        const e0 = xEven(x0), o0 = xOdd(x0), e1 = xEven(x1), o1 = xOdd(x1);
        i0 = i32x4.add(i0, rowPieceP(w0, 1, false, e0, o0, e1, o1)); v128.store32_lane(out, i0, 0);
        i1 = i32x4.add(i1, rowPieceP(w1, 1, false, e0, o0, e1, o1)); v128.store32_lane(out, i1, 0);
        i2 = i32x4.add(i2, rowPieceP(w2, 1, false, e0, o0, e1, o1)); v128.store32_lane(out, i2, 0);
        i3 = i32x4.add(i3, rowPieceP(w3, 1, false, e0, o0, e1, o1)); v128.store32_lane(out, i3, 0);
      }
      {
        const x0 = v128.load(xb, 68), x1 = v128.load(xb, 84);
        const e0 = xEven(x0), o0 = xOdd(x0), e1 = xEven(x1), o1 = xOdd(x1);
        i0 = i32x4.add(i0, rowPieceP(w0, 2, false, e0, o0, e1, o1)); v128.store32_lane(out, i0, 0);
        i1 = i32x4.add(i1, rowPieceP(w1, 2, false, e0, o0, e1, o1)); v128.store32_lane(out, i1, 0);
        i2 = i32x4.add(i2, rowPieceP(w2, 2, false, e0, o0, e1, o1)); v128.store32_lane(out, i2, 0);
        i3 = i32x4.add(i3, rowPieceP(w3, 2, false, e0, o0, e1, o1)); v128.store32_lane(out, i3, 0);
      }
      {
        const x0 = v128.load(xb, 100), x1 = v128.load(xb, 116);
        const e0 = xEven(x0), o0 = xOdd(x0), e1 = xEven(x1), o1 = xOdd(x1);
        i0 = i32x4.add(i0, rowPieceP(w0, 3, false, e0, o0, e1, o1)); v128.store32_lane(out, i0, 0);
        i1 = i32x4.add(i1, rowPieceP(w1, 3, false, e0, o0, e1, o1)); v128.store32_lane(out, i1, 0);
        i2 = i32x4.add(i2, rowPieceP(w2, 3, false, e0, o0, e1, o1)); v128.store32_lane(out, i2, 0);
        i3 = i32x4.add(i3, rowPieceP(w3, 3, false, e0, o0, e1, o1)); v128.store32_lane(out, i3, 0);
      }
      {
        const x0 = v128.load(xb, 132), x1 = v128.load(xb, 148);
        const e0 = xEven(x0), o0 = xOdd(x0), e1 = xEven(x1), o1 = xOdd(x1);
        i0 = i32x4.add(i0, rowPieceP(w0, 4, false, e0, o0, e1, o1)); v128.store32_lane(out, i0, 0);
        i1 = i32x4.add(i1, rowPieceP(w1, 4, false, e0, o0, e1, o1)); v128.store32_lane(out, i1, 0);
        i2 = i32x4.add(i2, rowPieceP(w2, 4, false, e0, o0, e1, o1)); v128.store32_lane(out, i2, 0);
        i3 = i32x4.add(i3, rowPieceP(w3, 4, false, e0, o0, e1, o1)); v128.store32_lane(out, i3, 0);
      }
      {
        const x0 = v128.load(xb, 164), x1 = v128.load(xb, 180);
        const e0 = xEven(x0), o0 = xOdd(x0), e1 = xEven(x1), o1 = xOdd(x1);
        i0 = i32x4.add(i0, rowPieceP(w0, 5, false, e0, o0, e1, o1)); v128.store32_lane(out, i0, 0);
        i1 = i32x4.add(i1, rowPieceP(w1, 5, false, e0, o0, e1, o1)); v128.store32_lane(out, i1, 0);
        i2 = i32x4.add(i2, rowPieceP(w2, 5, false, e0, o0, e1, o1)); v128.store32_lane(out, i2, 0);
        i3 = i32x4.add(i3, rowPieceP(w3, 5, false, e0, o0, e1, o1)); v128.store32_lane(out, i3, 0);
      }
      {
        const x0 = v128.load(xb, 196), x1 = v128.load(xb, 212);
        const e0 = xEven(x0), o0 = xOdd(x0), e1 = xEven(x1), o1 = xOdd(x1);
        i0 = i32x4.add(i0, rowPieceP(w0, 6, true, e0, o0, e1, o1)); v128.store32_lane(out, i0, 0);
        i1 = i32x4.add(i1, rowPieceP(w1, 6, true, e0, o0, e1, o1)); v128.store32_lane(out, i1, 0);
        i2 = i32x4.add(i2, rowPieceP(w2, 6, true, e0, o0, e1, o1)); v128.store32_lane(out, i2, 0);
        i3 = i32x4.add(i3, rowPieceP(w3, 6, true, e0, o0, e1, o1)); v128.store32_lane(out, i3, 0);
      }
      {
        const x0 = v128.load(xb, 228), x1 = v128.load(xb, 244);
        const e0 = xEven(x0), o0 = xOdd(x0), e1 = xEven(x1), o1 = xOdd(x1);
        i0 = i32x4.add(i0, rowPieceP(w0, 7, true, e0, o0, e1, o1)); v128.store32_lane(out, i0, 0);
        i1 = i32x4.add(i1, rowPieceP(w1, 7, true, e0, o0, e1, o1)); v128.store32_lane(out, i1, 0);
        i2 = i32x4.add(i2, rowPieceP(w2, 7, true, e0, o0, e1, o1)); v128.store32_lane(out, i2, 0);
        i3 = i32x4.add(i3, rowPieceP(w3, 7, true, e0, o0, e1, o1)); v128.store32_lane(out, i3, 0);
      }
      isum = i32x4_hsum4(i0, i1, i2, i3);
    }
    let h = v128.load16_splat(w0 + 208);
    h = v128.load16_lane(w1 + 208, h, 3);
    h = v128.load16_lane(w2 + 208, h, 5);
    h = v128.load16_lane(w3 + 208, h, 7);
    const d = f32x4.mul(f16x4_hi_to_f32x4_nosub(h), f32x4.splat(load<f32>(xb)));
    acc = f32x4.add(acc, f32x4.mul(d, f32x4.convert_i32x4_s(isum)));
  }
  store_rows4(out, outGap, acc);
}

/** rowDot1 on the packed layout. */
function rowDot1P(wr: usize, x0: usize, nb: i32, seq: usize): f32 {
  let sum: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK;
    const xb = x0 + <usize>b * Q8K;
    const d = f32x4.extract_lane(f16x4_hi_to_f32x4_nosub(v128.load16_splat(wb + 208)), 0);
    sum += (d * load<f32>(xb)) * <f32>i32x4_hsum(blockDotP(wb, xb, seq));
  }
  return sum;
}

/** tile2x4 on the packed layout. */
@inline function tile2x4P(wr: usize, rowBytes: usize, two: bool, x: usize, x1: usize, x2: usize, x3: usize, nb: i32,
  o: usize, o1: usize, o2: usize, o3: usize): void {
  let acc01 = f32x4.splat(0), acc23 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wb = wr + <usize>b * BLOCK, wb1 = wb + rowBytes;
    const xb = x + <usize>b * Q8K;
    let i01 = i32x4.splat(0), i23 = i32x4.splat(0);
    for (let j = 0; j < 12; j += 2) {
      const u0 = subPacked(wb, j, false), u1 = subPacked(wb, j + 1, false), v0 = subPacked(wb1, j, false), v1 = subPacked(wb1, j + 1, false);
      const s0 = scaleAt(wb, j), s1 = scaleAt(wb, j + 1), z0 = scaleAt(wb1, j), z1 = scaleAt(wb1, j + 1);
      const q = xb + 4 + (<usize>j << 4);
      i01 = i32x4.add(i01, cells(u0, u1, s0, s1, v0, v1, z0, z1, q, x1, o));
      i23 = i32x4.add(i23, cells(u0, u1, s0, s1, v0, v1, z0, z1, q + x2, x3 - x2, o));
    }
    for (let j = 12; j < 16; j += 2) {
      const u0 = subPacked(wb, j, true), u1 = subPacked(wb, j + 1, true), v0 = subPacked(wb1, j, true), v1 = subPacked(wb1, j + 1, true);
      const s0 = scaleAt(wb, j), s1 = scaleAt(wb, j + 1), z0 = scaleAt(wb1, j), z1 = scaleAt(wb1, j + 1);
      const q = xb + 4 + (<usize>j << 4);
      i01 = i32x4.add(i01, cells(u0, u1, s0, s1, v0, v1, z0, z1, q, x1, o));
      i23 = i32x4.add(i23, cells(u0, u1, s0, s1, v0, v1, z0, z1, q + x2, x3 - x2, o));
    }
    if (ASC_FEATURE_RELAXED_SIMD) { // the -32 of every weight
      i01 = i32x4.sub(i01, i32x4.shl(offsetCells(xb, 0, x1, wb + 192, wb1 + 192), 5));
      i23 = i32x4.sub(i23, i32x4.shl(offsetCells(xb, x2, x3, wb + 192, wb1 + 192), 5));
    }
    let dxv = v128.load32_splat(xb);
    dxv = v128.load32_lane(xb + x1, dxv, 1);
    dxv = v128.load32_lane(xb + x2, dxv, 2);
    dxv = v128.load32_lane(xb + x3, dxv, 3);
    const d = f16x2_rows_nosub(wb + 208, rowBytes);
    acc01 = f32x4.add(acc01, f32x4.mul(f32x4.convert_i32x4_s(i01), f32x4.mul(d, i32x4.shuffle(dxv, dxv, 0, 0, 1, 1))));
    acc23 = f32x4.add(acc23, f32x4.mul(f32x4.convert_i32x4_s(i23), f32x4.mul(d, i32x4.shuffle(dxv, dxv, 2, 2, 3, 3))));
  }
  store_tile2x4(o, o1, o2, o3, acc01, acc23, two);
}

/** matmul (Kernel ABI) on a Q6_K matrix in the packed layout (see above). */
export function matmul_q6_kp(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmulGroups(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, true);
}

export function matmul_q6_kp_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  matmul_k_ref<Q6KPacked>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
}

/** Q6_K's packed layout, for matmul_k_ref. */
@final class Q6KPacked {
  @inline bytes(): usize { return BLOCK; }
  @inline dotRef(wr: usize, xr: usize, nb: i32): f32 { return dotRefPacked(wr, xr, nb); }
}

/** Rewrites `blocks` Q6_K blocks at w (the file's layout) in the packed layout above, in place: the
 *  loader's packer (compute/model/interleave.ts packQ6K writes the same bytes in JavaScript, at a
 *  tenth of the speed). Every block is read whole before it is written. */
export function pack_q6_k(w: usize, blocks: i32): void {
  const m4 = i8x16.splat(0x0f), m3 = i8x16.splat(0x03), m6 = i8x16.splat(0x30);
  for (let b = 0; b < blocks; b++) {
    const wb = w + <usize>b * BLOCK;
    // half h: ql bytes 64h + (0, 16, 32, 48), qh bytes 128 + 32h + (0, 16)
    const a0 = v128.load(wb), a1 = v128.load(wb, 16), c0 = v128.load(wb, 32), c1 = v128.load(wb, 48);
    const a2 = v128.load(wb, 64), a3 = v128.load(wb, 80), c2 = v128.load(wb, 96), c3 = v128.load(wb, 112);
    const h0 = v128.load(wb, 128), h1 = v128.load(wb, 144), h2 = v128.load(wb, 160), h3 = v128.load(wb, 176);
    // sub-block j = 8h + 2 part + (l >> 4): low nibble (parts 0, 1) or high (2, 3), qh bits 2 part
    const s12 = v128.or(v128.and(i16x8.shr_u(a2, 4), m4), v128.and(h2, m6));
    const s13 = v128.or(v128.and(i16x8.shr_u(a3, 4), m4), v128.and(h3, m6));
    const s14 = v128.or(v128.and(i16x8.shr_u(c2, 4), m4), v128.and(i16x8.shr_u(h2, 2), m6));
    const s15 = v128.or(v128.and(i16x8.shr_u(c3, 4), m4), v128.and(i16x8.shr_u(h3, 2), m6));
    // spare bits: sub-block 12 + m's bits 2t, 2t + 1 go to bits 6-7 of vector 3m + t
    const t0 = i16x8.shl(v128.and(s12, m3), 6), t1 = i16x8.shl(v128.and(i16x8.shr_u(s12, 2), m3), 6), t2 = i16x8.shl(v128.and(i16x8.shr_u(s12, 4), m3), 6);
    const t3 = i16x8.shl(v128.and(s13, m3), 6), t4 = i16x8.shl(v128.and(i16x8.shr_u(s13, 2), m3), 6), t5 = i16x8.shl(v128.and(i16x8.shr_u(s13, 4), m3), 6);
    const t6 = i16x8.shl(v128.and(s14, m3), 6), t7 = i16x8.shl(v128.and(i16x8.shr_u(s14, 2), m3), 6), t8 = i16x8.shl(v128.and(i16x8.shr_u(s14, 4), m3), 6);
    const t9 = i16x8.shl(v128.and(s15, m3), 6), t10 = i16x8.shl(v128.and(i16x8.shr_u(s15, 2), m3), 6), t11 = i16x8.shl(v128.and(i16x8.shr_u(s15, 4), m3), 6);
    v128.store(wb, v128.or(v128.or(v128.and(a0, m4), v128.and(i16x8.shl(h0, 4), m6)), t0));
    v128.store(wb, v128.or(v128.or(v128.and(a1, m4), v128.and(i16x8.shl(h1, 4), m6)), t1), 16);
    v128.store(wb, v128.or(v128.or(v128.and(c0, m4), v128.and(i16x8.shl(h0, 2), m6)), t2), 32);
    v128.store(wb, v128.or(v128.or(v128.and(c1, m4), v128.and(i16x8.shl(h1, 2), m6)), t3), 48);
    v128.store(wb, v128.or(v128.or(v128.and(i16x8.shr_u(a0, 4), m4), v128.and(h0, m6)), t4), 64);
    v128.store(wb, v128.or(v128.or(v128.and(i16x8.shr_u(a1, 4), m4), v128.and(h1, m6)), t5), 80);
    v128.store(wb, v128.or(v128.or(v128.and(i16x8.shr_u(c0, 4), m4), v128.and(i16x8.shr_u(h0, 2), m6)), t6), 96);
    v128.store(wb, v128.or(v128.or(v128.and(i16x8.shr_u(c1, 4), m4), v128.and(i16x8.shr_u(h1, 2), m6)), t7), 112);
    v128.store(wb, v128.or(v128.or(v128.and(a2, m4), v128.and(i16x8.shl(h2, 4), m6)), t8), 128);
    v128.store(wb, v128.or(v128.or(v128.and(a3, m4), v128.and(i16x8.shl(h3, 4), m6)), t9), 144);
    v128.store(wb, v128.or(v128.or(v128.and(c2, m4), v128.and(i16x8.shl(h2, 2), m6)), t10), 160);
    v128.store(wb, v128.or(v128.or(v128.and(c3, m4), v128.and(i16x8.shl(h3, 2), m6)), t11), 176);
  }
}
