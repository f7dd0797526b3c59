// The contiguous attention kernels: the KV cache of a sequence is one range (position p, KV head g at
// byte `k + p*kvStride + g*headDim*elemSize`). They are the reference that the paged kernels
// (assembly/ops/attention.ts, whose top describes both) are tested against bit for bit, and are built
// only into the test build (build/kernels-test.wasm), never into the library's.
import { quantize_q8_0 } from "../quants/activations";
import { Q8_0_BYTES, QK } from "../quants/common";
import { mixF16, mixF32, mixQ8_0, roundRowF16, scoresF16, scoresF32, scoresQ8_0 } from "../ops/attention";
import { softmaxRow } from "../ops/math";

/** Attention with an f32 KV cache; see the top of assembly/ops/attention.ts. */
export function attention_f32(
  q: usize, k: usize, v: usize, out: usize, scratch: usize,
  nTok: i32, pos0: i32, nHeads: i32, nKVHeads: i32, headDim: i32,
  qStride: i32, kvStride: i32, scale: f32, headStart: i32, headEnd: i32,
): void {
  const group = nHeads / nKVHeads;
  const scores = scratch + (<usize>headDim << 2);
  for (let h = headStart; h < headEnd; h++) {
    const headBytes = <usize>(h / group) * <usize>headDim << 2;
    for (let t = 0; t < nTok; t++) {
      const n = pos0 + t + 1;
      const row = (<usize>t * <usize>qStride + <usize>h * <usize>headDim) << 2;
      scoresF32(q + row, k + headBytes, <usize>kvStride, n, headDim, scale, scores);
      softmaxRow(scores, scores, n);
      mixF32(scores, v + headBytes, <usize>kvStride, n, headDim, out + row, true);
    }
  }
}

/** Attention with an f16 KV cache; see the top of assembly/ops/attention.ts. */
export function attention_f16(
  q: usize, k: usize, v: usize, out: usize, scratch: usize,
  nTok: i32, pos0: i32, nHeads: i32, nKVHeads: i32, headDim: i32,
  qStride: i32, kvStride: i32, scale: f32, headStart: i32, headEnd: i32,
): void {
  const group = nHeads / nKVHeads;
  const qh = scratch;
  const scores = scratch + (<usize>headDim << 2);
  for (let h = headStart; h < headEnd; h++) {
    const headBytes = <usize>(h / group) * <usize>headDim << 1;
    for (let t = 0; t < nTok; t++) {
      const n = pos0 + t + 1;
      const row = (<usize>t * <usize>qStride + <usize>h * <usize>headDim) << 2;
      roundRowF16(q + row, qh, headDim);
      scoresF16(qh, k + headBytes, <usize>kvStride, n, headDim, scale, scores);
      softmaxRow(scores, scores, n);
      roundRowF16(scores, scores, n);
      mixF16(scores, v + headBytes, <usize>kvStride, n, headDim, out + row, true);
    }
  }
}

/** Attention with a q8_0 KV cache (headDim a multiple of 32); see the top of assembly/ops/attention.ts. */
export function attention_q8_0(
  q: usize, k: usize, v: usize, out: usize, scratch: usize,
  nTok: i32, pos0: i32, nHeads: i32, nKVHeads: i32, headDim: i32,
  qStride: i32, kvStride: i32, scale: f32, headStart: i32, headEnd: i32,
): void {
  const group = nHeads / nKVHeads;
  const qq = scratch; // headDim/32 blocks of 34 bytes fit in headDim floats
  const scores = scratch + (<usize>headDim << 2);
  for (let h = headStart; h < headEnd; h++) {
    const headBytes = <usize>(h / group) * <usize>(headDim / QK) * Q8_0_BYTES;
    for (let t = 0; t < nTok; t++) {
      const n = pos0 + t + 1;
      const row = (<usize>t * <usize>qStride + <usize>h * <usize>headDim) << 2;
      quantize_q8_0(q + row, qq, headDim);
      scoresQ8_0(qq, k + headBytes, <usize>kvStride, n, headDim, scale, scores);
      softmaxRow(scores, scores, n);
      mixQ8_0(scores, v + headBytes, <usize>kvStride, n, headDim, out + row, true);
    }
  }
}
