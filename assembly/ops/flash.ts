// Flash-attention style attention over the paged KV cache, for prefill chunks: a tile of query
// tokens, for the query heads of one KV head together, walks the K and V pages of the sequence once
// with an online softmax (flash attention, https://arxiv.org/abs/2205.14135), where
// attention_paged_* (attention.ts) reads every K and V row once per query token. Same arguments and
// layout as attention_paged_* (see attention.ts): token t of the tile sits at position pos0 + t and
// attends to positions 0 .. pos0 + t; position j lives in page table[j / pageSize]; q and out are
// nTok rows of qStride floats, head h at float offset h*headDim; only heads [headStart, headEnd) are
// computed. out must not alias q (rows are written after all blocks are done, but the f32 kernel
// reads the query rows in place for every block).
//
// Per query row (token, head), over the keys in blocks of BLOCK positions (positions [0, 64),
// [64, 128), ...: the blocks depend on positions only, never on the page size or table, the tile or
// the head run; a block that spans pages is gathered into the scratch first):
//
//   s_j  = (q · k_j) · scale                 for the block's keys j <= pos0 + t (later ones: masked)
//   m'   = max(m, max_j s_j); if m' > m: acc *= exp(m - m'), sum *= exp(m - m')  (m starts at -inf)
//   p_j  = exp(s_j - m'), sum += Σ_j p_j (in f64), acc += Σ_j p_j · v_j (in f32, key order)
//   out  = acc · (float)(1 / sum)
//
// so a row's result depends only on its own query and the keys: it is the same whichever tile or
// head run computes it, whatever the pages, and the same for a prompt run in one chunk or in several.
// Against llama.cpp's non-flash attention (attention_paged_*) it differs by f32 rounding only.
//
// Cache formats, as ggml_compute_forward_flash_attn_ext_f16 (ggml-cpu/ops.cpp) converts them:
//   f32:  everything in f32.
//   f16:  q is rounded to f16 before K·q (the f16 K's vec_dot_type); K and V rows are widened to f32
//         exactly, once per block for the whole tile. llama.cpp's flash path keeps the probabilities
//         p in f32 (not rounded to f16, unlike its non-flash V·p) and does the same here, but it
//         accumulates V·p in an f16 vector (VKQ16, ggml_vec_mad_f16); this kernel accumulates in f32,
//         which is more exact (llama.cpp's rounding of the accumulator is an artefact of its f16
//         SIMD, and would cost a conversion per key here).
//   q8_0: q is quantized to q8_0 and K·q is the integer q8_0·q8_0 dot (ggml_vec_dot_q8_0_q8_0); V
//         rows are dequantized to f32 (q·d, exact) and accumulated in f32, as llama.cpp's flash path.
//   headDim must be a multiple of 32 for q8_0, and of 4 for all formats.
//
// Scratch (per calling thread), R = (query heads of one KV head in the call) × nTok rows:
//   R × headDim floats   the converted queries (q8_0 blocks fit in the space of headDim floats)
//   R × headDim floats   the output accumulators
//   R × 4 floats         per row: the running max (f32), padding, the running sum (f64)
//   2 × BLOCK floats     two rows' scores / probabilities for a block
//   2 × BLOCK × headDim floats   a block of K and of V widened to f32 (f16, q8_0 V), or gathered (a block over pages)
// i.e. 4 * (R * (2 * headDim + 4) + BLOCK * (2 + 2 * headDim)) bytes, 16-byte aligned.
import { quantize_q8_0 } from "../quants/activations";
import { f16_gather4, f16_to_f32, f16x4_hi_to_f32x4, f32_to_f16, i32x4_hsum, i32x4_hsum4, Q8_0_BYTES, QK } from "../quants/common";
import { expNeg, expNeg4, hsum4, hsum4x4, maxOf } from "./math";

/** Keys per block (the last one of a row: fewer). Blocks of 16 (a page of the default size) spent a
 *  sixth of the time in the per-block steps (softmax, reloading the accumulators). */
