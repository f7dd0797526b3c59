// Q5_0 and Q5_1 with their rows interleaved by four ("x4"): the layout the model loader gives the
// matrices of these types whose row count is a multiple of four (compute/model/interleave.ts). Rows
// 4g..4g+3 form a group, stored where row 4g's blocks would be (the group's bytes are the four rows'
// bytes, rearranged): one super-block per column of blocks b, 4 * bytes() bytes each,
//   f16 d[4]            row r's d
//   f16 m[4]            row r's m (Q5_1 only)
//   u8 hb[16]           the four rows' 5th bits as a bit plane: bit 2r + h of byte j is the 5th bit
//                       of row r's weight 16h + j
//   u8 qs[4][16]        row r's qs, as in its block (byte j: weight j low nibble, j + 16 high nibble)
// A half's 5th bits then come out of the one hb vector with a shift and an and (the block layout
// takes a broadcast, a swizzle, an and, a compare and an and per half: 15 of the ~35 instructions of a
// row and block in the one-token loop), the four rows' scales with one load, and the four rows of a
// group are one sequential stream. The integer sums and the f32 operations are those of the codec's
// own loops (dot_b32_rows4 and the tiles in common.ts), in the same order: the same bits.
import {
  cells_2x2, dot_add_exact, DotAdd, f16_to_f32, f16x2_rows_finite, f16x4_gather_finite,
  f16x4_hi_to_f32x4_finite, i16x8_pair, i32x4_hsum4, InTile, min_cells, NoDotAdd, pair_halves,
  Precomputed, QK, Q8_0_BYTES, Q8_1_BYTES, relaxed, relaxed_dot16, ROWS_PER_PASS, scale_cells,
  MATMUL_SCRATCH_PER_BLOCK, token_offset, token_offsets,
} from "./common";

/** Bytes of one super-block (four rows' blocks) of codec C. */
@inline function sbBytes<C>(): usize {
  return changetype<C>(0).bytes() << 2;
}

/** Offset of hb in a super-block. */
@inline function hbOff<C>(): usize {
  return changetype<C>(0).hasMin() ? 16 : 8;
}

/** 16 in lane j where bit p (a constant 0..7) of byte j of hb is set, else 0. An i16 shift moves
 *  bit p of both bytes of a lane to bit 4 of the same byte (at most four places: nothing from the
 *  other byte reaches bit 4). */
@inline function fifth(hb: v128, p: i32): v128 {
  const s = p < 4 ? i16x8.shl(hb, 4 - p) : p > 4 ? i16x8.shr_u(hb, p - 4) : hb;
  return v128.and(s, i8x16.splat(16));
}

/** Row r's qs (r a constant) in super-block p. */
@inline function qs4<C>(p: usize, r: i32): v128 {
  return v128.load(p + hbOff<C>() + 16 + (<usize>r << 4));
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

/** relaxed_dot16 of row r (a constant) of super-block p; `raw`: the offset not taken off. */
@inline function rdot<C>(p: usize, hb: v128, r: i32, x0: v128, x1: v128, xo: v128, raw: bool): v128 {
  const qs = qs4<C>(p, r);
  const u0 = u4(qs, hb, r, 0), u1 = u4(qs, hb, r, 1);
  if (raw) return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, u0), i16x8.relaxed_dot_i8x16_i7x16_s(x1, u1));
  return relaxed_dot16<C>(u0, u1, x0, x1, xo);
}

/** Row r's i32 dot-add chains (see dot_x4_group), starting at neg. */
@inline function dadd<C>(p: usize, hb: v128, r: i32, x0: v128, x1: v128, neg: v128): v128 {
  const qs = qs4<C>(p, r);
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, u4(qs, hb, r, 1), i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, u4(qs, hb, r, 0), neg));
}

/** Four halves at p (rows 0-3 of a super-block) as f32x4, as f16x4_hi_to_f32x4_finite. */
@inline function f16x4_at(p: usize): v128 {
  return f16x4_hi_to_f32x4_finite(i32x4.shl(v128.load16x4_u(p), 16));
}

/** i32x4 partial sums of row r's block (SIMD128: signed quants widened) times x widened (xa..xd). */
@inline function row_dot<C>(p: usize, hb: v128, r: i32, xa: v128, xb: v128, xc: v128, xd: v128): v128 {
  const qs = qs4<C>(p, r);
  const lo = s4<C>(qs, hb, r, 0), hi = s4<C>(qs, hb, r, 1);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), xa), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), xb)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), xc), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), xd)));
}

