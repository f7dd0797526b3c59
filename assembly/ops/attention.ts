// Grouped-query attention of one sequence over its KV cache, for a decode token (nTok = 1) or a causal
// prefill chunk, with llama.cpp's non-flash semantics (ggml_mul_mat for K·q, ggml_soft_max_ext,
// ggml_mul_mat for V·p):
//
//   s_j = (q · k_j) · scale             for the positions j = 0 .. pos0 + t (causal: later ones are
//                                       masked with -inf in llama.cpp, i.e. contribute exp(-inf) = 0)
//   p   = softmax(s)                    max subtracted, the sum in f64, times (float)(1/sum)
//   out = Σ_j p_j · v_j
//
// The KV cache of the layer is one contiguous range per sequence: position p, KV head g sits at byte
// `k + p*kvStride + g*headDim*elemSize` (elemSize 4 for f32, 2 for f16, 34/32 for q8_0), and the same
// for v. The K and V of the chunk's own tokens (positions pos0 .. pos0+nTok-1) must already be stored.
// Query head h reads KV head h / (nHeads / nKVHeads).
//
// q and out are nTok rows of qStride floats, head h at float offset h*headDim; out may alias q.
// Only heads [headStart, headEnd) are computed, so that workers can split the heads.
// scratch (per calling thread): (headDim + pos0 + nTok) floats — the query row converted to the
// cache's dot format, then the scores.
//
// Cache formats, mirroring what ggml does when the cache has that type:
//   f32:  everything in f32.
//   f16:  ggml_mul_mat converts the f32 operand to the f16 weight's vec_dot_type, so q is rounded to
//         f16 before K·q and the probabilities p are rounded to f16 before V·p (products are exact
//         in f32, sums in f32).
//   q8_0: q is quantized to q8_0 (quantize_q8_0, the activations' converter) and K·q is the
//         integer q8_0·q8_0 dot; V rows are dequantized to f32 and accumulated in f32 (llama.cpp
//         only allows a quantized V with flash attention, which does exactly this).
//   headDim must be a multiple of 32 for q8_0; f32 and f16 take any headDim.
//
// Paged KV cache (attention_paged_*, kv_store_paged), for continuous batching: the layer's cache is a
// pool of pages of pageSize positions each; position-in-page i of page p, KV head g sits at byte
// `kPool + (p*pageSize + i)*kvRowBytes + g*headDim*elemSize` (the same for vPool). A sequence's block
// table is an i32 array at `table`: its position j lives in page table[j / pageSize] at
// i = j % pageSize. The paged kernels take the same arguments as the contiguous ones, with
// (kPool, vPool, table, pageSize) for (k, v) and kvRowBytes for kvStride, and give bit-identical
// results for any placement of the pages: the keys are walked in runs (one run per page; the
// contiguous kernels are one run of all keys) through the same code, and
//   - a key's score never depends on its neighbours: the four-key SIMD body reduces each key with the
//     same additions in the same order as the one-key tail (hsum4x4 / hsum4, i32 block sums, scale
//     products in the same order), so where a run starts or ends does not matter;
//   - the V accumulation sums every output lane over the keys in key order, one key at a time (it
//     vectorizes over dims, not keys); a later run starts from the f32 partial sums the previous run
//     stored in out, so the additions are exactly those of the contiguous kernel. (out may still
//     alias q: a query row is fully read, into the scores, before its first V run writes it.)
// The table must hold ceil((pos0 + nTok) / pageSize) entries; nothing is bounds-checked.
//
// The contiguous kernels (attention_f32, attention_f16, attention_q8_0) are the paged ones' reference
// in the tests and nothing else: they live in assembly/test/attention.ts, in build/kernels-test.wasm
// only. The helpers they share with the paged kernels are exported from here for them (assembly/
// index.ts names its exports, so they are not kernel exports).
import { convert_f32_f16, quantize_q8_0 } from "../quants/activations";
import { f16_gather4, f16_to_f32, f16x4_hi_to_f32x4, f16x4_hi_to_f32x4_finite, f32_to_f16, i32x4_hsum, i32x4_hsum4, Q8_0_BYTES, QK } from "../quants/common";
import { hsum4, hsum4x4, softmaxRow } from "./math";

