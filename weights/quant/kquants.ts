// Pieces the k-quant files share: the q8_K activation block, the packed 6-bit scales of Q4_K/Q5_K,
// and the scale searches of the reference quantizers.

import { readF32 } from "./common";
import { f16ToF32, f32Bits, f32ToF16 } from "./half";

// A local binding, not the import from common.ts: the scale searches call it millions of times, and a
// bundler or test runner may turn an imported binding into a property read on every call.
const f32 = Math.fround;

/** q8_K block at `o`: f32 d; i8 qs[256] at o+4; i16 bsums[16] at o+260. */
export function q8KScale(x: Uint8Array, o: number): number {
  return readF32(x, o);
}

export function q8KBsum(x: Uint8Array, o: number, g: number): number {
  const p = o + 260 + 2 * g;
  return ((x[p] | (x[p + 1] << 8)) << 16) >> 16;
}

/** get_scale_min_k4: sub-block j's 6-bit scale and min from the 12 packed bytes at `q + o`. */
export function scaleMinK4(j: number, q: Uint8Array, o: number, out: { sc: number; m: number }): void {
  if (j < 4) {
    out.sc = q[o + j] & 63;
    out.m = q[o + j + 4] & 63;
  } else {
    out.sc = (q[o + j + 4] & 0x0f) | ((q[o + j - 4] >> 6) << 4);
    out.m = (q[o + j + 4] >> 4) | ((q[o + j] >> 6) << 4);
  }
}

// ---- The scale searches of ggml's reference quantizers (ggml-quants.c), for llama-quantize without
// an imatrix. Every float operation is rounded to float32 where C computes in `float`, in C's order
// (ggml-base is built without FMA contraction: a*b + c is two roundings).

/** GROUP_MAX_EPS: a group whose largest |x| is below this is all zeros. */
export const GROUP_MAX_EPS = Math.fround(1e-15);

/**
 * ggml's nearest_int(fval): float add of 1.5*2^23, then the low mantissa bits. Round half to even
 * for |fval| <= 2^22 - 1; the bit trick is kept for larger values, as C gives them.
 */
export function nearestInt(fval: number): number {
  if (fval > -4194304 && fval < 4194304) {
    // the float add rounds to an integer, half to even (1.5*2^23 has ulp 1); exact in f64 before it
    return (f32(fval + 12582912) - 12582912) | 0;
  }
  return (f32Bits(f32(fval + 12582912)) & 0x007fffff) - 0x00400000;
}

/**
 * make_qx_quants with rmse_type 1 and no quant weights (w = x*x): symmetric levels -nmax..nmax-1
 * written to L[lo..lo+n) as l + nmax; returns the scale.
 */
