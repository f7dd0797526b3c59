// Q8_0 packed at load ("q8_0p", compute/model/interleave.ts packQ8_0): rows in groups of four,
// stored where the group's first row would be; per column of blocks b, one 136-byte super-block
// (the four rows' 34-byte blocks, rearranged):
//   f16 d[4]          row r's d
//   i8  qs[8][4][4]   weights 4j..4j+3 of row r ("quad j") at 8 + 16j + 4r
// A 16-byte vector of quad j holds the four rows' weights 4j..4j+3, so the rows' integer sums come
// out with lane r = row r, no horizontal sum per cell:
//   SIMD128: its halves widened to i16 (rows 0-1, rows 2-3) times the token's weights 4j..4j+3 twice
//            (pmaddwd; the activations widened once per tile into the scratch) give each row's two
//            pair sums; after the block's eight quads one shuffle pair and an add give (r0..r3);
//   relaxed, where the i32 dot-add is a full u8 x i8 product (dot_add_exact: AVX-VNNI, Node 24):
//            i32x4.relaxed_dot_i8x16_i7x16_add_s on w + 128 (xor 0x80) and the token's quad j
//            repeated gives the four rows' quad sums in one instruction; 128 * sum(x) comes off.
// The file's layout needs per cell (row, token) a horizontal sum of four lanes and per pair of rows
// the activations widened again. The integer sums are exact and the f32 operations those of
// matmul_q8_0_ref (isum * (d_w * d_x) added block after block), in every path: the same bits as the
// file's layout, for any number of tokens in the call.
import { dot_add_exact, DotAdd, f16_to_f32, f16x4_hi_to_f32x4_finite, NoDotAdd, QK, Q8_0_BYTES } from "./common";

/** Bytes of one super-block (four rows' blocks). */
const SB: usize = 136;
/** Rows per pass over a tile of tokens: the pass's weights stay in L2 while the tiles go by. */
const PASS: i32 = 64;
/** Scratch bytes per block of k this kernel uses (compute/kernels/dispatch.ts matmulScratchBytes):
 *  four tokens' activations widened to i16 (256) or their quants (128), their d_x (16) and
 *  128 * sum(x) (16). */
export const Q8_0P_SCRATCH_PER_BLOCK: usize = 288;

/** The scratch's parts for nb blocks (t: the token's slot in its tile): widened activations at
 *  s + 256b + 64t (SIMD128) or quants at s + 128b + 32t (dot-add), d_x (f32) at sd(s, nb) + 16b + 4t,
 *  128 * sum(x) (i32) at so(s, nb) + 16b + 4t. */
@inline function sd(s: usize, nb: i32): usize { return s + (<usize>nb << 8); }
@inline function so(s: usize, nb: i32): usize { return s + (<usize>nb << 8) + (<usize>nb << 4); }

/** Four halves at p as f32x4 (finite: the rows' d). */
@inline function f16x4_at(p: usize): v128 {
  return f16x4_hi_to_f32x4_finite(i32x4.shl(v128.load16x4_u(p), 16));
}

/** Lanes (r0, r1, r2, r3) from l = (r0a, r0b, r1a, r1b), h = (r2a, r2b, r3a, r3b). */
@inline function rows(l: v128, h: v128): v128 {
  return i32x4.add(i32x4.shuffle(l, h, 0, 2, 4, 6), i32x4.shuffle(l, h, 1, 3, 5, 7));
}

/** acc + the block's integer sums (lanes: rows) times (the rows' d at p) * d_x at px. */
@inline function scaled(acc: v128, isum: v128, p: usize, dx: usize): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(f16x4_at(p), v128.load32_splat(dx))));
}

/** One quad's i32 dot-add of the four rows (vector at pj) against the token's quad at xq. */
@inline function dadd(acc: v128, u: v128, xq: usize): v128 {
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load32_splat(xq), u, acc);
}

/** For the n tokens (1..4) at x (xStride apart), into slots 0..slots-1 of the scratch s (the last
 *  token repeated into the slots past n): per block b and slot t, d_x; SIMD128 (D off) the
 *  activations widened to i16 (at s + 256b + 64t); with the dot-add (D on) 128 * sum(x), by the
 *  same dot-add as the cells, and the quants (at s + 128b + 32t: every load of a tile's quad at a
 *  constant offset from one pointer, no address arithmetic per token). */