// ---------------------------------------------------------------------------------------------- f32

/** scores[j] = (q · k_j) · scale for j < n; four keys at a time, reduced as hsum4 (see math.ts). */
@inline export function scoresF32(qRow: usize, kHead: usize, kvStride: usize, n: i32, headDim: i32, scale: f32, scores: usize): void {
  const vscale = f32x4.splat(scale);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const k0 = kHead + <usize>j * kvStride;
    const k1 = k0 + kvStride;
    const k2 = k1 + kvStride;
    const k3 = k2 + kvStride;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let d = 0;
    for (; d + 4 <= headDim; d += 4) {
      const o = <usize>d << 2;
      const qv = v128.load(qRow + o);
      a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(k0 + o)));
      a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(k1 + o)));
      a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(k2 + o)));
      a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(k3 + o)));
    }
    let s = hsum4x4(a0, a1, a2, a3);
    if (d < headDim) {
      s = f32x4.add(s, f32x4(
        dotTailF32(qRow, k0, d, headDim), dotTailF32(qRow, k1, d, headDim),
        dotTailF32(qRow, k2, d, headDim), dotTailF32(qRow, k3, d, headDim)));
    }
    v128.store(scores + (<usize>j << 2), f32x4.mul(s, vscale));
  }
  for (; j < n; j++) {
    const k0 = kHead + <usize>j * kvStride;
    let a0 = f32x4.splat(0);
    let d = 0;
    for (; d + 4 <= headDim; d += 4) {
      const o = <usize>d << 2;
      a0 = f32x4.add(a0, f32x4.mul(v128.load(qRow + o), v128.load(k0 + o)));
    }
    let s = hsum4(a0);
    if (d < headDim) s += dotTailF32(qRow, k0, d, headDim);
    store<f32>(scores + (<usize>j << 2), s * scale);
  }
}

@inline function dotTailF32(a: usize, b: usize, from: i32, to: i32): f32 {
  let s: f32 = 0;
  for (let d = from; d < to; d++) s += load<f32>(a + (<usize>d << 2)) * load<f32>(b + (<usize>d << 2));
  return s;
}

/**
 * outRow[d] = Σ_j p_j · v_j[d] for the run of n keys at vHead (stride kvStride), sixteen dims at a
 * time; each lane sums in key order, starting from 0 (first) or from outRow (a later run of the same
 * row: the f32 partial sum goes through memory unchanged, so splitting the keys into runs does not
 * change a single addition).
 */
@inline export function mixF32(p: usize, vHead: usize, kvStride: usize, n: i32, headDim: i32, outRow: usize, first: bool): void {
  let d = 0;
  for (; d + 16 <= headDim; d += 16) {
    const o = outRow + (<usize>d << 2);
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    if (!first) { a0 = v128.load(o); a1 = v128.load(o, 16); a2 = v128.load(o, 32); a3 = v128.load(o, 48); }
    let vr = vHead + (<usize>d << 2);
    for (let j = 0; j < n; j++) {
      const pj = f32x4.splat(load<f32>(p + (<usize>j << 2)));
      a0 = f32x4.add(a0, f32x4.mul(pj, v128.load(vr)));
      a1 = f32x4.add(a1, f32x4.mul(pj, v128.load(vr, 16)));
      a2 = f32x4.add(a2, f32x4.mul(pj, v128.load(vr, 32)));
      a3 = f32x4.add(a3, f32x4.mul(pj, v128.load(vr, 48)));
      vr += kvStride;
    }
    v128.store(o, a0);
    v128.store(o, a1, 16);
    v128.store(o, a2, 32);
    v128.store(o, a3, 48);
  }
  for (; d + 4 <= headDim; d += 4) {
    let a0 = first ? f32x4.splat(0) : v128.load(outRow + (<usize>d << 2));
    let vr = vHead + (<usize>d << 2);
    for (let j = 0; j < n; j++) {
      a0 = f32x4.add(a0, f32x4.mul(f32x4.splat(load<f32>(p + (<usize>j << 2))), v128.load(vr)));
      vr += kvStride;
    }
    v128.store(outRow + (<usize>d << 2), a0);
  }
  for (; d < headDim; d++) {
    let a: f32 = first ? 0 : load<f32>(outRow + (<usize>d << 2));
    let vr = vHead + (<usize>d << 2);
    for (let j = 0; j < n; j++) {
      a += load<f32>(p + (<usize>j << 2)) * load<f32>(vr);
      vr += kvStride;
    }
    store<f32>(outRow + (<usize>d << 2), a);
  }
}