export function makeQxQuants(n: number, nmax: number, x: Float32Array, xo: number, L: Uint8Array | Int8Array, lo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return 0;
  }
  let iscale = f32(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i];
    let l = nearestInt(f32(iscale * xi));
    l = Math.max(-nmax, Math.min(nmax - 1, l));
    L[lo + i] = l + nmax;
    const w = f32(xi * xi);
    sumlx = f32(sumlx + f32(f32(w * xi) * l));
    suml2 = f32(suml2 + f32(f32(w * l) * l));
  }
  let scale = suml2 !== 0 ? f32(sumlx / suml2) : 0;
  let best = f32(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = f32(-f32(nmax + f32(f32(0.1) * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i];
      let l = nearestInt(f32(iscale * xi));
      l = Math.max(-nmax, Math.min(nmax - 1, l));
      const w = f32(xi * xi);
      sumlx = f32(sumlx + f32(f32(w * xi) * l));
      suml2 = f32(suml2 + f32(f32(w * l) * l));
    }
    if (suml2 > 0 && f32(sumlx * sumlx) > f32(best * suml2)) {
      for (let i = 0; i < n; i++) {
        const l = nearestInt(f32(iscale * x[xo + i]));
        L[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
      }
      scale = f32(sumlx / suml2);
      best = f32(scale * sumlx);
    }
  }
  return scale;
}

/**
 * make_q3_quants with do_rmse: levels -nmax..nmax-1 refined one element at a time (weights x*x),
 * written to L[lo..) as l + nmax; returns the scale.
 */
export function makeQ3Quants(n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, lo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return 0;
  }
  const iscale = f32(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i];
    let l = nearestInt(f32(iscale * xi));
    l = Math.max(-nmax, Math.min(nmax - 1, l));
    L[lo + i] = l;
    const w = f32(xi * xi);
    sumlx = f32(sumlx + f32(f32(w * xi) * l));
    suml2 = f32(suml2 + f32(f32(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let nChanged = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i];
      const w = f32(xi * xi);
      const li = L[lo + i];
      let slx = f32(sumlx - f32(f32(w * xi) * li));
      if (slx > 0) {
        let sl2 = f32(suml2 - f32(f32(w * li) * li));
        let newL = nearestInt(f32(f32(xi * sl2) / slx));
        newL = Math.max(-nmax, Math.min(nmax - 1, newL));
        if (newL !== li) {
          slx = f32(slx + f32(f32(w * xi) * newL));
          sl2 = f32(sl2 + f32(f32(w * newL) * newL));
          if (sl2 > 0 && f32(f32(slx * slx) * suml2) > f32(f32(sumlx * sumlx) * sl2)) {
            L[lo + i] = newL;
            sumlx = slx;
            suml2 = sl2;
            nChanged++;
          }
        }
      }
    }
    if (nChanged === 0) break;
  }
  for (let i = 0; i < n; i++) L[lo + i] += nmax;
  return suml2 > 0 ? f32(sumlx / suml2) : 0;
}

/**
 * make_qkx2_quants: levels 0..nmax with a min (w = scale*l - min), the scale and min refit by least
 * squares over nstep+1 trial scales. Writes L[lo..), returns the scale; `out.min` gets the min (>= 0).
 */