const BLOCK: i32 = 64;

/** scores[j] = (q · k_j) · scale for the n keys at kBase (stride bytes apart, f32 rows); four keys at a
 *  time, each reduced by the same additions as one key alone (hsum4x4 / hsum4). */
@inline function scoresF32(qRow: usize, kBase: usize, stride: usize, n: i32, headDim: i32, scale: f32, scores: usize): void {
  const vscale = f32x4.splat(scale);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const k0 = kBase + <usize>j * stride;
    const k1 = k0 + stride;
    const k2 = k1 + stride;
    const k3 = k2 + stride;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    for (let d = 0; d < headDim; d += 4) {
      const o = <usize>d << 2;
      const qv = v128.load(qRow + o);
      a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(k0 + o)));
      a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(k1 + o)));
      a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(k2 + o)));
      a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(k3 + o)));
    }
    v128.store(scores + (<usize>j << 2), f32x4.mul(hsum4x4(a0, a1, a2, a3), vscale));
  }
  for (; j < n; j++) {
    const k0 = kBase + <usize>j * stride;
    let a0 = f32x4.splat(0);
    for (let d = 0; d < headDim; d += 4) {
      const o = <usize>d << 2;
      a0 = f32x4.add(a0, f32x4.mul(v128.load(qRow + o), v128.load(k0 + o)));
    }
    store<f32>(scores + (<usize>j << 2), hsum4(a0) * scale);
  }
}

/** Σ qs_k · qs_q over one q8_0 block pair as four i32 lanes; q's halves come pre-extended to i16. */
@inline function blockDotQ8(kb: usize, qLo0: v128, qHi0: v128, qLo1: v128, qHi1: v128): v128 {
  const k0 = v128.load(kb, 2);
  const k1 = v128.load(kb, 18);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(k0), qLo0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(k0), qHi0)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(k1), qLo1), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(k1), qHi1)),
  );
}

/** scores[j] = (Σ_blocks fp16(d_k)·fp16(d_q) · Σ qs_k·qs_q) · scale (ggml_vec_dot_q8_0_q8_0) for the
 *  n q8_0 keys at kBase; qq is the query row in q8_0. */
@inline function scoresQ8_0(qq: usize, kBase: usize, stride: usize, n: i32, headDim: i32, scale: f32, scores: usize): void {
  const nb = headDim / QK;
  const vscale = f32x4.splat(scale);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const k0 = kBase + <usize>j * stride;
    const k1 = k0 + stride;
    const k2 = k1 + stride;
    const k3 = k2 + stride;
    let acc = f32x4.splat(0);
    for (let b = 0; b < nb; b++) {
      const ob = <usize>b * Q8_0_BYTES;
      const qb = qq + ob;
      const q0 = v128.load(qb, 2);
      const q1 = v128.load(qb, 18);
      const qLo0 = i16x8.extend_low_i8x16_s(q0), qHi0 = i16x8.extend_high_i8x16_s(q0);
      const qLo1 = i16x8.extend_low_i8x16_s(q1), qHi1 = i16x8.extend_high_i8x16_s(q1);
      const isum = i32x4_hsum4(
        blockDotQ8(k0 + ob, qLo0, qHi0, qLo1, qHi1), blockDotQ8(k1 + ob, qLo0, qHi0, qLo1, qHi1),
        blockDotQ8(k2 + ob, qLo0, qHi0, qLo1, qHi1), blockDotQ8(k3 + ob, qLo0, qHi0, qLo1, qHi1));
      const dk = f16_gather4(k0 + ob, stride);
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(dk, f32x4.splat(f16_to_f32(load<u16>(qb))))));
    }
    v128.store(scores + (<usize>j << 2), f32x4.mul(acc, vscale));
  }
  for (; j < n; j++) {
    const k0 = kBase + <usize>j * stride;
    let acc: f32 = 0;
    for (let b = 0; b < nb; b++) {
      const ob = <usize>b * Q8_0_BYTES;
      const qb = qq + ob;
      const q0 = v128.load(qb, 2);
      const q1 = v128.load(qb, 18);
      const isum = i32x4_hsum(blockDotQ8(k0 + ob,
        i16x8.extend_low_i8x16_s(q0), i16x8.extend_high_i8x16_s(q0),
        i16x8.extend_low_i8x16_s(q1), i16x8.extend_high_i8x16_s(q1)));
      acc += <f32>isum * (f16_to_f32(load<u16>(k0 + ob)) * f16_to_f32(load<u16>(qb)));
    }
    store<f32>(scores + (<usize>j << 2), acc * scale);
  }
}