// ---------------------------------------------------------------------------------------------- f16

/** The four halves at p as f32x4, exactly. With finite = true, half the work, exact for finite
 *  halves only (an inf or NaN comes out finite): the paged kernels take it for the runs of keys that
 *  specialF16 finds free of them. */
@inline function loadF16x4(p: usize, finite: bool = false): v128 {
  const h = i32x4.shl(v128.load16x4_u(p), 16);
  return finite ? f16x4_hi_to_f32x4_finite(h) : f16x4_hi_to_f32x4(h);
}

/** Whether any of the first `count` halves of the n rows at p (stride bytes apart) is an inf or a
 *  NaN (exponent bits all ones). */
@inline function specialF16(p: usize, stride: usize, n: i32, count: i32): bool {
  const e = i16x8.splat(0x7c00);
  let any = i16x8.splat(0);
  for (let j = 0; j < n; j++) {
    const row = p + <usize>j * stride;
    let d = 0;
    for (; d + 8 <= count; d += 8) any = v128.or(any, i16x8.eq(v128.and(v128.load(row + (<usize>d << 1)), e), e));
    for (; d < count; d++) if ((load<u16>(row + (<usize>d << 1)) & 0x7c00) == 0x7c00) return true;
  }
  return v128.any_true(any);
}

/** dst[d] = f32(f16(src[d])): a query row rounded to f16 as ggml_cpu_fp32_to_fp16 does. */
@inline export function roundRowF16(src: usize, dst: usize, n: i32): void {
  for (let d = 0; d < n; d++) {
    store<f32>(dst + (<usize>d << 2), f16_to_f32(f32_to_f16(load<f32>(src + (<usize>d << 2)))));
  }
}

@inline function dotTailF16(a: usize, kh: usize, from: i32, to: i32): f32 {
  let s: f32 = 0;
  for (let d = from; d < to; d++) s += load<f32>(a + (<usize>d << 2)) * f16_to_f32(load<u16>(kh + (<usize>d << 1)));
  return s;
}

