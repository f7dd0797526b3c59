// Q8_K: the activation format of the K-quant dot products (ggml's block_q8_K, 292 bytes per 256).
//   f32 d; i8 qs[256]; i16 bsums[16]   (bsums[j] = sum of qs[16j .. 16j+16))
// The x86 build of llama.cpp quantizes with quantize_row_q8_K_ref (there is no SIMD variant for
// x86), so both versions here follow it: max = the element with the largest |x| (the first one on
// ties), iscale = -127/max, q = min(127, nearest_int(iscale*x)), d = 1/iscale; an all-zero block
// gives d = 0 and q = 0 (ggml leaves bsums untouched there; here they are 0 too).

@inline const QK_K: i32 = 256;
@inline const Q8K_BYTES: usize = 292;
@inline const Q8K_QS: usize = 4;
@inline const Q8K_BSUMS: usize = 260;

/** ggml's nearest_int: round half to even through the 1.5*2^23 trick (exact for |x| < 2^22;
 * NaN gives 0, like the SIMD version below). */
@inline function nearestInt(x: f32): i32 {
  return (reinterpret<i32>(x + 12582912.0) & 0x007fffff) - 0x00400000;
}

/** Scalar reference: quantize_row_q8_K_ref. n is a multiple of 256. */
export function quantize_q8_K_ref(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n / QK_K; b++) {
    const x = src + <usize>b * 1024;
    const y = dst + <usize>b * Q8K_BYTES;
    let max: f32 = 0;
    let amax: f32 = 0;
    for (let j = 0; j < QK_K; j++) {
      const v = load<f32>(x + (<usize>j << 2));
      const ax = Mathf.abs(v);
      if (ax > amax) { amax = ax; max = v; }
    }
    if (amax == 0) {
      store<f32>(y, 0);
      memory.fill(y + Q8K_QS, 0, 256 + 32);
      continue;
    }
    const iscale: f32 = -127.0 / max;
    for (let j = 0; j < QK_K; j++) {
      const q = min(127, nearestInt(iscale * load<f32>(x + (<usize>j << 2))));
      store<i8>(y + Q8K_QS + <usize>j, <i8>q);
    }
    for (let g = 0; g < 16; g++) {
      let sum = 0;
      for (let j = 0; j < 16; j++) sum += <i32>load<i8>(y + Q8K_QS + <usize>(g * 16 + j));
      store<i16>(y + Q8K_BSUMS + (<usize>g << 1), <i16>sum);
    }
    store<f32>(y, 1.0 / iscale);
  }
}

/** Four rounded f32x4 groups (16 values) to 16 i8 in one v128, each value truncated to its low
 * byte as the scalar store does (values are always in [-127, 127] for finite input). */
@inline function quantize16(x: usize, vscale: v128): v128 {
  const magic = f32x4.splat(12582912.0);
  const mant = i32x4.splat(0x007fffff);
  const bias = i32x4.splat(0x00400000);
  const top = i32x4.splat(127);
  const lowByte = i32x4.splat(0xff);
  let a = i32x4.sub(v128.and(f32x4.add(f32x4.mul(v128.load(x), vscale), magic), mant), bias);
  let b = i32x4.sub(v128.and(f32x4.add(f32x4.mul(v128.load(x, 16), vscale), magic), mant), bias);
  let c = i32x4.sub(v128.and(f32x4.add(f32x4.mul(v128.load(x, 32), vscale), magic), mant), bias);
  let d = i32x4.sub(v128.and(f32x4.add(f32x4.mul(v128.load(x, 48), vscale), magic), mant), bias);
  a = v128.and(i32x4.min_s(a, top), lowByte);
  b = v128.and(i32x4.min_s(b, top), lowByte);
  c = v128.and(i32x4.min_s(c, top), lowByte);
  d = v128.and(i32x4.min_s(d, top), lowByte);
  return i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_u(a, b), i16x8.narrow_i32x4_u(c, d));
}

/** Sum of the 16 signed bytes of v. */
@inline function hsumI8(v: v128): i32 {
  let s = i32x4.extadd_pairwise_i16x8_s(i16x8.extadd_pairwise_i8x16_s(v));
  s = i32x4.add(s, i32x4.shuffle(s, s, 2, 3, 0, 1));
  s = i32x4.add(s, i32x4.shuffle(s, s, 1, 0, 3, 2));
  return i32x4.extract_lane(s, 0);
}

/** f32 activations to Q8_K, SIMD; bitwise equal to quantize_q8_K_ref. n is a multiple of 256. */
export function quantize_q8_K(src: usize, dst: usize, n: i32): void {
  for (let b = 0; b < n / QK_K; b++) {
    const x = src + <usize>b * 1024;
    const y = dst + <usize>b * Q8K_BYTES;
    // pmax(acc, v) keeps acc when v is NaN, as `ax > amax` does.
    let vmax = f32x4.splat(0);
    for (let j = 0; j < 1024; j += 16) vmax = f32x4.pmax(vmax, f32x4.abs(v128.load(x + <usize>j)));
    vmax = f32x4.pmax(vmax, i32x4.shuffle(vmax, vmax, 2, 3, 0, 1));
    vmax = f32x4.pmax(vmax, i32x4.shuffle(vmax, vmax, 1, 0, 3, 2));
    const amax = f32x4.extract_lane(vmax, 0);
    if (amax == 0) {
      store<f32>(y, 0);
      memory.fill(y + Q8K_QS, 0, 256 + 32);
      continue;
    }
    // The first element whose |x| is amax.
    const vamax = f32x4.splat(amax);
    let first = 0;
    for (let j = 0; j < QK_K; j += 4) {
      const hits = i32x4.bitmask(f32x4.eq(f32x4.abs(v128.load(x + (<usize>j << 2))), vamax));
      if (hits != 0) { first = j + ctz(hits); break; }
    }
    const max = load<f32>(x + (<usize>first << 2));
    const iscale: f32 = -127.0 / max;
    const vscale = f32x4.splat(iscale);
    for (let g = 0; g < 16; g++) {
      const q = quantize16(x + (<usize>g << 6), vscale);
      v128.store(y + Q8K_QS + (<usize>g << 4), q);
      store<i16>(y + Q8K_BSUMS + (<usize>g << 1), <i16>hsumI8(q));
    }
    store<f32>(y, 1.0 / iscale);
  }
}