@inline function prep<D>(x: usize, xStride: usize, n: i32, slots: i32, nb: i32, s: usize): void {
  const pd = sd(s, nb), po = so(s, nb);
  for (let t = 0; t < slots; t++) {
    const xt = x + <usize>min(t, n - 1) * xStride;
    for (let b = 0; b < nb; b++) {
      const px = xt + <usize>b * Q8_0_BYTES;
      const slot = (<usize>b << 2) + <usize>t;
      store<f32>(pd + (slot << 2), f16_to_f32(load<u16>(px)));
      if (changetype<D>(0).on()) {
        const h = i8x16.splat(-128);
        const z = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load(px, 18), h, i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load(px, 2), h, i32x4.splat(0)));
        store<i32>(po + (slot << 2), i32x4.extract_lane(z, 0) + i32x4.extract_lane(z, 1) + i32x4.extract_lane(z, 2) + i32x4.extract_lane(z, 3));
        const q = s + (<usize>b << 7) + (<usize>t << 5);
        v128.store(q, v128.load(px, 2));
        v128.store(q, v128.load(px, 18), 16);
      } else {
        const o = s + (slot << 6);
        v128.store(o, v128.load8x8_s(px, 2));
        v128.store(o, v128.load8x8_s(px, 10), 16);
        v128.store(o, v128.load8x8_s(px, 18), 32);
        v128.store(o, v128.load8x8_s(px, 26), 48);
      }
    }
  }
}

/** The group at g (four rows) by the four tokens of the scratch s (see prep): token t's four rows
 *  stored at out + t*os (16 bytes), t < n. */
@inline function tile<D>(g: usize, nb: i32, s: usize, out: usize, os: usize, n: i32): void {
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
  const pd = sd(s, nb), po = so(s, nb);
  for (let b = 0; b < nb; b++) {
    const p = g + <usize>b * SB;
    const dp = pd + (<usize>b << 4);
    if (changetype<D>(0).on()) {
      const op = po + (<usize>b << 4);
      let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
      let xq = s + (<usize>b << 7); // the tile's quants, token t at + 32t (see prep)
      for (let pj = p; pj < p + 128; pj += 16, xq += 4) {
        const u = v128.xor(v128.load(pj, 8), i8x16.splat(-128));
        a0 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load32_splat(xq), u, a0);
        a1 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load32_splat(xq, 32), u, a1);
        a2 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load32_splat(xq, 64), u, a2);
        a3 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load32_splat(xq, 96), u, a3);
      }
      f0 = scaled(f0, i32x4.sub(a0, v128.load32_splat(op)), p, dp);
      f1 = scaled(f1, i32x4.sub(a1, v128.load32_splat(op, 4)), p, dp + 4);
      f2 = scaled(f2, i32x4.sub(a2, v128.load32_splat(op, 8)), p, dp + 8);
      f3 = scaled(f3, i32x4.sub(a3, v128.load32_splat(op, 12)), p, dp + 12);
    } else {
      let l0 = i32x4.splat(0), h0 = i32x4.splat(0), l1 = i32x4.splat(0), h1 = i32x4.splat(0);
      let l2 = i32x4.splat(0), h2 = i32x4.splat(0), l3 = i32x4.splat(0), h3 = i32x4.splat(0);
      let xq = s + (<usize>b << 8);
      // one quad per iteration: V8 hoists every load of a basic block to its top, so unrolling
      // would keep all the quads' weights live at once (x86 has 16 vector registers)
      for (let pj = p; pj < p + 128; pj += 16, xq += 8) {
        const wl = v128.load8x8_s(pj, 8), wh = v128.load8x8_s(pj, 16);
        const v0 = v128.load64_splat(xq);
        l0 = i32x4.add(l0, i32x4.dot_i16x8_s(wl, v0)); h0 = i32x4.add(h0, i32x4.dot_i16x8_s(wh, v0));
        const v1 = v128.load64_splat(xq, 64);
        l1 = i32x4.add(l1, i32x4.dot_i16x8_s(wl, v1)); h1 = i32x4.add(h1, i32x4.dot_i16x8_s(wh, v1));
        const v2 = v128.load64_splat(xq, 128);
        l2 = i32x4.add(l2, i32x4.dot_i16x8_s(wl, v2)); h2 = i32x4.add(h2, i32x4.dot_i16x8_s(wh, v2));
        const v3 = v128.load64_splat(xq, 192);
        l3 = i32x4.add(l3, i32x4.dot_i16x8_s(wl, v3)); h3 = i32x4.add(h3, i32x4.dot_i16x8_s(wh, v3));
      }
      f0 = scaled(f0, rows(l0, h0), p, dp);
      f1 = scaled(f1, rows(l1, h1), p, dp + 4);
      f2 = scaled(f2, rows(l2, h2), p, dp + 8);
      f3 = scaled(f3, rows(l3, h3), p, dp + 12);
    }
  }
  v128.store(out, f0);
  v128.store(out + os, f1);
  v128.store(out + 2 * os, f2);
  if (n == 4) v128.store(out + 3 * os, f3);
}