/** Bytes of matmul scratch per block that x4_token_prep fills (of MATMUL_SCRATCH_PER_BLOCK). */
const PREP_AT_DX: usize = 0, PREP_AT_OFFSET: usize = 16, PREP_AT_SX: usize = 32;

/** For one token at x: per block b, at dst + 64b, what every group's block b needs of it: d_x as an
 *  f32x4 splat, roffset * sum(x) as an i32x4 splat (relaxed build, codecs with an offset: exact, by
 *  widening adds), s_x as an f32x4 splat (codecs with a min). Once per token and matmul instead of
 *  once per group. */
@inline function x4_token_prep<C>(x: usize, nb: i32, dst: usize): void {
  const c = changetype<C>(0);
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  for (let b = 0; b < nb; b++) {
    const px = x + <usize>b * xb, o = dst + <usize>b * MATMUL_SCRATCH_PER_BLOCK;
    v128.store(o + PREP_AT_DX, f16x4_hi_to_f32x4_finite(v128.load16_splat(px)));
    if (relaxed<C>() && c.roffset() != 0) {
      const s16 = i16x8.add(i16x8.extadd_pairwise_i8x16_s(v128.load(px + xq)), i16x8.extadd_pairwise_i8x16_s(v128.load(px + xq, 16)));
      const s = i32x4.extadd_pairwise_i16x8_s(s16);
      const t = i32x4.add(s, i32x4.shuffle(s, s, 2, 3, 0, 1));
      const sum = i32x4.add(t, i32x4.shuffle(t, t, 1, 0, 3, 2));
      v128.store(o + PREP_AT_OFFSET, i32x4.mul(sum, i32x4.splat(c.roffset())));
    }
    if (c.hasMin()) v128.store(o + PREP_AT_SX, f16x4_hi_to_f32x4_finite(v128.load16_splat(px + 2)));
  }
}

/** One token at x against the group at g (nb super-blocks): rows 0-3 of the group stored at
 *  out..out+12. As dot_b32_rows4 (folded): lane r of a block's i32x4 is row r's integer sum. With O
 *  Precomputed, the token's per-block terms come from x4_token_prep at `prep`. */
@inline function dot_x4_group<C, D, O>(g: usize, x: usize, nb: i32, out: usize, prep: usize): void {
  const c = changetype<C>(0);
  const sb = sbBytes<C>();
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  const pre = changetype<O>(0).pre();
  const off = relaxed<C>() && c.roffset() != 0 && pre; // roffset * sum(x) subtracted from the i32 sums
  let acc = f32x4.splat(0);
  let px = x, pp = prep;
  const pend = g + <usize>nb * sb;
  for (let p = g; p < pend; p += sb, px += xb, pp += MATMUL_SCRATCH_PER_BLOCK) {
    const dx = pre ? v128.load(pp + PREP_AT_DX) : f16x4_hi_to_f32x4_finite(v128.load16_splat(px));
    const scale = f32x4.mul(f16x4_at(p), dx);
    const hb = v128.load(p + hbOff<C>());
    const q = px + xq;
    let isum: v128;
    if (relaxed<C>() && changetype<D>(0).on()) {
      // the i32 dot-add (Node 24 on AVX-VNNI, see dot_b32_rows4): chains start at -roffset * x
      const x0 = v128.load(q), x1 = v128.load(q, 16), z = i32x4.splat(0);
      const o = i8x16.splat(<i8>c.roffset());
      const neg = c.roffset() != 0 && !off
        ? i32x4.neg(i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, o, i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, o, z))) : z;
      const s0 = dadd<C>(p, hb, 0, x0, x1, neg), s1 = dadd<C>(p, hb, 1, x0, x1, neg);
      v128.store32_lane(out, s1, 0); // orders rows 2 and 3's loads after rows 0 and 1's work (see below)
      const s2 = dadd<C>(p, hb, 2, x0, x1, neg), s3 = dadd<C>(p, hb, 3, x0, x1, neg);
      isum = i32x4_hsum4(s0, s1, s2, s3);
    } else if (relaxed<C>()) {
      // with `off`, each row's eight i16 sums keep the offset (at most 4 * 127 * 31 each, so two
      // still add in an i16, see i16x8_pair) and it is taken off the i32 sums below
      const x0 = v128.load(q), x1 = v128.load(q, 16), xo = off ? i16x8.splat(0) : token_offset<C>(q);
      const ab = i16x8_pair(rdot<C>(p, hb, 0, x0, x1, xo, off), rdot<C>(p, hb, 1, x0, x1, xo, off));
      // a store orders rows 2 and 3's loads after rows 0 and 1's work (V8 hoists every load of a
      // basic block to its top: all four rows' qs would be live at once and spill); out is written last
      v128.store32_lane(out, ab, 0);
      const cd = i16x8_pair(rdot<C>(p, hb, 2, x0, x1, xo, off), rdot<C>(p, hb, 3, x0, x1, xo, off));
      isum = i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
    } else {
      const xa = v128.load8x8_s(q), xbv = v128.load8x8_s(q, 8), xc = v128.load8x8_s(q, 16), xd = v128.load8x8_s(q, 24);
      const ab = pair_halves(row_dot<C>(p, hb, 0, xa, xbv, xc, xd), row_dot<C>(p, hb, 1, xa, xbv, xc, xd));
      const cd = pair_halves(row_dot<C>(p, hb, 2, xa, xbv, xc, xd), row_dot<C>(p, hb, 3, xa, xbv, xc, xd));
      isum = i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
    }
    if (off) isum = i32x4.sub(isum, v128.load(pp + PREP_AT_OFFSET));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), scale));
    if (c.hasMin()) {
      const sx = pre ? v128.load(pp + PREP_AT_SX) : f16x4_hi_to_f32x4_finite(v128.load16_splat(px + 2));
      acc = f32x4.add(acc, f32x4.mul(f16x4_at(p + 8), sx));
    }
  }
  v128.store(out, acc);
}