/** scores[j] = (qh · k_j) · scale with qh already rounded to f16 (as f32) and k_j in f16. */
@inline export function scoresF16(qh: usize, kHead: usize, kvStride: usize, n: i32, headDim: i32, scale: f32, scores: usize,
  finite: bool = false): void {
  const vscale = f32x4.splat(scale);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const k0 = kHead + <usize>j * kvStride;
    const k1 = k0 + kvStride;
    const k2 = k1 + kvStride;
    const k3 = k2 + kvStride;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let d = 0;
    for (; d + 4 <= headDim; d += 4) {
      const qv = v128.load(qh + (<usize>d << 2));
      const o = <usize>d << 1;
      a0 = f32x4.add(a0, f32x4.mul(qv, loadF16x4(k0 + o, finite)));
      a1 = f32x4.add(a1, f32x4.mul(qv, loadF16x4(k1 + o, finite)));
      a2 = f32x4.add(a2, f32x4.mul(qv, loadF16x4(k2 + o, finite)));
      a3 = f32x4.add(a3, f32x4.mul(qv, loadF16x4(k3 + o, finite)));
    }
    let s = hsum4x4(a0, a1, a2, a3);
    if (d < headDim) {
      s = f32x4.add(s, f32x4(
        dotTailF16(qh, k0, d, headDim), dotTailF16(qh, k1, d, headDim),
        dotTailF16(qh, k2, d, headDim), dotTailF16(qh, k3, d, headDim)));
    }
    v128.store(scores + (<usize>j << 2), f32x4.mul(s, vscale));
  }
  for (; j < n; j++) {
    const k0 = kHead + <usize>j * kvStride;
    let a0 = f32x4.splat(0);
    let d = 0;
    for (; d + 4 <= headDim; d += 4) {
      a0 = f32x4.add(a0, f32x4.mul(v128.load(qh + (<usize>d << 2)), loadF16x4(k0 + (<usize>d << 1), finite)));
    }
    let s = hsum4(a0);
    if (d < headDim) s += dotTailF16(qh, k0, d, headDim);
    store<f32>(scores + (<usize>j << 2), s * scale);
  }
}

/** outRow[d] (+)= Σ_j p_j · v_j[d] with v in f16 (p already rounded to f16); as mixF32. */
@inline export function mixF16(p: usize, vHead: usize, kvStride: usize, n: i32, headDim: i32, outRow: usize, first: bool,
  finite: bool = false): void {
  let d = 0;
  for (; d + 16 <= headDim; d += 16) {
    const o = outRow + (<usize>d << 2);
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    if (!first) { a0 = v128.load(o); a1 = v128.load(o, 16); a2 = v128.load(o, 32); a3 = v128.load(o, 48); }
    let vr = vHead + (<usize>d << 1);
    for (let j = 0; j < n; j++) {
      const pj = f32x4.splat(load<f32>(p + (<usize>j << 2)));
      a0 = f32x4.add(a0, f32x4.mul(pj, loadF16x4(vr, finite)));
      a1 = f32x4.add(a1, f32x4.mul(pj, loadF16x4(vr + 8, finite)));
      a2 = f32x4.add(a2, f32x4.mul(pj, loadF16x4(vr + 16, finite)));
      a3 = f32x4.add(a3, f32x4.mul(pj, loadF16x4(vr + 24, finite)));
      vr += kvStride;
    }
    v128.store(o, a0);
    v128.store(o, a1, 16);
    v128.store(o, a2, 32);
    v128.store(o, a3, 48);
  }
  for (; d + 4 <= headDim; d += 4) {
    let a0 = first ? f32x4.splat(0) : v128.load(outRow + (<usize>d << 2));
    let vr = vHead + (<usize>d << 1);
    for (let j = 0; j < n; j++) {
      a0 = f32x4.add(a0, f32x4.mul(f32x4.splat(load<f32>(p + (<usize>j << 2))), loadF16x4(vr, finite)));
      vr += kvStride;
    }
    v128.store(outRow + (<usize>d << 2), a0);
  }
  for (; d < headDim; d++) {
    let a: f32 = first ? 0 : load<f32>(outRow + (<usize>d << 2));
    let vr = vHead + (<usize>d << 1);
    for (let j = 0; j < n; j++) {
      a += load<f32>(p + (<usize>j << 2)) * f16_to_f32(load<u16>(vr));
      vr += kvStride;
    }
    store<f32>(outRow + (<usize>d << 2), a);
  }
}

// --------------------------------------------------------------------------------------------- q8_0

/** Σ qs_k · qs_q over one q8_0 block pair as four i32 lanes; q's halves come pre-extended to i16. */
@inline function blockDotQ8(kb: usize, qLo0: v128, qHi0: v128, qLo1: v128, qHi1: v128): v128 {
  const k0 = v128.load(kb, 2);
  const k1 = v128.load(kb, 18);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(k0), qLo0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(k0), qHi0)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(k1), qLo1), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(k1), qHi1)),
  );
}