/** One token (slot 0 of the scratch s, see prep) against four groups
 *  at g, g + gap, g + 2*gap, g + 3*gap (gap 0: the one group at g, four times), rows stored at out,
 *  out + og, out + 2*og, out + 3*og (16 bytes each). Four streams a quarter of the range apart:
 *  the hardware prefetcher follows them better than one (see matmul_b32's one-token loop). */
@inline function one<D>(g: usize, gap: usize, nb: i32, s: usize, out: usize, og: usize): void {
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
  const g1 = g + gap, g2 = g + 2 * gap, g3 = g + 3 * gap;
  const pd = sd(s, nb), po = so(s, nb);
  for (let b = 0; b < nb; b++) {
    const o = <usize>b * SB;
    const dp = pd + (<usize>b << 4);
    if (changetype<D>(0).on()) {
      let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
      const xq = s + (<usize>b << 7); // the token's quants (see prep)
      const m = i8x16.splat(-128);
      for (let j: usize = 0; j < 32; j += 4) {
        const jo = o + (j << 2);
        a0 = dadd(a0, v128.xor(v128.load(g + jo, 8), m), xq + j);
        a1 = dadd(a1, v128.xor(v128.load(g1 + jo, 8), m), xq + j);
        a2 = dadd(a2, v128.xor(v128.load(g2 + jo, 8), m), xq + j);
        a3 = dadd(a3, v128.xor(v128.load(g3 + jo, 8), m), xq + j);
      }
      const off = v128.load32_splat(po + (<usize>b << 4));
      f0 = scaled(f0, i32x4.sub(a0, off), g + o, dp);
      f1 = scaled(f1, i32x4.sub(a1, off), g1 + o, dp);
      f2 = scaled(f2, i32x4.sub(a2, off), g2 + o, dp);
      f3 = scaled(f3, i32x4.sub(a3, off), g3 + o, dp);
    } else {
      let l0 = i32x4.splat(0), h0 = i32x4.splat(0), l1 = i32x4.splat(0), h1 = i32x4.splat(0);
      let l2 = i32x4.splat(0), h2 = i32x4.splat(0), l3 = i32x4.splat(0), h3 = i32x4.splat(0);
      let xq = s + (<usize>b << 8);
      for (let j = o; j < o + 128; j += 16, xq += 8) {
        const v = v128.load64_splat(xq);
        l0 = i32x4.add(l0, i32x4.dot_i16x8_s(v128.load8x8_s(g + j, 8), v)); h0 = i32x4.add(h0, i32x4.dot_i16x8_s(v128.load8x8_s(g + j, 16), v));
        l1 = i32x4.add(l1, i32x4.dot_i16x8_s(v128.load8x8_s(g1 + j, 8), v)); h1 = i32x4.add(h1, i32x4.dot_i16x8_s(v128.load8x8_s(g1 + j, 16), v));
        l2 = i32x4.add(l2, i32x4.dot_i16x8_s(v128.load8x8_s(g2 + j, 8), v)); h2 = i32x4.add(h2, i32x4.dot_i16x8_s(v128.load8x8_s(g2 + j, 16), v));
        l3 = i32x4.add(l3, i32x4.dot_i16x8_s(v128.load8x8_s(g3 + j, 8), v)); h3 = i32x4.add(h3, i32x4.dot_i16x8_s(v128.load8x8_s(g3 + j, 16), v));
      }
      f0 = scaled(f0, rows(l0, h0), g + o, dp);
      f1 = scaled(f1, rows(l1, h1), g1 + o, dp);
      f2 = scaled(f2, rows(l2, h2), g2 + o, dp);
      f3 = scaled(f3, rows(l3, h3), g3 + o, dp);
    }
  }
  v128.store(out, f0);
  if (gap == 0) return;
  v128.store(out + og, f1);
  v128.store(out + 2 * og, f2);
  v128.store(out + 3 * og, f3);
}

