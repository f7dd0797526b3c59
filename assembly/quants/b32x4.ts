// The 32-weight types (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL) with their rows interleaved by four
// ("x4"): the layout the model loader gives the matrices of these types whose row count is a
// multiple of four and that only matmuls read (compute/model/interleave.ts). Rows 4g..4g+3 form a
// group, stored where row 4g's blocks would be (the group's bytes are the four rows' bytes,
// rearranged): one super-block per column of blocks b, 4 * bytes() bytes each,
//   f16 d[4]            row r's d
//   f16 m[4]            row r's m (Q4_1, Q5_1)
//   u8 hb[16]           Q5_0, Q5_1 (codec plane()): the four rows' 5th bits as a bit plane: bit
//                       2r + h of byte j is the 5th bit of row r's weight 16h + j
//   u8 qs[4][n]         row r's quants as in its block (n = bytes() - qsAt(): 16)
// The four rows' scales come with one load (the block layout gathers them with four), every load
// of a group is at a constant offset from one pointer (four row pointers cost V8 an lea per load
// and spilled registers), and the group is one sequential stream. A Q5 half's 5th bits come out of
// the one hb vector with a shift and an and (the block layout takes a broadcast, a swizzle, an and,
// a compare and an and per half: 15 of the ~35 instructions of a row and block in the one-token
// loop). The codec's lo, hi, ulo, uhi and w16 read only the quants: they are called with a block
// pointer that puts qsAt() at row r's quants. The integer sums and the f32 operations are those of
// the codec's own loops (dot_b32_rows4 and the tiles in common.ts), in the same order: the same bits.
import {
  block_dot, cells_2x2, dot_add_exact, DotAdd, f16_to_f32, f16x2_rows_finite, f16x4_gather_finite,
  f16x4_hi_to_f32x4_finite, i16x8_pair, i32x4_hsum4, InTile, min_cells, NoDotAdd,
  offset_sum, pair_halves, Precomputed, QK, Q8_0_BYTES, Q8_1_BYTES, relaxed, ROWS_PER_PASS,
  scale_cells, MATMUL_SCRATCH_PER_BLOCK, tile_weights, token_offset, token_offsets, f16x4_tokens_finite,
  store_cells, i16x8_hsum4,
} from "./common";

/** Bytes of one super-block (four rows' blocks) of codec C. */
@inline function sbBytes<C>(): usize {
  return changetype<C>(0).bytes() << 2;
}

/** Offset of hb (Q5) or of the quants in a super-block. */
@inline function hbOff<C>(): usize {
  return changetype<C>(0).hasMin() ? 16 : 8;
}

/** Bytes of one row's quants in a super-block. */
@inline function qsBytes<C>(): usize {
  const c = changetype<C>(0);
  return c.bytes() - c.qsAt();
}

/** A pointer at which the codec's block methods (lo, hi, ulo, uhi, w16: quants only) read row r's
 *  quants of super-block p. */
@inline function rowBlock<C>(p: usize, r: i32): usize {
  const c = changetype<C>(0);
  return p + hbOff<C>() + (c.plane() ? 16 : 0) + <usize>r * qsBytes<C>() - c.qsAt();
}

/** 16 in lane j where bit p (a constant 0..7) of byte j of hb is set, else 0. An i16 shift moves
 *  bit p of both bytes of a lane to bit 4 of the same byte (at most four places: nothing from the
 *  other byte reaches bit 4). */
@inline function fifth(hb: v128, p: i32): v128 {
  const s = p < 4 ? i16x8.shl(hb, 4 - p) : p > 4 ? i16x8.shr_u(hb, p - 4) : hb;
  return v128.and(s, i8x16.splat(16));
}

/** Row r's qs (r a constant) in super-block p (Q5). */
@inline function qs4<C>(p: usize, r: i32): v128 {
  return v128.load(p + hbOff<C>() + 16 + (<usize>r << 4));
}