/** n rows of headDim halves (stride bytes apart) widened to f32, exactly, into dst (rows of headDim floats). */
@inline function widenF16(src: usize, stride: usize, n: i32, headDim: i32, dst: usize): void {
  for (let j = 0; j < n; j++) {
    const s = src + <usize>j * stride;
    const d0 = dst + (<usize>(j * headDim) << 2);
    for (let d = 0; d < headDim; d += 4) {
      v128.store(d0 + (<usize>d << 2), f16x4_hi_to_f32x4(i32x4.shl(v128.load16x4_u(s + (<usize>d << 1)), 16)));
    }
  }
}

/** Sixteen signed bytes to four f32x4 (bytes 0-3, 4-7, 8-11, 12-15). */
@inline function i8x16ToF32(x: v128, part: i32): v128 {
  const h = part < 2 ? i16x8.extend_low_i8x16_s(x) : i16x8.extend_high_i8x16_s(x);
  return f32x4.convert_i32x4_s((part & 1) == 0 ? i32x4.extend_low_i16x8_s(h) : i32x4.extend_high_i16x8_s(h));
}

/** n q8_0 rows of headDim values (stride bytes apart) dequantized to f32 (q·d, exact) into dst. */
@inline function dequantQ8_0(src: usize, stride: usize, n: i32, headDim: i32, dst: usize): void {
  const nb = headDim / QK;
  for (let j = 0; j < n; j++) {
    const s = src + <usize>j * stride;
    const d0 = dst + (<usize>(j * headDim) << 2);
    for (let b = 0; b < nb; b++) {
      const vb = s + <usize>b * Q8_0_BYTES;
      const o = d0 + (<usize>(b * QK) << 2);
      const dv = f32x4.splat(f16_to_f32(load<u16>(vb)));
      const x0 = v128.load(vb, 2);
      const x1 = v128.load(vb, 18);
      v128.store(o, f32x4.mul(i8x16ToF32(x0, 0), dv));
      v128.store(o, f32x4.mul(i8x16ToF32(x0, 1), dv), 16);
      v128.store(o, f32x4.mul(i8x16ToF32(x0, 2), dv), 32);
      v128.store(o, f32x4.mul(i8x16ToF32(x0, 3), dv), 48);
      v128.store(o, f32x4.mul(i8x16ToF32(x1, 0), dv), 64);
      v128.store(o, f32x4.mul(i8x16ToF32(x1, 1), dv), 80);
      v128.store(o, f32x4.mul(i8x16ToF32(x1, 2), dv), 96);
      v128.store(o, f32x4.mul(i8x16ToF32(x1, 3), dv), 112);
    }
  }
}

/**
 * The online-softmax step of one row over a block of n scores at sc (overwritten by the
 * probabilities): the row's running max and sum at stat (f32 at +0, f64 at +8) and its accumulators
 * (headDim floats at acc) are rescaled when the block raises the max.
 */
