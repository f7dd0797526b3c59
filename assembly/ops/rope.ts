// Rotary position embedding, NEOX style (Qwen2: LLAMA_ROPE_TYPE_NEOX), in place.
// The angles' cosines and sines are computed in TypeScript (compute/model/rope.ts, ropeCosSin), exactly as
// ggml_rope_cache_init forms them, so the kernel needs no sin/cos and the table is shared by every
// head of a token.

/**
 * x holds nTok rows of rowStride floats; each row starts with nHeads heads of headDim floats.
 * cosSin holds, per token, headDim/2 cosines then headDim/2 sines (headDim floats per token).
 * For each head, pair j < headDim/2 rotates (x_j, x_{j+headDim/2}) by angle j, as ggml's
 * rotate_pairs: x0·cos - x1·sin, x0·sin + x1·cos, in f32.
 */
export function rope_neox(x: usize, nTok: i32, nHeads: i32, headDim: i32, rowStride: i32, cosSin: usize): void {
  const half = headDim >> 1;
  const halfBytes = <usize>half << 2;
  for (let t = 0; t < nTok; t++) {
    const cosT = cosSin + (<usize>t * <usize>headDim << 2);
    const sinT = cosT + halfBytes;
    for (let h = 0; h < nHeads; h++) {
      const lo = x + ((<usize>t * <usize>rowStride + <usize>h * <usize>headDim) << 2);
      const hi = lo + halfBytes;
      let j = 0;
      for (; j + 4 <= half; j += 4) {
        const o = <usize>j << 2;
        const x0 = v128.load(lo + o);
        const x1 = v128.load(hi + o);
        const c = v128.load(cosT + o);
        const s = v128.load(sinT + o);
        v128.store(lo + o, f32x4.sub(f32x4.mul(x0, c), f32x4.mul(x1, s)));
        v128.store(hi + o, f32x4.add(f32x4.mul(x0, s), f32x4.mul(x1, c)));
      }
      for (; j < half; j++) {
        const o = <usize>j << 2;
        const x0 = load<f32>(lo + o);
        const x1 = load<f32>(hi + o);
        const c = load<f32>(cosT + o);
        const s = load<f32>(sinT + o);
        store<f32>(lo + o, x0 * c - x1 * s);
        store<f32>(hi + o, x0 * s + x1 * c);
      }
    }
  }
}