/** Row r's weights 0-15 (h = 0) or 16-31 (h = 1) as the relaxed dot takes them (u8). */
@inline function ux<C>(p: usize, hb: v128, qs: v128, r: i32, h: i32): v128 {
  const c = changetype<C>(0);
  if (c.plane()) return u4(qs, hb, r, h);
  return h == 0 ? c.ulo(rowBlock<C>(p, r)) : c.uhi(rowBlock<C>(p, r));
}

/** Row r's weights 16h..16h+15 as u8 (nibble | 5th bit << 4, 0..31), from its qs and the plane hb;
 *  r, h constants. */
@inline function u4(qs: v128, hb: v128, r: i32, h: i32): v128 {
  const nibbles = h == 0 ? v128.and(qs, i8x16.splat(15)) : v128.and(i16x8.shr_u(qs, 4), i8x16.splat(15));
  return v128.or(nibbles, fifth(hb, 2 * r + h));
}

/** u4 as the codec's signed quants (Q5_0: minus 16; Q5_1's are 0..31 already). */
@inline function s4<C>(qs: v128, hb: v128, r: i32, h: i32): v128 {
  const o = changetype<C>(0).roffset();
  const u = u4(qs, hb, r, h);
  return o != 0 ? i8x16.sub(u, i8x16.splat(<i8>o)) : u;
}

/** Row r's (a constant) relaxed i16 dot of super-block p, the offset not taken off (dot_x4_group
 *  takes roffset * sum(x) off the i32 sums); for plane codecs qs is loaded once for both halves. */
@inline function rdot<C>(p: usize, hb: v128, r: i32, x0: v128, x1: v128): v128 {
  const qs = changetype<C>(0).plane() ? qs4<C>(p, r) : hb; // hb: unused by the codec's own ulo/uhi
  const u0 = ux<C>(p, hb, qs, r, 0), u1 = ux<C>(p, hb, qs, r, 1);
  return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, u0), i16x8.relaxed_dot_i8x16_i7x16_s(x1, u1));
}

/** Row r's i32 dot-add chains (see dot_x4_group), the offset not taken off. */
@inline function dadd<C>(p: usize, hb: v128, r: i32, x0: v128, x1: v128): v128 {
  const qs = changetype<C>(0).plane() ? qs4<C>(p, r) : hb;
  const z = i32x4.splat(0);
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, ux<C>(p, hb, qs, r, 1), i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, ux<C>(p, hb, qs, r, 0), z));
}

/** Four halves at p (rows 0-3 of a super-block) as f32x4, as f16x4_hi_to_f32x4_finite. */
@inline function f16x4_at(p: usize): v128 {
  return f16x4_hi_to_f32x4_finite(i32x4.shl(v128.load16x4_u(p), 16));
}

/** i32x4 partial sums of row r's block (SIMD128) times x widened (xa..xd); sx: offset_sum. */
@inline function row_dot<C>(p: usize, hb: v128, r: i32, xa: v128, xb: v128, xc: v128, xd: v128, sx: v128): v128 {
  if (!changetype<C>(0).plane()) return block_dot<C>(rowBlock<C>(p, r), xa, xb, xc, xd, sx);
  const qs = qs4<C>(p, r);
  const lo = s4<C>(qs, hb, r, 0), hi = s4<C>(qs, hb, r, 1);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), xa), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), xb)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), xc), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), xd)));
}

/** Bytes of matmul scratch per block that x4_token_prep fills (of MATMUL_SCRATCH_PER_BLOCK). */
const PREP_AT_DX: usize = 0, PREP_AT_OFFSET: usize = 16, PREP_AT_SX: usize = 32;

/** For one token at x: per block b, at dst + 64b, what every group's block b needs of it: d_x as an
 *  f32x4 splat, roffset * sum(x) as an i32x4 splat (relaxed build, codecs with an offset: exact),
 *  s_x as an f32x4 splat (codecs with a min). Once per token and matmul instead of
 *  once per group. */