/**
 * scores[j] = (Σ_blocks fp16(d_k)·fp16(d_q) · Σ qs_k·qs_q) · scale, as ggml_vec_dot_q8_0_q8_0;
 * qq is the query row in q8_0. Four keys at a time: their block sums are reduced into one i32x4.
 */
@inline export function scoresQ8_0(qq: usize, kHead: usize, kvStride: usize, n: i32, headDim: i32, scale: f32, scores: usize): void {
  const nb = headDim / QK;
  const vscale = f32x4.splat(scale);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const k0 = kHead + <usize>j * kvStride;
    const k1 = k0 + kvStride;
    const k2 = k1 + kvStride;
    const k3 = k2 + kvStride;
    let acc = f32x4.splat(0);
    for (let b = 0; b < nb; b++) {
      const ob = <usize>b * Q8_0_BYTES;
      const qb = qq + ob;
      const q0 = v128.load(qb, 2);
      const q1 = v128.load(qb, 18);
      const qLo0 = i16x8.extend_low_i8x16_s(q0), qHi0 = i16x8.extend_high_i8x16_s(q0);
      const qLo1 = i16x8.extend_low_i8x16_s(q1), qHi1 = i16x8.extend_high_i8x16_s(q1);
      const s0 = blockDotQ8(k0 + ob, qLo0, qHi0, qLo1, qHi1);
      const s1 = blockDotQ8(k1 + ob, qLo0, qHi0, qLo1, qHi1);
      const s2 = blockDotQ8(k2 + ob, qLo0, qHi0, qLo1, qHi1);
      const s3 = blockDotQ8(k3 + ob, qLo0, qHi0, qLo1, qHi1);
      const isum = i32x4_hsum4(s0, s1, s2, s3); // lane i: key i's block sum (integers: any order)
      const dq = f16_to_f32(load<u16>(qb));
      const dk = f16_gather4(k0 + ob, kvStride);
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(dk, f32x4.splat(dq))));
    }
    v128.store(scores + (<usize>j << 2), f32x4.mul(acc, vscale));
  }
  for (; j < n; j++) {
    const k0 = kHead + <usize>j * kvStride;
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

/** Sixteen signed bytes to four f32x4 (bytes 0-3, 4-7, 8-11, 12-15). */
@inline function i8x16ToF32(x: v128, part: i32): v128 {
  const h = part < 2 ? i16x8.extend_low_i8x16_s(x) : i16x8.extend_high_i8x16_s(x);
  return f32x4.convert_i32x4_s((part & 1) == 0 ? i32x4.extend_low_i16x8_s(h) : i32x4.extend_high_i16x8_s(h));
}

/** outRow[d] (+)= Σ_j p_j · dequant(v_j)[d], one 32-dim block (eight accumulators) at a time; as mixF32. */
@inline export function mixQ8_0(p: usize, vHead: usize, kvStride: usize, n: i32, headDim: i32, outRow: usize, first: bool): void {
  const nb = headDim / QK;
  for (let b = 0; b < nb; b++) {
    const o = outRow + (<usize>(b * QK) << 2);
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
    if (!first) {
      a0 = v128.load(o); a1 = v128.load(o, 16); a2 = v128.load(o, 32); a3 = v128.load(o, 48);
      a4 = v128.load(o, 64); a5 = v128.load(o, 80); a6 = v128.load(o, 96); a7 = v128.load(o, 112);
    }
    let vb = vHead + <usize>b * Q8_0_BYTES;
    for (let j = 0; j < n; j++) {
      const pj = f32x4.splat(load<f32>(p + (<usize>j << 2)));
      const dv = f32x4.splat(f16_to_f32(load<u16>(vb)));
      const x0 = v128.load(vb, 2);
      const x1 = v128.load(vb, 18);
      // dequantize (q·d is exact in f32), then weight by p, as dequantize_row_q8_0 + ggml_vec_mad_f32
      a0 = f32x4.add(a0, f32x4.mul(f32x4.mul(i8x16ToF32(x0, 0), dv), pj));
      a1 = f32x4.add(a1, f32x4.mul(f32x4.mul(i8x16ToF32(x0, 1), dv), pj));
      a2 = f32x4.add(a2, f32x4.mul(f32x4.mul(i8x16ToF32(x0, 2), dv), pj));
      a3 = f32x4.add(a3, f32x4.mul(f32x4.mul(i8x16ToF32(x0, 3), dv), pj));
      a4 = f32x4.add(a4, f32x4.mul(f32x4.mul(i8x16ToF32(x1, 0), dv), pj));
      a5 = f32x4.add(a5, f32x4.mul(f32x4.mul(i8x16ToF32(x1, 1), dv), pj));
      a6 = f32x4.add(a6, f32x4.mul(f32x4.mul(i8x16ToF32(x1, 2), dv), pj));
      a7 = f32x4.add(a7, f32x4.mul(f32x4.mul(i8x16ToF32(x1, 3), dv), pj));
      vb += kvStride;
    }
    v128.store(o, a0);
    v128.store(o, a1, 16);
    v128.store(o, a2, 32);
    v128.store(o, a3, 48);
    v128.store(o, a4, 64);
    v128.store(o, a5, 80);
    v128.store(o, a6, 96);
    v128.store(o, a7, 112);
  }
}

// -------------------------------------------------------------------------------------------- paged

/** Byte address of the first position of run (page slot) r of a block table. */
@inline function pageAt(pool: usize, table: usize, r: i32, pageBytes: usize): usize {
  return pool + <usize>load<i32>(table + (<usize>r << 2)) * pageBytes;
}

// The paged kernels take the query heads of one KV head together, page by page: each page of K
// (and of V) is read once from memory for all of them and then from L1, instead of once per query
// head (seven times for Qwen2-0.5B, whose 14 heads share 2 KV heads). At 3072 positions the K and V
// of one KV head no longer fit in L2, and re-reading them per query head made attention bound by L3.
// The arithmetic of every (head, token) is the same as one head at a time, in the same order.
// Scratch: group * headDim floats (the converted queries of the group), then group rows of
// pos0 + nTok floats (their scores), group = nHeads / nKVHeads.

/** Byte offset of a query/output row: token t, head h. */
@inline function rowOf(t: i32, h: i32, qStride: i32, headDim: i32): usize {
  return (<usize>t * <usize>qStride + <usize>h * <usize>headDim) << 2;
}

/** The per-format steps of the paged kernels (see the cache formats at the top of this file). */
@final class PagedF32 {
  @inline headBytes(g: i32, headDim: i32): usize { return <usize>g * <usize>headDim << 2; }
  /** Whether scores() takes a converted copy of the query (convert()) rather than the row itself. */
  @inline converts(): bool { return false; }
  @inline convert(qRow: usize, conv: usize, headDim: i32): void {}
  /** Whether a run of keys holds an inf or NaN that a fast conversion would get wrong (f16 only). */
  @inline special(p: usize, stride: usize, n: i32, headDim: i32): bool { return false; }
  @inline scores(qc: usize, kHead: usize, stride: usize, n: i32, headDim: i32, scale: f32, dst: usize, exact: bool): void {
    scoresF32(qc, kHead, stride, n, headDim, scale, dst);
  }
  @inline roundP(): bool { return false; }
  @inline mix(p: usize, vHead: usize, stride: usize, n: i32, headDim: i32, outRow: usize, first: bool, exact: bool): void {
    mixF32(p, vHead, stride, n, headDim, outRow, first);
  }
}

@final class PagedF16 {
  @inline headBytes(g: i32, headDim: i32): usize { return <usize>g * <usize>headDim << 1; }
  @inline converts(): bool { return true; }
  @inline convert(qRow: usize, conv: usize, headDim: i32): void { roundRowF16(qRow, conv, headDim); }
  @inline special(p: usize, stride: usize, n: i32, headDim: i32): bool { return specialF16(p, stride, n, headDim); }
  @inline scores(qc: usize, kHead: usize, stride: usize, n: i32, headDim: i32, scale: f32, dst: usize, exact: bool): void {
    if (exact) scoresF16(qc, kHead, stride, n, headDim, scale, dst);
    else scoresF16(qc, kHead, stride, n, headDim, scale, dst, true);
  }
  @inline roundP(): bool { return true; }
  @inline mix(p: usize, vHead: usize, stride: usize, n: i32, headDim: i32, outRow: usize, first: bool, exact: bool): void {
    if (exact) mixF16(p, vHead, stride, n, headDim, outRow, first);
    else mixF16(p, vHead, stride, n, headDim, outRow, first, true);
  }
}

@final class PagedQ8_0 {
  @inline headBytes(g: i32, headDim: i32): usize { return <usize>g * <usize>(headDim / QK) * Q8_0_BYTES; }
  @inline converts(): bool { return true; }
  @inline convert(qRow: usize, conv: usize, headDim: i32): void { quantize_q8_0(qRow, conv, headDim); }
  @inline special(p: usize, stride: usize, n: i32, headDim: i32): bool { return false; }
  @inline scores(qc: usize, kHead: usize, stride: usize, n: i32, headDim: i32, scale: f32, dst: usize, exact: bool): void {
    scoresQ8_0(qc, kHead, stride, n, headDim, scale, dst);
  }
  @inline roundP(): bool { return false; }
  @inline mix(p: usize, vHead: usize, stride: usize, n: i32, headDim: i32, outRow: usize, first: bool, exact: bool): void {
    mixQ8_0(p, vHead, stride, n, headDim, outRow, first);
  }
}

@inline function attentionPaged<F>(
  q: usize, kPool: usize, vPool: usize, table: usize, pageSize: i32, out: usize, scratch: usize,
  nTok: i32, pos0: i32, nHeads: i32, nKVHeads: i32, headDim: i32,
  qStride: i32, kvRowBytes: i32, scale: f32, headStart: i32, headEnd: i32,
): void {
  const f = changetype<F>(0);
  const group = nHeads / nKVHeads;
  const stride = <usize>kvRowBytes;
  const pageBytes = <usize>pageSize * stride;
  const convBytes = <usize>headDim << 2;
  const scoresBase = scratch + <usize>group * convBytes;
  const rowBytes = <usize>(pos0 + nTok) << 2;
  for (let h0 = headStart; h0 < headEnd;) {
    const g = h0 / group;
    const h1 = min(headEnd, (g + 1) * group); // the heads of KV head g
    const hb = f.headBytes(g, headDim);
    for (let t = 0; t < nTok; t++) {
      const n = pos0 + t + 1;
      // Every head's query is read (into its scores) before any output row is written: out may alias q.
      if (f.converts()) {
        for (let h = h0; h < h1; h++) f.convert(q + rowOf(t, h, qStride, headDim), scratch + <usize>(h - h0) * convBytes, headDim);
      }
      for (let j0 = 0, r = 0; j0 < n; j0 += pageSize, r++) {
        const run = min(pageSize, n - j0);
        const kPage = pageAt(kPool, table, r, pageBytes) + hb;
        const exact = f.special(kPage, stride, run, headDim); // once for all the heads
        for (let h = h0; h < h1; h++) {
          const qc = f.converts() ? scratch + <usize>(h - h0) * convBytes : q + rowOf(t, h, qStride, headDim);
          f.scores(qc, kPage, stride, run, headDim, scale, scoresBase + <usize>(h - h0) * rowBytes + (<usize>j0 << 2), exact);
        }
      }
      for (let h = h0; h < h1; h++) {
        const sc = scoresBase + <usize>(h - h0) * rowBytes;
        softmaxRow(sc, sc, n);
        if (f.roundP()) roundRowF16(sc, sc, n);
      }
      for (let j0 = 0, r = 0; j0 < n; j0 += pageSize, r++) {
        const run = min(pageSize, n - j0);
        const vPage = pageAt(vPool, table, r, pageBytes) + hb;
        const exact = f.special(vPage, stride, run, headDim);
        for (let h = h0; h < h1; h++) {
          f.mix(scoresBase + <usize>(h - h0) * rowBytes + (<usize>j0 << 2), vPage, stride, run, headDim,
            out + rowOf(t, h, qStride, headDim), r == 0, exact);
        }
      }
    }
    h0 = h1;
  }
}

/** Attention with a paged f32 KV cache; see the top of this file and above. */
export function attention_paged_f32(
  q: usize, kPool: usize, vPool: usize, table: usize, pageSize: i32, out: usize, scratch: usize,
  nTok: i32, pos0: i32, nHeads: i32, nKVHeads: i32, headDim: i32,
  qStride: i32, kvRowBytes: i32, scale: f32, headStart: i32, headEnd: i32,
): void {
  attentionPaged<PagedF32>(q, kPool, vPool, table, pageSize, out, scratch, nTok, pos0, nHeads, nKVHeads, headDim,
    qStride, kvRowBytes, scale, headStart, headEnd);
}

/** Attention with a paged f16 KV cache; see the top of this file and above. */
export function attention_paged_f16(
  q: usize, kPool: usize, vPool: usize, table: usize, pageSize: i32, out: usize, scratch: usize,
  nTok: i32, pos0: i32, nHeads: i32, nKVHeads: i32, headDim: i32,
  qStride: i32, kvRowBytes: i32, scale: f32, headStart: i32, headEnd: i32,
): void {
  attentionPaged<PagedF16>(q, kPool, vPool, table, pageSize, out, scratch, nTok, pos0, nHeads, nKVHeads, headDim,
    qStride, kvRowBytes, scale, headStart, headEnd);
}

/** Attention with a paged q8_0 KV cache (headDim a multiple of 32); see the top of this file and above. */
export function attention_paged_q8_0(
  q: usize, kPool: usize, vPool: usize, table: usize, pageSize: i32, out: usize, scratch: usize,
  nTok: i32, pos0: i32, nHeads: i32, nKVHeads: i32, headDim: i32,
  qStride: i32, kvRowBytes: i32, scale: f32, headStart: i32, headEnd: i32,
): void {
  attentionPaged<PagedQ8_0>(q, kPool, vPool, table, pageSize, out, scratch, nTok, pos0, nHeads, nKVHeads, headDim,
    qStride, kvRowBytes, scale, headStart, headEnd);
}

/**
 * Stores nTok rows of rowFloats f32 (row t at src + 4*t*rowFloats: the K or V of all KV heads of one
 * token) at positions pos0 .. pos0+nTok-1 of a sequence, through its block table, in the pool's
 * format: kvType 0 = f32 (copied), 1 = f16 (convert_f32_f16, round to nearest even), 2 = q8_0
 * (quantize_q8_0, so rowFloats and headDim must be multiples of 32: each head row is whole blocks).
 * Only the row's bytes are written; padding up to kvRowBytes is left alone.
 */
export function kv_store_paged(
  src: usize, pool: usize, table: usize, pageSize: i32, pos0: i32, nTok: i32,
  rowFloats: i32, kvRowBytes: i32, kvType: i32,
): void {
  for (let t = 0; t < nTok; t++) {
    const j = pos0 + t;
    const page = <usize>load<i32>(table + (<usize>(j / pageSize) << 2));
    const dst = pool + (page * <usize>pageSize + <usize>(j % pageSize)) * <usize>kvRowBytes;
    const row = src + (<usize>t * <usize>rowFloats << 2);
    if (kvType == 0) memory.copy(dst, row, <usize>rowFloats << 2);
    else if (kvType == 1) convert_f32_f16(row, dst, rowFloats);
    else quantize_q8_0(row, dst, rowFloats);
  }
}