/** matmul_q8_0p with D (DotAdd or NoDotAdd) decided. */
@inline function matmul_p<D>(w: usize, x: usize, out: usize, nb: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xs: usize, os: usize, scratch: usize): void {
  const rowBytes = <usize>nb * Q8_0_BYTES;
  // tiles of four tokens (three: a tile of four with the last token repeated); one or two tokens
  // left over take the one-token path
  const tiled = (nTok & ~3) + ((nTok & 3) == 3 ? 3 : 0);
  for (let r0 = rowStart; r0 < rowEnd; r0 += PASS) {
    const r1 = min(r0 + PASS, rowEnd);
    for (let t = 0; t < tiled; t += 4) {
      const n = min(4, tiled - t);
      const xt = x + <usize>t * xs;
      prep<D>(xt, xs, n, 4, nb, scratch);
      const ot = out + ((<usize>t * os) << 2);
      for (let r = r0; r < r1; r += 4) tile<D>(w + <usize>r * rowBytes, nb, scratch, ot + (<usize>r << 2), os << 2, n);
    }
  }
  const groups = (rowEnd - rowStart) >> 2;
  const quarter = groups >> 2;
  const gap = <usize>quarter * 4 * rowBytes;
  for (let t = tiled; t < nTok; t++) {
    const xt = x + <usize>t * xs;
    prep<D>(xt, xs, 1, 1, nb, scratch);
    const ot = out + ((<usize>t * os) << 2);
    for (let i = 0; i < quarter; i++) {
      const r = rowStart + 4 * i;
      one<D>(w + <usize>r * rowBytes, gap, nb, scratch, ot + (<usize>r << 2), <usize>quarter << 4);
    }
    for (let r = rowStart + 16 * quarter; r < rowEnd; r += 4) one<D>(w + <usize>r * rowBytes, 0, nb, scratch, ot + (<usize>r << 2), 0);
  }
}

/** matmul (DEVELOPERS.md, Kernel ABI) over Q8_0 weights in the packed layout above: rowStart and
 *  rowEnd multiples of 4 (whole groups; the group of rows r..r+3 starts at w + r * rowBytes).
 *  `scratch`: Q8_0P_SCRATCH_PER_BLOCK bytes per block of k; with 0, matmul_q8_0p_ref does the work. */
export function matmul_q8_0p(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  if (scratch == 0) {
    matmul_q8_0p_ref(w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, 0);
    return;
  }
  const nb = k / QK;
  if (ASC_FEATURE_RELAXED_SIMD && dot_add_exact(k)) {
    matmul_p<DotAdd>(w, x, out, nb, rowStart, rowEnd, nTok, <usize>xStride, <usize>outStride, scratch);
  } else {
    matmul_p<NoDotAdd>(w, x, out, nb, rowStart, rowEnd, nTok, <usize>xStride, <usize>outStride, scratch);
  }
}

/** Row `row` of the packed matrix at w (k columns) as f32 at dst: get_rows on a packed token_embd
 *  (an LM head tied to it is packed with it). Each weight is d * q in f32, as dequantize_q8_0. */