/** Vector i (0..3) of row r's block in super-block p as a tile keeps it (see tile_weights in
 *  common.ts): relaxed, 0 and 1 the weights as u8; SIMD128, the signed weights widened to i16x8. */
@inline function tile_w<C>(p: usize, hb: v128, r: i32, i: i32): v128 {
  if (relaxed<C>()) return u4(qs4<C>(p, r), hb, r, i & 1);
  const v = s4<C>(qs4<C>(p, r), hb, r, i >> 1);
  return (i & 1) == 0 ? i16x8.extend_low_i8x16_s(v) : i16x8.extend_high_i8x16_s(v);
}

/** Rows R and R + 1 (R = 0 or 2, a constant) of the group at g by eight tokens at x + t*xStride, as
 *  tile_b32_2x8 in common.ts: cell (r, t) lands at out + 4*(t*outStride + r). */
@inline function tile_x4_2x8<C, O>(g: usize, R: i32, x: usize, xStride: usize, nb: i32,
  out: usize, outStride: usize, offsets: usize): void {
  const c = changetype<C>(0);
  const sb = sbBytes<C>();
  const xb = c.hasMin() ? Q8_1_BYTES : Q8_0_BYTES;
  const xq: usize = c.hasMin() ? 4 : 2;
  const x2 = xStride << 1, x4 = xStride << 2;
  let acc01 = f32x4.splat(0), acc23 = f32x4.splat(0), acc45 = f32x4.splat(0), acc67 = f32x4.splat(0);
  let px = x;
  let po = offsets;
  const pend = g + <usize>nb * sb;
  for (let p = g; p < pend; p += sb, px += xb, po += MATMUL_SCRATCH_PER_BLOCK) {
    const hb = v128.load(p + hbOff<C>());
    const a0 = tile_w<C>(p, hb, R, 0), b0 = tile_w<C>(p, hb, R, 1), c0 = tile_w<C>(p, hb, R, 2), d0 = tile_w<C>(p, hb, R, 3);
    const a1 = tile_w<C>(p, hb, R + 1, 0), b1 = tile_w<C>(p, hb, R + 1, 1), c1 = tile_w<C>(p, hb, R + 1, 2), d1 = tile_w<C>(p, hb, R + 1, 3);
    const q = px + xq;
    const v01 = cells_2x2<C, O>(a0, b0, c0, d0, a1, b1, c1, d1, q, xStride, out, po);
    const v23 = cells_2x2<C, O>(a0, b0, c0, d0, a1, b1, c1, d1, q + x2, xStride, out, po + 16);
    const v45 = cells_2x2<C, O>(a0, b0, c0, d0, a1, b1, c1, d1, q + x4, xStride, out, po + 32);
    const v67 = cells_2x2<C, O>(a0, b0, c0, d0, a1, b1, c1, d1, q + x4 + x2, xStride, out, po + 48);
    const dw = f16x2_rows_finite(p + (<usize>R << 1), 2);
    const dx = f16x4_gather_finite(px, xStride), dy = f16x4_gather_finite(px + x4, xStride);
    acc01 = scale_cells(acc01, v01, dw, dx, false);
    acc23 = scale_cells(acc23, v23, dw, dx, true);
    acc45 = scale_cells(acc45, v45, dw, dy, false);
    acc67 = scale_cells(acc67, v67, dw, dy, true);
    if (c.hasMin()) {
      const mw = f16x2_rows_finite(p + 8 + (<usize>R << 1), 2);
      const sx = f16x4_gather_finite(px + 2, xStride), sy = f16x4_gather_finite(px + x4 + 2, xStride);
      acc01 = min_cells(acc01, mw, sx, false);
      acc23 = min_cells(acc23, mw, sx, true);
      acc45 = min_cells(acc45, mw, sy, false);
      acc67 = min_cells(acc67, mw, sy, true);
    }
  }
  const os = outStride << 2;
  v128.store64_lane(out, acc01, 0);
  v128.store64_lane(out + os, acc01, 1);
  v128.store64_lane(out + 2 * os, acc23, 0);
  v128.store64_lane(out + 3 * os, acc23, 1);
  v128.store64_lane(out + 4 * os, acc45, 0);
  v128.store64_lane(out + 5 * os, acc45, 1);
  v128.store64_lane(out + 6 * os, acc67, 0);
  v128.store64_lane(out + 7 * os, acc67, 1);
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
    const hb = v128.load(p + hbOff<C>());
    const a0 = tile_w<C>(p, hb, R, 0), b0 = tile_w<C>(p, hb, R, 1), c0 = tile_w<C>(p, hb, R, 2), d0 = tile_w<C>(p, hb, R, 3);
    const a1 = tile_w<C>(p, hb, R + 1, 0), b1 = tile_w<C>(p, hb, R + 1, 1), c1 = tile_w<C>(p, hb, R + 1, 2), d1 = tile_w<C>(p, hb, R + 1, 3);
    const q = px + xq;
    const v01 = cells_2x2<C, InTile>(a0, b0, c0, d0, a1, b1, c1, d1, q, x1, out, 0);
    const v23 = cells_2x2<C, InTile>(a0, b0, c0, d0, a1, b1, c1, d1, q + x2, x3 - x2, out, 0);
    let h = v128.load16_splat(px);
    h = v128.load16_lane(px + x1, h, 3);
    h = v128.load16_lane(px + x2, h, 5);
    h = v128.load16_lane(px + x3, h, 7);
    const dw = f16x2_rows_finite(p + (<usize>R << 1), 2), dx = f16x4_hi_to_f32x4_finite(h);
    acc01 = scale_cells(acc01, v01, dw, dx, false);
    acc23 = scale_cells(acc23, v23, dw, dx, true);
    if (c.hasMin()) {
      let m = v128.load16_splat(px + 2);
      m = v128.load16_lane(px + x1 + 2, m, 3);
      m = v128.load16_lane(px + x2 + 2, m, 5);
      m = v128.load16_lane(px + x3 + 2, m, 7);
      const mw = f16x2_rows_finite(p + 8 + (<usize>R << 1), 2), sx = f16x4_hi_to_f32x4_finite(m);
      acc01 = min_cells(acc01, mw, sx, false);
      acc23 = min_cells(acc23, mw, sx, true);
    }
  }
  v128.store64_lane(out, acc01, 0);
  v128.store64_lane(out + o1, acc01, 1);
  v128.store64_lane(out + o2, acc23, 0);
  v128.store64_lane(out + o3, acc23, 1);
}

