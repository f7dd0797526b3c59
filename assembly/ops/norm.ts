// RMSNorm followed by the norm weight, as llama.cpp evaluates ggml_mul(ggml_rms_norm(x, eps), w)
// (ggml_compute_forward_rms_norm_f32): sum += (double)(x·x) with the square rounded to f32,
// mean = (float)(sum / n), scale = 1.0f / sqrtf(mean + eps) in f32, y = x·scale, then y·w, each in f32.

/** 1 / sqrt(mean(x²) + eps) of the n floats at xr, the sum of squares always in the same order. */
@inline function rmsScale(xr: usize, n: i32, eps: f32): f32 {
  // sum of squares: the squares in f32, the sum in f64 (two f64x2 lanes, merged at the end)
  let acc = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(xr + (<usize>i << 2));
    const sq = f32x4.mul(v, v);
    acc = f64x2.add(acc, f64x2.promote_low_f32x4(sq));
    acc = f64x2.add(acc, f64x2.promote_low_f32x4(v128.shuffle<f32>(sq, sq, 2, 3, 0, 1)));
  }
  let sum: f64 = f64x2.extract_lane(acc, 0) + f64x2.extract_lane(acc, 1);
  for (; i < n; i++) {
    const v = load<f32>(xr + (<usize>i << 2));
    sum += <f64>(v * v);
  }
  const mean = <f32>(sum / <f64>n);
  return <f32>1 / sqrt<f32>(mean + eps);
}

/** y[i] = x[i]·s·w[i] for i in [i0, i1): four at a time from i0, then one at a time. */
@inline function scaleByWeight(xr: usize, w: usize, yr: usize, s: f32, i0: i32, i1: i32): void {
  const vs = f32x4.splat(s);
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(yr + o, f32x4.mul(f32x4.mul(v128.load(xr + o), vs), v128.load(w + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(yr + o, (load<f32>(xr + o) * s) * load<f32>(w + o));
  }
}

/**
 * For each of nRows contiguous rows of n floats: out = x / sqrt(mean(x²) + eps) * w.
 * out may alias x; w holds n floats.
 */
export function rmsnorm(x: usize, w: usize, out: usize, n: i32, nRows: i32, eps: f32): void {
  for (let r = 0; r < nRows; r++) {
    const xr = x + (<usize>r * <usize>n << 2);
    const yr = out + (<usize>r * <usize>n << 2);
    scaleByWeight(xr, w, yr, rmsScale(xr, n, eps), 0, n);
  }
}

/**
 * Elements [i0, i1) of rmsnorm's output for one row of n floats at x: the scale from the whole row,
 * summed exactly as rmsnorm sums it, so that workers that each write a range of the row together
 * write rmsnorm's row bit for bit (i0 a multiple of 4 keeps the same four-wide steps). out must not
 * alias x (another range may still be reading it).
 */
export function rmsnorm_range(x: usize, w: usize, out: usize, n: i32, i0: i32, i1: i32, eps: f32): void {
  scaleByWeight(x, w, out, rmsScale(x, n, eps), i0, i1);
}