@inline function x4_token_prep<C>(x: usize, nb: i32, dst: usize): void {
  const c = changetype<C>(0);
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  for (let b = 0; b < nb; b++) {
    const px = x + <usize>b * xb, o = dst + <usize>b * MATMUL_SCRATCH_PER_BLOCK;
    v128.store(o + PREP_AT_DX, f16x4_hi_to_f32x4_finite(v128.load16_splat(px)));
    if (relaxed<C>() && c.roffset() != 0) { // as token_offsets, every lane the one token's
      const t = token_offset<C>(px + xq);
      v128.store(o + PREP_AT_OFFSET, i16x8_hsum4(t, t, t, t));
    }
    if (c.hasMin()) v128.store(o + PREP_AT_SX, f16x4_hi_to_f32x4_finite(v128.load16_splat(px + 2)));
  }
}

/** One token at x against the group at g (nb super-blocks): rows 0-3 of the group stored at
 *  out..out+12, summed as dot_b32_rows4 (lane r of a block's i32x4 is row r's integer sum; one f32
 *  accumulator). The token's per-block terms come from x4_token_prep at `prep`. */
@inline function dot_x4_group<C, D>(g: usize, x: usize, nb: i32, out: usize, prep: usize): void {
  const c = changetype<C>(0);
  const sb = sbBytes<C>();
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  const off = relaxed<C>() && c.roffset() != 0; // roffset * sum(x) subtracted from the i32 sums
  let acc = f32x4.splat(0); // lane r: row r
  let px = x, pp = prep;
  const pend = g + <usize>nb * sb;
  for (let p = g; p < pend; p += sb, px += xb, pp += MATMUL_SCRATCH_PER_BLOCK) {
    const scale = f32x4.mul(f16x4_at(p), v128.load(pp + PREP_AT_DX));
    const hb = c.plane() ? v128.load(p + hbOff<C>()) : i32x4.splat(0);
    const q = px + xq;
    let isum = i32x4.splat(0);
    if (relaxed<C>() && changetype<D>(0).on()) {
      // the i32 dot-add (Node 24 on AVX-VNNI, see dot_b32_rows4)
      const x0 = v128.load(q), x1 = v128.load(q, 16);
      const s0 = dadd<C>(p, hb, 0, x0, x1), s1 = dadd<C>(p, hb, 1, x0, x1);
      v128.store32_lane(out, s1, 0); // orders rows 2 and 3's loads after rows 0 and 1's work (see below)
      const s2 = dadd<C>(p, hb, 2, x0, x1), s3 = dadd<C>(p, hb, 3, x0, x1);
      isum = i32x4_hsum4(s0, s1, s2, s3);
    } else if (relaxed<C>()) {
      // each row's eight i16 sums keep the offset (at most 4 * 127 * 31 each, so two still add in
      // an i16, see i16x8_pair); it is taken off the i32 sums below
      const x0 = v128.load(q), x1 = v128.load(q, 16);
      const ab = i16x8_pair(rdot<C>(p, hb, 0, x0, x1), rdot<C>(p, hb, 1, x0, x1));
      // a store orders rows 2 and 3's loads after rows 0 and 1's work (V8 hoists every load of a
      // basic block to its top: all four rows' qs would be live at once and spill); out is written last
      v128.store32_lane(out, ab, 0);
      const cd = i16x8_pair(rdot<C>(p, hb, 2, x0, x1), rdot<C>(p, hb, 3, x0, x1));
      isum = i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
    } else {
      const xa = v128.load8x8_s(q), xbv = v128.load8x8_s(q, 8), xc = v128.load8x8_s(q, 16), xd = v128.load8x8_s(q, 24);
      const sx = offset_sum<C>(xa, xbv, xc, xd);
      const ab = pair_halves(row_dot<C>(p, hb, 0, xa, xbv, xc, xd, sx), row_dot<C>(p, hb, 1, xa, xbv, xc, xd, sx));
      v128.store32_lane(out, ab, 0); // see the relaxed branch
      const cd = pair_halves(row_dot<C>(p, hb, 2, xa, xbv, xc, xd, sx), row_dot<C>(p, hb, 3, xa, xbv, xc, xd, sx));
      isum = i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
    }
    if (off) isum = i32x4.sub(isum, v128.load(pp + PREP_AT_OFFSET));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), scale));
    if (c.hasMin()) acc = f32x4.add(acc, f32x4.mul(f16x4_at(p + 8), v128.load(pp + PREP_AT_SX)));
  }
  v128.store(out, acc);
}