export function get_row_q8_0p(w: usize, row: i32, k: i32, dst: usize): void {
  const nb = k / QK;
  const lane = <usize>(row & 3);
  let p = w + <usize>(row & ~3) * <usize>nb * Q8_0_BYTES; // the group's super-block b
  let o = dst;
  for (let b = 0; b < nb; b++, p += SB, o += 128) {
    const d = f32x4.splat(f16_to_f32(load<u16>(p + (lane << 1))));
    const q = p + 8 + (lane << 2);
    for (let j: usize = 0; j < 8; j++) {
      const v = i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(v128.load32_zero(q + (j << 4))));
      v128.store(o + (j << 4), f32x4.mul(f32x4.convert_i32x4_s(v), d));
    }
  }
}

/** matmul_q8_0p, scalar: each weight read from the packed layout, summed as matmul_q8_0_ref. */
export function matmul_q8_0p_ref(w: usize, x: usize, out: usize, k: i32, rowStart: i32, rowEnd: i32,
  nTok: i32, xStride: i32, outStride: i32, scratch: usize): void {
  const nb = k / QK;
  const rowBytes = <usize>nb * Q8_0_BYTES;
  for (let r = rowStart; r < rowEnd; r++) {
    const g = w + <usize>(r & ~3) * rowBytes;
    const i = <usize>(r & 3);
    for (let t = 0; t < nTok; t++) {
      let sum: f32 = 0;
      for (let b = 0; b < nb; b++) {
        const p = g + <usize>b * SB;
        const px = x + <usize>t * <usize>xStride + <usize>b * Q8_0_BYTES;
        let isum = 0;
        for (let j = 0; j < QK; j++) {
          isum += <i32>load<i8>(p + 8 + (<usize>(j >> 2) << 4) + (i << 2) + <usize>(j & 3)) * <i32>load<i8>(px + 2 + <usize>j);
        }
        sum += <f32>isum * (f16_to_f32(load<u16>(p + (i << 1))) * f16_to_f32(load<u16>(px)));
      }
      store<f32>(out + ((<usize>t * <usize>outStride + <usize>r) << 2), sum);
    }
  }
}

/** Rewrites the Q8_0 (rows, cols) matrix at w (the file's layout) in the packed layout above, in
 *  place: the loader's packer (compute/model/interleave.ts packQ8_0 writes the same bytes in
 *  JavaScript). A group of four rows is copied to `scratch` (4 * 34 bytes per 32 columns, at most
 *  matmulScratchBytes(cols)) and written back: per block, the four rows' quads transposed (lane r
 *  of vector j: row r's quad j). rows a multiple of 4, cols of 32. */
export function pack_q8_0(w: usize, rows: i32, cols: i32, scratch: usize): void {
  const nb = cols / QK;
  const rowBytes = <usize>nb * Q8_0_BYTES, groupBytes = rowBytes << 2;
  for (let g = 0; g < rows >> 2; g++) {
    const at = w + <usize>g * groupBytes;
    memory.copy(scratch, at, groupBytes);
    for (let b = 0; b < nb; b++) {
      const o = at + <usize>b * SB;
      const p0 = scratch + <usize>b * Q8_0_BYTES, p1 = p0 + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes;
      store<u16>(o, load<u16>(p0));
      store<u16>(o, load<u16>(p1), 2);
      store<u16>(o, load<u16>(p2), 4);
      store<u16>(o, load<u16>(p3), 6);
      for (let h: usize = 0; h < 2; h++) { // quads 4h..4h + 3
        const r0 = v128.load(p0 + 2 + (h << 4)), r1 = v128.load(p1 + 2 + (h << 4));
        const r2 = v128.load(p2 + 2 + (h << 4)), r3 = v128.load(p3 + 2 + (h << 4));
        const a = i32x4.shuffle(r0, r1, 0, 4, 1, 5), c = i32x4.shuffle(r2, r3, 0, 4, 1, 5);
        const e = i32x4.shuffle(r0, r1, 2, 6, 3, 7), f = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
        const q = o + 8 + (h << 6);
        v128.store(q, i32x4.shuffle(a, c, 0, 1, 4, 5));
        v128.store(q, i32x4.shuffle(a, c, 2, 3, 6, 7), 16);
        v128.store(q, i32x4.shuffle(e, f, 0, 1, 4, 5), 32);
        v128.store(q, i32x4.shuffle(e, f, 2, 3, 6, 7), 48);
      }
    }
  }
}