export function makeQkx2Quants(n: number, nmax: number, x: Float32Array, xo: number, weights: Float32Array,
  L: Uint8Array, lo: number, Laux: Uint8Array, rmin: number, rdelta: number, nstep: number, useMad: boolean,
  out: { min: number }): number {
  let min = x[xo];
  let max = x[xo];
  let sumW = weights[0];
  let sumX = f32(sumW * x[xo]);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i];
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = weights[i];
    sumW = f32(sumW + w);
    sumX = f32(sumX + f32(w * xi));
  }
  if (min > 0) min = 0;
  if (max === min) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    out.min = -min;
    return 0;
  }
  let iscale = f32(nmax / f32(max - min));
  let scale = f32(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i];
    const l = Math.max(0, Math.min(nmax, nearestInt(f32(iscale * f32(xi - min)))));
    L[lo + i] = l;
    let diff = f32(f32(f32(scale * l) + min) - xi);
    diff = useMad ? Math.abs(diff) : f32(diff * diff);
    bestError = f32(bestError + f32(weights[i] * diff));
  }
  if (nstep < 1) {
    out.min = -min;
    return scale;
  }
  const rminF = f32(rmin);
  const rdeltaF = f32(rdelta);
  for (let is = 0; is <= nstep; is++) {
    // min is the best fit so far: later trials start from it (as in C)
    iscale = f32(f32(f32(rminF + f32(rdeltaF * is)) + nmax) / f32(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i];
      const l = Math.max(0, Math.min(nmax, nearestInt(f32(iscale * f32(xi - min)))));
      Laux[i] = l;
      const w = weights[i];
      const wl = f32(w * l);
      sumL = f32(sumL + wl);
      sumL2 = f32(sumL2 + f32(wl * l));
      sumXL = f32(sumXL + f32(wl * xi));
    }
    const D = f32(f32(sumW * sumL2) - f32(sumL * sumL));
    if (D > 0) {
      let thisScale = f32(f32(f32(sumW * sumXL) - f32(sumX * sumL)) / D);
      let thisMin = f32(f32(f32(sumL2 * sumX) - f32(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = f32(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        let diff = f32(f32(f32(thisScale * Laux[i]) + thisMin) - x[xo + i]);
        diff = useMad ? Math.abs(diff) : f32(diff * diff);
        curError = f32(curError + f32(weights[i] * diff));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i];
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  out.min = -min;
  return scale;
}

/** Scratch of quantizeScaleMinK. */
export interface ScaleMinKScratch {
  Laux: Uint8Array;
  weights: Float32Array;
  mins: Float32Array;
  scales: Float32Array;
  m: { min: number };
}

export function scaleMinKScratch(): ScaleMinKScratch {
  return { Laux: new Uint8Array(32), weights: new Float32Array(32), mins: new Float32Array(8), scales: new Float32Array(8), m: { min: 0 } };
}

/**
 * What quantize_row_q4_K_ref and quantize_row_q5_K_ref share, for the super-block x[xb..xb+256):
 * per 32 weights make_qkx2_quants (weights sqrt(mean x^2) + |x|), the 8 scales and mins as 6-bit
 * values packed into out[o+4..o+16), f16 d at out[o] and dmin at out[o+2]; then the levels 0..nmax
 * requantized with the stored scales into L[0..256).
 */
export function quantizeScaleMinK(x: Float32Array, xb: number, nmax: number, rmin: number, nstep: number,
  out: Uint8Array, o: number, L: Uint8Array, s: ScaleMinKScratch): void {
  const { Laux, weights, mins, scales, m } = s;
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    const xo = xb + 32 * j;
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = f32(sumX2 + f32(x[xo + l] * x[xo + l]));
    const avX = f32(Math.sqrt(f32(sumX2 / 32)));
    for (let l = 0; l < 32; l++) weights[l] = f32(avX + Math.abs(x[xo + l]));
    scales[j] = makeQkx2Quants(32, nmax, x, xo, weights, L, 32 * j, Laux, rmin, 0.1, nstep, false, m);
    mins[j] = m.min;
    if (scales[j] > maxScale) maxScale = scales[j];
    if (mins[j] > maxMin) maxMin = mins[j];
  }
  const invScale = maxScale > 0 ? f32(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? f32(63 / maxMin) : 0;
  const sc = o + 4;
  for (let j = 0; j < 8; j++) {
    const ls = Math.min(63, nearestInt(f32(invScale * scales[j])) & 0xff);
    const lm = Math.min(63, nearestInt(f32(invMin * mins[j])) & 0xff);
    if (j < 4) {
      out[sc + j] = ls;
      out[sc + j + 4] = lm;
    } else {
      out[sc + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
      out[sc + j - 4] |= (ls >> 4) << 6;
      out[sc + j] |= (lm >> 4) << 6;
    }
  }
  const dh = f32ToF16(f32(maxScale / 63));
  const dminh = f32ToF16(f32(maxMin / 63));
  out[o] = dh & 0xff;
  out[o + 1] = dh >> 8;
  out[o + 2] = dminh & 0xff;
  out[o + 3] = dminh >> 8;
  const dAll = f16ToF32(dh);
  const dminAll = f16ToF32(dminh);
  const smk = { sc: 0, m: 0 };
  for (let j = 0; j < 8; j++) {
    scaleMinK4(j, out, sc, smk);
    const d = f32(dAll * smk.sc);
    if (d === 0) continue;
    const dm = f32(dminAll * smk.m);
    for (let ii = 0; ii < 32; ii++) {
      const l = nearestInt(f32(f32(x[xb + 32 * j + ii] + dm) / d));
      L[32 * j + ii] = Math.max(0, Math.min(nmax, l));
    }
  }
}