/** Vector i (0..3) of row r's block (r a constant) in super-block p as a tile keeps it
 *  (tile_weights in common.ts for the codec's own forms; Q5: relaxed, 0 and 1 the weights as u8;
 *  SIMD128, the signed weights widened to i16x8). */
@inline function tile_w<C, O>(p: usize, hb: v128, r: i32, i: i32): v128 {
  const c = changetype<C>(0);
  if (!c.plane()) return tile_weights<C, O>(rowBlock<C>(p, r), i);
  const qs = v128.load(p + hbOff<C>() + 16 + (<usize>r << 4));
  if (relaxed<C>()) return u4(qs, hb, r, i & 1);
  const u = u4(qs, hb, r, i >> 1);
  const v = c.roffset() != 0 ? i8x16.sub(u, i8x16.splat(<i8>c.roffset())) : u;
  return (i & 1) == 0 ? i16x8.extend_low_i8x16_s(v) : i16x8.extend_high_i8x16_s(v);
}

/** Bytes of matmul scratch per block that the tiles of eight tokens take (of the matmul scratch's
 *  288, see matmulScratchBytes in compute/kernels/dispatch.ts): per block b, at scratch + 256b,
 *    0   four i32x4: the tile's token pairs' roffset * sum(x) as token_offsets lays them out
 *        (relaxed, codecs with an offset), or four f32x4: their s_x (t, t, t', t') (codecs with a min)
 *    64  four f32x4: the token pairs' d_x (t, t, t', t')
 *    128 eight f32x4: the pass's row pairs' d_w (r, r', r, r'), pair j: rows r0 + 2j, r0 + 2j + 1
 *  The tile then takes each with one load: the in-loop gathers of the tokens' halves (four lane
 *  inserts and a conversion per four tokens) and the rows' were a sixth of its instructions. */
const X8_BLOCK: usize = 256, X8_AT_DX: usize = 64, X8_AT_DW: usize = 128;

/** The f16 at p + t*xStride of eight tokens t as four f32x4 token pairs (t, t, t', t') at o..o+48. */
@inline function store_token_pairs(p: usize, xStride: usize, o: usize): void {
  const a = f16x4_gather_finite(p, xStride), b = f16x4_gather_finite(p + (xStride << 2), xStride);
  v128.store(o, i32x4.shuffle(a, a, 0, 0, 1, 1));
  v128.store(o, i32x4.shuffle(a, a, 2, 2, 3, 3), 16);
  v128.store(o, i32x4.shuffle(b, b, 0, 0, 1, 1), 32);
  v128.store(o, i32x4.shuffle(b, b, 2, 2, 3, 3), 48);
}

/** For the tile of eight tokens at x (xStride bytes apart), nb blocks: the token terms of the layout
 *  above (offsets by token_offsets, or s_x; d_x), for every block. Once per tile and pass of rows. */
@inline function x8_token_prep<C>(x: usize, xStride: usize, nb: i32, dst: usize): void {
  const c = changetype<C>(0);
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  if (relaxed<C>() && c.roffset() != 0) token_offsets<C>(x, xStride, nb, dst, X8_BLOCK);
  for (let b = 0; b < nb; b++) {
    const px = x + <usize>b * xb, o = dst + <usize>b * X8_BLOCK;
    if (c.hasMin()) store_token_pairs(px + 2, xStride, o);
    store_token_pairs(px, xStride, o + X8_AT_DX);
  }
}