@inline function softmaxStep(sc: usize, n: i32, stat: usize, acc: usize, headDim: i32): void {
  const bm = maxOf(sc, n);
  let m = load<f32>(stat);
  let sum = load<f64>(stat, 8);
  if (bm > m) {
    const ms = expNeg(m - bm); // 0 for the first block (m = -inf); the accumulators start at 0
    const vms = f32x4.splat(ms);
    for (let d = 0; d < headDim; d += 4) {
      const o = acc + (<usize>d << 2);
      v128.store(o, f32x4.mul(v128.load(o), vms));
    }
    sum *= <f64>ms;
    m = bm;
    store<f32>(stat, m);
  }
  const vm = f32x4.splat(m);
  let sum2 = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const p = expNeg4(f32x4.sub(v128.load(sc + (<usize>i << 2)), vm));
    v128.store(sc + (<usize>i << 2), p);
    sum2 = f64x2.add(sum2, f64x2.promote_low_f32x4(p));
    sum2 = f64x2.add(sum2, f64x2.promote_low_f32x4(v128.shuffle<f32>(p, p, 2, 3, 0, 1)));
  }
  let bs: f64 = f64x2.extract_lane(sum2, 0) + f64x2.extract_lane(sum2, 1);
  for (; i < n; i++) {
    const p = expNeg(load<f32>(sc + (<usize>i << 2)) - m);
    store<f32>(sc + (<usize>i << 2), p);
    bs += <f64>p;
  }
  store<f64>(stat, sum + bs, 8);
}

/** acc[d] += Σ_j p_j · v_j[d] for the n f32 rows at vBase (stride bytes apart), sixteen dims at a
 *  time, each lane summing in key order. */
@inline function mixAcc(p: usize, vBase: usize, stride: usize, n: i32, headDim: i32, acc: usize): void {
  let d = 0;
  for (; d + 16 <= headDim; d += 16) {
    const o = acc + (<usize>d << 2);
    let a0 = v128.load(o), a1 = v128.load(o, 16), a2 = v128.load(o, 32), a3 = v128.load(o, 48);
    let vr = vBase + (<usize>d << 2);
    for (let j = 0; j < n; j++) {
      const pj = v128.load32_splat(p + (<usize>j << 2));
      a0 = f32x4.add(a0, f32x4.mul(pj, v128.load(vr)));
      a1 = f32x4.add(a1, f32x4.mul(pj, v128.load(vr, 16)));
      a2 = f32x4.add(a2, f32x4.mul(pj, v128.load(vr, 32)));
      a3 = f32x4.add(a3, f32x4.mul(pj, v128.load(vr, 48)));
      vr += stride;
    }
    v128.store(o, a0);
    v128.store(o, a1, 16);
    v128.store(o, a2, 32);
    v128.store(o, a3, 48);
  }
  if (d < headDim) mixTail(p, vBase, stride, n, d, headDim, acc);
}

/** scoresF32 for two query rows at once (each K load serves both): every score is computed by the
 *  same additions as scoresF32 computes it, so pairing never changes a bit. */
@inline function scores2F32(qa: usize, qb: usize, kBase: usize, stride: usize, n: i32, headDim: i32, scale: f32,
  sa: usize, sb: usize): void {
  const vscale = f32x4.splat(scale);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const k0 = kBase + <usize>j * stride;
    const k1 = k0 + stride;
    const k2 = k1 + stride;
    const k3 = k2 + stride;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
    for (let d = 0; d < headDim; d += 4) {
      const o = <usize>d << 2;
      const qva = v128.load(qa + o);
      const qvb = v128.load(qb + o);
      const kv0 = v128.load(k0 + o), kv1 = v128.load(k1 + o), kv2 = v128.load(k2 + o), kv3 = v128.load(k3 + o);
      a0 = f32x4.add(a0, f32x4.mul(qva, kv0));
      a1 = f32x4.add(a1, f32x4.mul(qva, kv1));
      a2 = f32x4.add(a2, f32x4.mul(qva, kv2));
      a3 = f32x4.add(a3, f32x4.mul(qva, kv3));
      b0 = f32x4.add(b0, f32x4.mul(qvb, kv0));
      b1 = f32x4.add(b1, f32x4.mul(qvb, kv1));
      b2 = f32x4.add(b2, f32x4.mul(qvb, kv2));
      b3 = f32x4.add(b3, f32x4.mul(qvb, kv3));
    }
    v128.store(sa + (<usize>j << 2), f32x4.mul(hsum4x4(a0, a1, a2, a3), vscale));
    v128.store(sb + (<usize>j << 2), f32x4.mul(hsum4x4(b0, b1, b2, b3), vscale));
  }
  if (j < n) {
    const k = kBase + <usize>j * stride;
    scoresF32(qa, k, stride, n - j, headDim, scale, sa + (<usize>j << 2));
    scoresF32(qb, k, stride, n - j, headDim, scale, sb + (<usize>j << 2));
  }
}