/** matmul (DEVELOPERS.md, Kernel ABI) over x4-interleaved weights of codec C: rowStart and rowEnd
 *  multiples of 4 (whole groups; the group of rows r..r+3 starts at w + r * rowBytes). Tiles of
 *  eight tokens, then of four (three: the last token repeated), as matmul_b32; the tokens left one
 *  at a time, a group (four rows) at a time. */
@inline export function matmul_x4<C>(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  const c = changetype<C>(0);
  const nb = k / QK;
  const rowBytes = <usize>nb * c.bytes();
  const xs = <usize>xStride;
  const os = <usize>outStride;
  const offsets = relaxed<C>() && c.roffset() != 0 && scratch != 0;
  const tiled8 = nTok & ~7;
  const tiled = (nTok & ~3) + ((nTok & 3) == 3 ? 3 : 0);
  for (let r0 = rowStart; r0 < rowEnd; r0 += ROWS_PER_PASS) {
    const r1 = min(r0 + ROWS_PER_PASS, rowEnd);
    for (let t = 0; t < tiled8; t += 8) {
      const xt = x + <usize>t * xs;
      const ot = out + (<usize>t * os << 2);
      if (offsets) {
        token_offsets<C>(xt, xs, nb, scratch);
        for (let r = r0; r < r1; r += 4) {
          const g = w + <usize>r * rowBytes, o = ot + (<usize>r << 2);
          tile_x4_2x8<C, Precomputed>(g, 0, xt, xs, nb, o, os, scratch);
          tile_x4_2x8<C, Precomputed>(g, 2, xt, xs, nb, o + 8, os, scratch);
        }
      } else {
        for (let r = r0; r < r1; r += 4) {
          const g = w + <usize>r * rowBytes, o = ot + (<usize>r << 2);
          tile_x4_2x8<C, InTile>(g, 0, xt, xs, nb, o, os, 0);
          tile_x4_2x8<C, InTile>(g, 2, xt, xs, nb, o + 8, os, 0);
        }
      }
    }
    for (let t = tiled8; t < tiled; t += 4) {
      const last = <usize>min(3, tiled - t - 1); // 2 or 3
      const xt = x + <usize>t * xs;
      const ot = out + (<usize>t * os << 2);
      const x2 = min<usize>(2, last) * xs, o2 = (min<usize>(2, last) * os) << 2;
      for (let r = r0; r < r1; r += 4) {
        const g = w + <usize>r * rowBytes, o = ot + (<usize>r << 2);
        tile_x4_2x4<C>(g, 0, xt, xs, x2, last * xs, nb, o, os << 2, o2, (last * os) << 2);
        tile_x4_2x4<C>(g, 2, xt, xs, x2, last * xs, nb, o + 8, os << 2, o2, (last * os) << 2);
      }
    }
  }
  const vnni = relaxed<C>() && tiled < nTok && dot_add_exact(k);
  for (let t = tiled; t < nTok; t++) {
    const xt = x + <usize>t * xs;
    const ot = out + (<usize>t * os << 2);
    if (scratch != 0) {
      x4_token_prep<C>(xt, nb, scratch);
      if (vnni) {
        for (let r = rowStart; r < rowEnd; r += 4) dot_x4_group<C, DotAdd, Precomputed>(w + <usize>r * rowBytes, xt, nb, ot + (<usize>r << 2), scratch);
      } else {
        for (let r = rowStart; r < rowEnd; r += 4) dot_x4_group<C, NoDotAdd, Precomputed>(w + <usize>r * rowBytes, xt, nb, ot + (<usize>r << 2), scratch);
      }
    } else if (vnni) {
      for (let r = rowStart; r < rowEnd; r += 4) dot_x4_group<C, DotAdd, InTile>(w + <usize>r * rowBytes, xt, nb, ot + (<usize>r << 2), 0);
    } else {
      for (let r = rowStart; r < rowEnd; r += 4) dot_x4_group<C, NoDotAdd, InTile>(w + <usize>r * rowBytes, xt, nb, ot + (<usize>r << 2), 0);
    }
  }
}

/** matmul_x4, scalar: each weight read from the layout above bit by bit, summed as matmul_b32_ref. */
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
          const byte = <i32>load<u8>(p + hbOff<C>() + 16 + (<usize>i << 4) + <usize>(j & 15));
          const nibble = j < 16 ? byte & 15 : byte >> 4;
          const high = (<i32>load<u8>(p + hbOff<C>() + <usize>(j & 15)) >> <i32>(2 * i + (j >> 4))) & 1;
          isum += ((nibble | (high << 4)) - c.roffset()) * <i32>load<i8>(px + xq + <usize>j);
        }
        sum += <f32>isum * (f16_to_f32(load<u16>(p + (<usize>i << 1))) * f16_to_f32(load<u16>(px)));
        if (c.hasMin()) sum += f16_to_f32(load<u16>(p + 8 + (<usize>i << 1))) * f16_to_f32(load<u16>(px, 2));
      }
      store<f32>(out + ((<usize>t * <usize>outStride + <usize>r) << 2), sum);
    }
  }
}