/** The d_w pairs of rows r0..r1 (whole groups, at most ROWS_PER_PASS) of the layout above, for
 *  every block. Once per pass of rows. */
@inline function x8_rows_prep<C>(w: usize, rowBytes: usize, r0: i32, r1: i32, nb: i32, dst: usize): void {
  const sb = sbBytes<C>();
  for (let r = r0; r < r1; r += 4) {
    const g = w + <usize>r * rowBytes;
    const at = dst + X8_AT_DW + (<usize>(r - r0) << 3); // pair (r - r0) / 2, 16 bytes each
    for (let b = 0; b < nb; b++) {
      const p = g + <usize>b * sb, o = at + <usize>b * X8_BLOCK;
      v128.store(o, f16x2_rows_finite(p, 2));
      v128.store(o, f16x2_rows_finite(p + 4, 2), 16);
    }
  }
}

/** acc + cells (see pair_cells) times their scales, as scale_cells: the rows' d_w pair times the
 *  tokens' d_x pair, both from the tile's scratch. */
@inline function scale_cells_at(acc: v128, cells: v128, dw: v128, dx: usize): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(cells), f32x4.mul(dw, v128.load(dx))));
}

/** Rows R and R + 1 (R = 0 or 2, a constant) of the group at g by eight tokens at x + t*xStride, as
 *  tile_b32_2x8 in common.ts: cell (r, t) lands at out + 4*(t*outStride + r). The tokens' and rows'
 *  terms come from the scratch at `prep` (x8_token_prep, x8_rows_prep); `pair`: the offset of these
 *  rows' d_w pair in a block's part of it. */
@inline function tile_x4_2x8<C, O>(g: usize, R: i32, x: usize, xStride: usize, nb: i32,
  out: usize, outStride: usize, prep: usize, pair: usize): void {
  const c = changetype<C>(0);
  const sb = sbBytes<C>();
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  const x2 = xStride << 1, x4 = xStride << 2;
  let acc01 = f32x4.splat(0), acc23 = f32x4.splat(0), acc45 = f32x4.splat(0), acc67 = f32x4.splat(0);
  let px = x;
  let po = prep;
  const pend = g + <usize>nb * sb;
  for (let p = g; p < pend; p += sb, px += xb, po += X8_BLOCK) {
    const hb = c.plane() ? v128.load(p + hbOff<C>()) : i32x4.splat(0);
    const a0 = tile_w<C, O>(p, hb, R, 0), b0 = tile_w<C, O>(p, hb, R, 1), c0 = tile_w<C, O>(p, hb, R, 2), d0 = tile_w<C, O>(p, hb, R, 3);
    const a1 = tile_w<C, O>(p, hb, R + 1, 0), b1 = tile_w<C, O>(p, hb, R + 1, 1), c1 = tile_w<C, O>(p, hb, R + 1, 2), d1 = tile_w<C, O>(p, hb, R + 1, 3);
    const q = px + xq;
    const v01 = cells_2x2<C, O>(a0, b0, c0, d0, a1, b1, c1, d1, q, xStride, out, po);
    const v23 = cells_2x2<C, O>(a0, b0, c0, d0, a1, b1, c1, d1, q + x2, xStride, out, po + 16);
    const v45 = cells_2x2<C, O>(a0, b0, c0, d0, a1, b1, c1, d1, q + x4, xStride, out, po + 32);
    const v67 = cells_2x2<C, O>(a0, b0, c0, d0, a1, b1, c1, d1, q + x4 + x2, xStride, out, po + 48);
    const dw = v128.load(po + pair);
    acc01 = scale_cells_at(acc01, v01, dw, po + X8_AT_DX);
    acc23 = scale_cells_at(acc23, v23, dw, po + X8_AT_DX + 16);
    acc45 = scale_cells_at(acc45, v45, dw, po + X8_AT_DX + 32);
    acc67 = scale_cells_at(acc67, v67, dw, po + X8_AT_DX + 48);
    if (c.hasMin()) { // as min_cells, the tokens' s_x pairs from the scratch
      const mw = f16x2_rows_finite(p + 8 + (<usize>R << 1), 2);
      acc01 = f32x4.add(acc01, f32x4.mul(mw, v128.load(po)));
      acc23 = f32x4.add(acc23, f32x4.mul(mw, v128.load(po, 16)));
      acc45 = f32x4.add(acc45, f32x4.mul(mw, v128.load(po, 32)));
      acc67 = f32x4.add(acc67, f32x4.mul(mw, v128.load(po, 48)));
    }
  }
  const os = outStride << 2;
  store_cells(out, os, acc01, true);
  store_cells(out + 2 * os, os, acc23, true);
  store_cells(out + 4 * os, os, acc45, true);
  store_cells(out + 6 * os, os, acc67, true);
}