/** mixAcc for two rows at once over the same n keys (each V load serves both); each accumulator
 *  lane still adds its keys in key order, so pairing never changes a bit. */
@inline function mix2Acc(pa: usize, pb: usize, vBase: usize, stride: usize, n: i32, headDim: i32, acca: usize, accb: usize): void {
  let d = 0;
  for (; d + 16 <= headDim; d += 16) {
    const oa = acca + (<usize>d << 2);
    const ob = accb + (<usize>d << 2);
    let a0 = v128.load(oa), a1 = v128.load(oa, 16), a2 = v128.load(oa, 32), a3 = v128.load(oa, 48);
    let b0 = v128.load(ob), b1 = v128.load(ob, 16), b2 = v128.load(ob, 32), b3 = v128.load(ob, 48);
    let vr = vBase + (<usize>d << 2);
    for (let j = 0; j < n; j++) {
      const o = <usize>j << 2;
      const pja = v128.load32_splat(pa + o);
      const pjb = v128.load32_splat(pb + o);
      const v0 = v128.load(vr), v1 = v128.load(vr, 16), v2 = v128.load(vr, 32), v3 = v128.load(vr, 48);
      a0 = f32x4.add(a0, f32x4.mul(pja, v0));
      a1 = f32x4.add(a1, f32x4.mul(pja, v1));
      a2 = f32x4.add(a2, f32x4.mul(pja, v2));
      a3 = f32x4.add(a3, f32x4.mul(pja, v3));
      b0 = f32x4.add(b0, f32x4.mul(pjb, v0));
      b1 = f32x4.add(b1, f32x4.mul(pjb, v1));
      b2 = f32x4.add(b2, f32x4.mul(pjb, v2));
      b3 = f32x4.add(b3, f32x4.mul(pjb, v3));
      vr += stride;
    }
    v128.store(oa, a0); v128.store(oa, a1, 16); v128.store(oa, a2, 32); v128.store(oa, a3, 48);
    v128.store(ob, b0); v128.store(ob, b1, 16); v128.store(ob, b2, 32); v128.store(ob, b3, 48);
  }
  if (d < headDim) {
    // the dims past the last multiple of 16, one row at a time (mixAcc's 4-dim loop)
    mixTail(pa, vBase, stride, n, d, headDim, acca);
    mixTail(pb, vBase, stride, n, d, headDim, accb);
  }
}

/** mixAcc's loop over dims [from, headDim) four at a time. */
@inline function mixTail(p: usize, vBase: usize, stride: usize, n: i32, from: i32, headDim: i32, acc: usize): void {
  for (let d = from; d < headDim; d += 4) {
    const o = acc + (<usize>d << 2);
    let a0 = v128.load(o);
    let vr = vBase + (<usize>d << 2);
    for (let j = 0; j < n; j++) {
      a0 = f32x4.add(a0, f32x4.mul(v128.load32_splat(p + (<usize>j << 2)), v128.load(vr)));
      vr += stride;
    }
    v128.store(o, a0);
  }
}

// The per-format steps (see the cache formats at the top of this file). kind: 0 f32, 1 f16, 2 q8_0.
/** Byte offset, in its pool, of position j's row (all KV heads) through the page table. */
@inline function slotAt(table: usize, j: i32, pageSize: i32, pageBytes: usize, stride: usize): usize {
  const page = j / pageSize;
  return <usize>load<i32>(table + (<usize>page << 2)) * pageBytes + <usize>(j - page * pageSize) * stride;
}