/** tile_x4_2x8 for four tokens at x, x + x1, x + x2, x + x3 (offsets may repeat), stored at out,
 *  out + o1, out + o2, out + o3 (bytes), as tile_b32_2x4 in common.ts. */
@inline function tile_x4_2x4<C>(g: usize, R: i32, x: usize, x1: usize, x2: usize, x3: usize, nb: i32,
  out: usize, o1: usize, o2: usize, o3: usize): void {
  const c = changetype<C>(0);
  const sb = sbBytes<C>();
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  let acc01 = f32x4.splat(0), acc23 = f32x4.splat(0);
  let px = x;
  const pend = g + <usize>nb * sb;
  for (let p = g; p < pend; p += sb, px += xb) {
    const hb = c.plane() ? v128.load(p + hbOff<C>()) : i32x4.splat(0);
    const a0 = tile_w<C, InTile>(p, hb, R, 0), b0 = tile_w<C, InTile>(p, hb, R, 1), c0 = tile_w<C, InTile>(p, hb, R, 2), d0 = tile_w<C, InTile>(p, hb, R, 3);
    const a1 = tile_w<C, InTile>(p, hb, R + 1, 0), b1 = tile_w<C, InTile>(p, hb, R + 1, 1), c1 = tile_w<C, InTile>(p, hb, R + 1, 2), d1 = tile_w<C, InTile>(p, hb, R + 1, 3);
    const q = px + xq;
    const v01 = cells_2x2<C, InTile>(a0, b0, c0, d0, a1, b1, c1, d1, q, x1, out, 0);
    const v23 = cells_2x2<C, InTile>(a0, b0, c0, d0, a1, b1, c1, d1, q + x2, x3 - x2, out, 0);
    const dw = f16x2_rows_finite(p + (<usize>R << 1), 2), dx = f16x4_tokens_finite(px, x1, x2, x3);
    acc01 = scale_cells(acc01, v01, dw, dx, false);
    acc23 = scale_cells(acc23, v23, dw, dx, true);
    if (c.hasMin()) {
      const mw = f16x2_rows_finite(p + 8 + (<usize>R << 1), 2), sx = f16x4_tokens_finite(px + 2, x1, x2, x3);
      acc01 = min_cells(acc01, mw, sx, false);
      acc23 = min_cells(acc23, mw, sx, true);
    }
  }
  store_cells(out, o1, acc01, true);
  store_cells(out + o2, o3 - o2, acc23, true);
}

/** matmul (DEVELOPERS.md, Kernel ABI) over x4-interleaved weights of codec C: rowStart and rowEnd
 *  multiples of 4 (whole groups; the group of rows r..r+3 starts at w + r * rowBytes). Tiles of
 *  eight tokens, then of four (three: the last token repeated), as matmul_b32; the tokens left one
 *  at a time, a group (four rows) at a time. The scratch is where the tiles' offsets and the
 *  one-token loop's per-block terms go: with 0, matmul_x4_ref does the work (summed as
 *  matmul_T_ref; one variant of each loop keeps the code small). (Q8_0 keeps the file's layout, see
 *  compute/model/interleave.ts: its x4 tiles would need Q8_0's dot-add choice, as matmul_q8_0.) */
@inline export function matmul_x4<C>(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  if (scratch == 0) {
    matmul_x4_ref<C>(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride);
    return;
  }
  const c = changetype<C>(0);
  const nb = k / QK;
  const rowBytes = <usize>nb * c.bytes();
  const xs = <usize>xStride;
  const os = <usize>outStride;
  const tiled8 = nTok & ~7;
  const tiled = (nTok & ~3) + ((nTok & 3) == 3 ? 3 : 0);
  for (let r0 = rowStart; r0 < rowEnd; r0 += ROWS_PER_PASS) {
    const r1 = min(r0 + ROWS_PER_PASS, rowEnd);
    if (tiled8 > 0) x8_rows_prep<C>(w, rowBytes, r0, r1, nb, scratch);
    for (let t = 0; t < tiled8; t += 8) {
      const xt = x + <usize>t * xs;
      const ot = out + (<usize>t * os << 2);
      x8_token_prep<C>(xt, xs, nb, scratch);
      for (let r = r0; r < r1; r += 4) {
        // rows r, r + 1 then r + 2, r + 3: R a constant in each (Q5's shifts of the plane)
        const pair = X8_AT_DW + (<usize>(r - r0) << 3);
        tile_x4_2x8<C, Precomputed>(w + <usize>r * rowBytes, 0, xt, xs, nb, ot + (<usize>r << 2), os, scratch, pair);
        tile_x4_2x8<C, Precomputed>(w + <usize>r * rowBytes, 2, xt, xs, nb, ot + (<usize>(r + 2) << 2), os, scratch, pair + 16);
      }
    }
    for (let t = tiled8; t < tiled; t += 4) {
      const last = <usize>min(3, tiled - t - 1); // 2 or 3
      const xt = x + <usize>t * xs;
      const ot = out + (<usize>t * os << 2);
      const x2 = min<usize>(2, last) * xs, o2 = (min<usize>(2, last) * os) << 2;
      for (let r = r0; r < r1; r += 4) {
        tile_x4_2x4<C>(w + <usize>r * rowBytes, 0, xt, xs, x2, last * xs, nb, ot + (<usize>r << 2), os << 2, o2, (last * os) << 2);
        tile_x4_2x4<C>(w + <usize>r * rowBytes, 2, xt, xs, x2, last * xs, nb, ot + (<usize>(r + 2) << 2), os << 2, o2, (last * os) << 2);
      }
    }
  }
  const vnni = relaxed<C>() && tiled < nTok && dot_add_exact(k);
  for (let t = tiled; t < nTok; t++) {
    const xt = x + <usize>t * xs;
    const ot = out + (<usize>t * os << 2);
    x4_token_prep<C>(xt, nb, scratch);
    if (vnni) {
      for (let r = rowStart; r < rowEnd; r += 4) dot_x4_group<C, DotAdd>(w + <usize>r * rowBytes, xt, nb, ot + (<usize>r << 2), scratch);
    } else {
      for (let r = rowStart; r < rowEnd; r += 4) dot_x4_group<C, NoDotAdd>(w + <usize>r * rowBytes, xt, nb, ot + (<usize>r << 2), scratch);
    }
  }
}

/** matmul_x4, scalar: each weight read from the layout above (Q5: bit by bit; else by the codec's
 *  scalar q), summed as matmul_b32_ref. */