@final class FlashF32 {
  @inline kind(): i32 { return 0; }
  @inline headBytes(g: i32, headDim: i32): usize { return <usize>g * <usize>headDim << 2; }
}
@final class FlashF16 {
  @inline kind(): i32 { return 1; }
  @inline headBytes(g: i32, headDim: i32): usize { return <usize>g * <usize>headDim << 1; }
}
@final class FlashQ8_0 {
  @inline kind(): i32 { return 2; }
  @inline headBytes(g: i32, headDim: i32): usize { return <usize>g * <usize>(headDim / QK) * Q8_0_BYTES; }
}

@inline function flashPaged<F>(
  q: usize, kPool: usize, vPool: usize, table: usize, pageSize: i32, out: usize, scratch: usize,
  nTok: i32, pos0: i32, nHeads: i32, nKVHeads: i32, headDim: i32,
  qStride: i32, kvRowBytes: i32, scale: f32, headStart: i32, headEnd: i32,
): void {
  const f = changetype<F>(0);
  const kind = f.kind();
  const group = nHeads / nKVHeads;
  const stride = <usize>kvRowBytes;
  const pageBytes = <usize>pageSize * stride;
  const rowFloatsBytes = <usize>headDim << 2;
  const nPos = pos0 + nTok;
  for (let h0 = headStart; h0 < headEnd;) {
    const g = h0 / group;
    const h1 = min(headEnd, (g + 1) * group); // the heads of KV head g
    const hb = f.headBytes(g, headDim);
    const rows = (h1 - h0) * nTok;
    const qcBase = scratch;
    const accBase = qcBase + <usize>rows * rowFloatsBytes;
    const statBase = accBase + <usize>rows * rowFloatsBytes;
    const sc = statBase + (<usize>rows << 4);
    const sc2 = sc + (<usize>BLOCK << 2);
    const kf = sc2 + (<usize>BLOCK << 2);
    const vf = kf + <usize>BLOCK * rowFloatsBytes;
    memory.fill(accBase, 0, <usize>rows * rowFloatsBytes);
    for (let r = 0; r < rows; r++) {
      store<f32>(statBase + (<usize>r << 4), -Infinity);
      store<f64>(statBase + (<usize>r << 4), 0, 8);
    }
    // row r = (h - h0) * nTok + t
    for (let h = h0; h < h1; h++) {
      for (let t = 0; t < nTok; t++) {
        const qRow = q + ((<usize>t * <usize>qStride + <usize>h * <usize>headDim) << 2);
        const qc = qcBase + <usize>((h - h0) * nTok + t) * rowFloatsBytes;
        if (kind == 1) {
          for (let d = 0; d < headDim; d++) {
            store<f32>(qc + (<usize>d << 2), f16_to_f32(f32_to_f16(load<f32>(qRow + (<usize>d << 2)))));
          }
        } else if (kind == 2) {
          quantize_q8_0(qRow, qc, headDim);
        }
      }
    }
    const keyBytes = f.headBytes(1, headDim); // one position's K (or V) of one KV head
    for (let j0 = 0; j0 < nPos;) {
      // a block: positions [j0, j0 + b), j0 a multiple of BLOCK (the blocks depend on positions only,
      // never on the page size, the table, the tile or the head run)
      const b = min(BLOCK, nPos - j0);
      const at = slotAt(table, j0, pageSize, pageBytes, stride) + hb;
      let kBase = kPool + at, kStride = stride, vBase = vPool + at, vStride = stride;
      if (j0 % pageSize + b > pageSize) {
        // the block spans pages: its rows gathered into the scratch, one position after the other
        // (K as stored, f16 K widened; V as the one-page path has it: f32, or widened, or dequantized)
        for (let j = 0; j < b; j++) {
          const src = slotAt(table, j0 + j, pageSize, pageBytes, stride) + hb;
          const dst = <usize>j * rowFloatsBytes;
          if (kind == 1) widenF16(kPool + src, stride, 1, headDim, kf + dst);
          else memory.copy(kf + <usize>j * keyBytes, kPool + src, keyBytes);
          if (kind == 0) memory.copy(vf + dst, vPool + src, rowFloatsBytes);
          else if (kind == 1) widenF16(vPool + src, stride, 1, headDim, vf + dst);
          else dequantQ8_0(vPool + src, stride, 1, headDim, vf + dst);
        }
        kBase = kf; kStride = kind == 1 ? rowFloatsBytes : keyBytes;
        vBase = vf; vStride = rowFloatsBytes;
      } else if (kind == 1) {
        widenF16(kBase, stride, b, headDim, kf);
        widenF16(vBase, stride, b, headDim, vf);
        kBase = kf; kStride = rowFloatsBytes; vBase = vf; vStride = rowFloatsBytes;
      } else if (kind == 2) {
        dequantQ8_0(vBase, stride, b, headDim, vf);
        vBase = vf; vStride = rowFloatsBytes;
      }
      for (let h = h0; h < h1; h++) {
        // Rows two at a time (tokens t and t + 1 of head h: the second sees the same keys and at
        // most one more); computed by the same additions as one row at a time. An odd tile's last
        // token comes after the heads, two heads at a time.
        let t = 0;
        for (; t + 2 <= nTok; t += 2) {
          const na = min(b, pos0 + t + 1 - j0); // causal: the keys this row sees in the block
          const nb = min(b, pos0 + t + 2 - j0);
          if (nb <= 0) continue;
          const r = (h - h0) * nTok + t;
          const qa = kind == 0
            ? q + ((<usize>t * <usize>qStride + <usize>h * <usize>headDim) << 2)
            : qcBase + <usize>r * rowFloatsBytes;
          const qb = kind == 0 ? qa + (<usize>qStride << 2) : qa + rowFloatsBytes;
          const acca = accBase + <usize>r * rowFloatsBytes;
          const accb = acca + rowFloatsBytes;
          const m = max(na, 0);
          if (kind == 2) {
            if (m > 0) scoresQ8_0(qa, kBase, kStride, m, headDim, scale, sc);
            scoresQ8_0(qb, kBase, kStride, nb, headDim, scale, sc2);
          } else {
            if (m > 0) scores2F32(qa, qb, kBase, kStride, m, headDim, scale, sc, sc2);
            if (nb > m) scoresF32(qb, kBase + <usize>m * kStride, kStride, nb - m, headDim, scale, sc2 + (<usize>m << 2));
          }
          if (m > 0) softmaxStep(sc, m, statBase + (<usize>r << 4), acca, headDim);
          softmaxStep(sc2, nb, statBase + (<usize>(r + 1) << 4), accb, headDim);
          if (m > 0) mix2Acc(sc, sc2, vBase, vStride, m, headDim, acca, accb);
          if (nb > m) mixAcc(sc2 + (<usize>m << 2), vBase + <usize>m * vStride, vStride, nb - m, headDim, accb);
        }
      }
      if (nTok & 1) {
        // The last token of an odd tile (a decode token: the whole tile) for two heads at a time:
        // both rows see the same keys; computed by the same additions as one row at a time.
        const t = nTok - 1;
        const n = min(b, pos0 + t + 1 - j0);
        if (n > 0) {
          let h = h0;
          for (; h + 2 <= h1; h += 2) {
            const r = (h - h0) * nTok + t;
            const r2 = r + nTok; // head h + 1, token t
            const qa = kind == 0
              ? q + ((<usize>t * <usize>qStride + <usize>h * <usize>headDim) << 2)
              : qcBase + <usize>r * rowFloatsBytes;
            const qb = kind == 0 ? qa + (<usize>headDim << 2) : qcBase + <usize>r2 * rowFloatsBytes;
            const acca = accBase + <usize>r * rowFloatsBytes;
            const accb = accBase + <usize>r2 * rowFloatsBytes;
            if (kind == 2) {
              scoresQ8_0(qa, kBase, kStride, n, headDim, scale, sc);
              scoresQ8_0(qb, kBase, kStride, n, headDim, scale, sc2);
            } else {
              scores2F32(qa, qb, kBase, kStride, n, headDim, scale, sc, sc2);
            }
            softmaxStep(sc, n, statBase + (<usize>r << 4), acca, headDim);
            softmaxStep(sc2, n, statBase + (<usize>r2 << 4), accb, headDim);
            mix2Acc(sc, sc2, vBase, vStride, n, headDim, acca, accb);
          }
          if (h < h1) {
            const r = (h - h0) * nTok + t;
            const qc = kind == 0
              ? q + ((<usize>t * <usize>qStride + <usize>h * <usize>headDim) << 2)
              : qcBase + <usize>r * rowFloatsBytes;
            const acc = accBase + <usize>r * rowFloatsBytes;
            if (kind == 2) scoresQ8_0(qc, kBase, kStride, n, headDim, scale, sc);
            else scoresF32(qc, kBase, kStride, n, headDim, scale, sc);
            softmaxStep(sc, n, statBase + (<usize>r << 4), acc, headDim);
            mixAcc(sc, vBase, vStride, n, headDim, acc);
          }
        }
      }
      j0 += b;
    }
    for (let h = h0; h < h1; h++) {
      for (let t = 0; t < nTok; t++) {
        const r = (h - h0) * nTok + t;
        const acc = accBase + <usize>r * rowFloatsBytes;
        const inv = <f32>(1.0 / load<f64>(statBase + (<usize>r << 4), 8));
        const vinv = f32x4.splat(inv);
        const o = out + ((<usize>t * <usize>qStride + <usize>h * <usize>headDim) << 2);
        for (let d = 0; d < headDim; d += 4) v128.store(o + (<usize>d << 2), f32x4.mul(v128.load(acc + (<usize>d << 2)), vinv));
      }
    }
    h0 = h1;
  }
}