@inline export function matmul_x4_ref<C>(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32): void {
  const c = changetype<C>(0);
  const nb = k / QK;
  const sb = sbBytes<C>();
  const rowBytes = <usize>nb * c.bytes();
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  for (let r = rowStart; r < rowEnd; r++) {
    const g = w + <usize>(r & ~3) * rowBytes;
    const i = r & 3;
    for (let t = 0; t < nTok; t++) {
      let sum: f32 = 0;
      for (let b = 0; b < nb; b++) {
        const p = g + <usize>b * sb;
        const px = x + <usize>t * <usize>xStride + <usize>b * xb;
        let isum = 0;
        for (let j = 0; j < QK; j++) {
          let q: i32;
          if (c.plane()) {
            const byte = <i32>load<u8>(p + hbOff<C>() + 16 + (<usize>i << 4) + <usize>(j & 15));
            const nibble = j < 16 ? byte & 15 : byte >> 4;
            const high = (<i32>load<u8>(p + hbOff<C>() + <usize>(j & 15)) >> <i32>(2 * i + (j >> 4))) & 1;
            q = (nibble | (high << 4)) - c.roffset();
          } else {
            q = c.q(rowBlock<C>(p, i), j); // the codec's scalar weight, from row i's quants
          }
          isum += q * <i32>load<i8>(px + xq + <usize>j);
        }
        sum += <f32>isum * (f16_to_f32(load<u16>(p + (<usize>i << 1))) * f16_to_f32(load<u16>(px)));
        if (c.hasMin()) sum += f16_to_f32(load<u16>(p + 8 + (<usize>i << 1))) * f16_to_f32(load<u16>(px, 2));
      }
      store<f32>(out + ((<usize>t * <usize>outStride + <usize>r) << 2), sum);
    }
  }
}

/**
 * Rewrites the (rows, cols) matrix at w, as in the file (blocks of 32 weights, blockBytes each, the
 * quants at qsAt, the d (and m, hasMin) first, Q5's 5th bits a u32 just before the quants), in the x4
 * layout above, in place: the loader's interleaver (compute/model/interleave.ts interleaveRows4
 * writes the same bytes in JavaScript). A group of four rows is copied to `scratch` (4 * rows' bytes,
 * at most matmulScratchBytes(cols)) and written back rearranged. rows a multiple of 4, cols of 32.
 */
export function interleave_x4(w: usize, rows: i32, cols: i32, blockBytes: i32, qsAt: i32, hasMin: bool, plane: bool,
  scratch: usize): void {
  const nb = cols >> 5;
  const bb = <usize>blockBytes, qs = <usize>qsAt;
  const rowBytes = <usize>nb * bb, groupBytes = rowBytes << 2, sb = bb << 2;
  const hb: usize = hasMin ? 16 : 8; // the plane's offset in a super-block
  const first = hb + (plane ? 16 : 0); // row 0's quants
  // byte j of a half's 16 bits: bit j & 7 of byte j >> 3
  const bit = i8x16(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  const pick = i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  for (let g = 0; g < rows >> 2; g++) {
    const at = w + <usize>g * groupBytes;
    memory.copy(scratch, at, groupBytes);
    for (let b = 0; b < nb; b++) {
      const o = at + <usize>b * sb;
      let bits = i8x16.splat(0);
      for (let r = 0; r < 4; r++) {
        const p = scratch + <usize>r * rowBytes + <usize>b * bb;
        store<u16>(o + (<usize>r << 1), load<u16>(p));
        if (hasMin) store<u16>(o + 8 + (<usize>r << 1), load<u16>(p, 2));
        if (plane) {
          // weight j's 5th bit (bit j of the u32 qh) to bit 2r of byte j, weight 16 + j's to bit 2r + 1
          const lo = i8x16.swizzle(i16x8.splat(load<u16>(p + qs - 4)), pick);
          const hi = i8x16.swizzle(i16x8.splat(load<u16>(p + qs - 2)), pick);
          const one = i8x16.shl(i8x16.splat(1), r << 1);
          bits = v128.or(bits, v128.and(i8x16.eq(v128.and(lo, bit), bit), one));
          bits = v128.or(bits, v128.and(i8x16.eq(v128.and(hi, bit), bit), i8x16.add(one, one)));
        }
        v128.store(o + first + (<usize>r << 4), v128.load(p + qs));
      }
      if (plane) v128.store(o + hb, bits);
    }
  }
}