/** Flash attention with a paged f32 KV cache; see the top of this file. */
export function flash_attention_paged_f32(
  q: usize, kPool: usize, vPool: usize, table: usize, pageSize: i32, out: usize, scratch: usize,
  nTok: i32, pos0: i32, nHeads: i32, nKVHeads: i32, headDim: i32,
  qStride: i32, kvRowBytes: i32, scale: f32, headStart: i32, headEnd: i32,
): void {
  flashPaged<FlashF32>(q, kPool, vPool, table, pageSize, out, scratch, nTok, pos0, nHeads, nKVHeads, headDim,
    qStride, kvRowBytes, scale, headStart, headEnd);
}

/** Flash attention with a paged f16 KV cache; see the top of this file. */
export function flash_attention_paged_f16(
  q: usize, kPool: usize, vPool: usize, table: usize, pageSize: i32, out: usize, scratch: usize,
  nTok: i32, pos0: i32, nHeads: i32, nKVHeads: i32, headDim: i32,
  qStride: i32, kvRowBytes: i32, scale: f32, headStart: i32, headEnd: i32,
): void {
  flashPaged<FlashF16>(q, kPool, vPool, table, pageSize, out, scratch, nTok, pos0, nHeads, nKVHeads, headDim,
    qStride, kvRowBytes, scale, headStart, headEnd);
}

/** Flash attention with a paged q8_0 KV cache (headDim a multiple of 32); see the top of this file. */
export function flash_attention_paged_q8_0(
  q: usize, kPool: usize, vPool: usize, table: usize, pageSize: i32, out: usize, scratch: usize,
  nTok: i32, pos0: i32, nHeads: i32, nKVHeads: i32, headDim: i32,
  qStride: i32, kvRowBytes: i32, scale: f32, headStart: i32, headEnd: i32,
): void {
  flashPaged<FlashQ8_0>(q, kPool, vPool, table, pageSize, out, scratch, nTok, pos0, nHeads, nKVHeads, headDim,
    qStride, kvRowBytes, scale, headStart, headEnd);
}
