// RoPE angle tables for the rope_neox kernel, formed exactly as ggml's CPU backend forms them
// (ggml_rope_cache_init and rope_yarn in ggml-cpu/ops.cpp), in float32 via Math.fround:
//
//   theta_scale = powf(freq_base, -2.0f/n_dims)
//   theta = (float)pos
//   for each pair i: theta_extrap = theta / freq_factor[i]
//                    (cos_i, sin_i) = rope_yarn(theta_extrap, ...)
//                    theta *= theta_scale
//
// rope_yarn without scaling (freqScale 1, extFactor 0, attnFactor 1) is plain cosf(theta), sinf(theta).
// The YaRN inputs mirror ggml_rope_ext's arguments so that a config's rope scaling can be honoured:
//   theta_interp = freq_scale · theta_extrap
//   if ext_factor != 0: ramp_mix = rope_yarn_ramp(corr_dims, i) · ext_factor
//                       theta = theta_interp · (1 - ramp_mix) + theta_extrap · ramp_mix
//                       mscale = attn_factor · (1 + 0.1 · logf(1 / freq_scale))
//   cos = cosf(theta) · mscale, sin = sinf(theta) · mscale
// llama.cpp passes freq_scale = 1 / rope_scaling.factor, ext_factor = 1 for "yarn" scaling (else 0),
// attn_factor = 1, and corr_dims from ggml_rope_yarn_corr_dims(n_dims, n_ctx_orig, freq_base,
// beta_fast = 32, beta_slow = 1), i.e. ropeYarnCorrDims below.

const f = Math.fround;

/** Optional RoPE scaling, as ggml_rope_ext takes it. Omitted fields mean "no scaling". */
export interface RopeScaling {
  /** 1 / the context scaling factor; 1 = none. */
  freqScale?: number;
  /** YaRN extrapolation mix; 0 turns YaRN off (then corrDims are unused). */
  extFactor?: number;
  /** Magnitude multiplier of cos and sin; 1 = none. */
  attnFactor?: number;
  /** YaRN correction dims [low, high], from ropeYarnCorrDims. */
  corrDims?: readonly [number, number];
  /** Per pair divisors of theta (a rope_freqs tensor), headDim/2 values; absent for Qwen2. */
  freqFactors?: Float32Array;
}

/** ggml_rope_yarn_corr_dim: the dimension at which n_rot rotations fit in n_ctx_orig positions. */
function yarnCorrDim(nDims: number, nCtxOrig: number, nRot: number, base: number): number {
  const ratio = f(nCtxOrig / f(f(nRot * 2) * f(Math.PI)));
  return f(f(nDims * f(Math.log(ratio))) / f(2 * f(Math.log(base))));
}

/** ggml_rope_yarn_corr_dims: YaRN's [low, high] correction dims (beta_fast 32, beta_slow 1 by default). */
export function ropeYarnCorrDims(nDims: number, nCtxOrig: number, freqBase: number, betaFast = 32, betaSlow = 1): [number, number] {
  const start = Math.floor(yarnCorrDim(nDims, nCtxOrig, betaFast, f(freqBase)));
  const end = Math.ceil(yarnCorrDim(nDims, nCtxOrig, betaSlow, f(freqBase)));
  return [Math.max(0, start), Math.min(nDims - 1, end)];
}

/** rope_yarn_ramp: 1 below the low dim, 0 above the high one, linear between (i0 = 2·pair). */
function yarnRamp(low: number, high: number, i0: number): number {
  const y = f(f(Math.floor(i0 / 2) - low) / Math.max(f(0.001), f(high - low)));
  return f(1 - Math.min(1, Math.max(0, y)));
}

/**
 * Fills `out` with, for each position, headDim/2 cosines then headDim/2 sines (headDim floats per
 * token: the layout rope_neox reads) and returns it. All dims rotate (n_dims = headDim, as in Qwen2).
 */
export function ropeCosSin(
  positions: Int32Array | readonly number[],
  headDim: number,
  freqBase: number,
  out: Float32Array,
  scaling: RopeScaling = {},
): Float32Array {
  if (!Number.isInteger(headDim) || headDim <= 0 || headDim % 2 !== 0) {
    throw new RangeError(`ropeCosSin: headDim must be a positive even integer, got ${headDim}`);
  }
  if (out.length < positions.length * headDim) {
    throw new RangeError(`ropeCosSin: out holds ${out.length} floats; ${positions.length} positions × ${headDim} need ${positions.length * headDim}`);
  }
  const half = headDim / 2;
  const freqScale = f(scaling.freqScale ?? 1);
  const extFactor = f(scaling.extFactor ?? 0);
  const attnFactor = f(scaling.attnFactor ?? 1);
  const [corrLow, corrHigh] = scaling.corrDims ?? [0, 0];
  const freqFactors = scaling.freqFactors;
  if (freqFactors && freqFactors.length < half) {
    throw new RangeError(`ropeCosSin: freqFactors holds ${freqFactors.length} values; headDim ${headDim} needs ${half}`);
  }

  const thetaScale = f(Math.pow(f(freqBase), f(-2 / headDim)));
  // rope_yarn's magnitude correction depends only on freq_scale
  const mscale = extFactor !== 0 ? f(attnFactor * f(1 + f(f(0.1) * f(Math.log(f(1 / freqScale)))))) : attnFactor;

  for (let t = 0; t < positions.length; t++) {
    const base = t * headDim;
    let theta = f(positions[t]);
    for (let i = 0; i < half; i++) {
      const thetaExtrap = freqFactors ? f(theta / freqFactors[i]) : theta;
      let angle = f(freqScale * thetaExtrap);
      if (extFactor !== 0) {
        const rampMix = f(yarnRamp(corrLow, corrHigh, 2 * i) * extFactor);
        angle = f(f(angle * f(1 - rampMix)) + f(thetaExtrap * rampMix));
      }
      out[base + i] = f(f(Math.cos(angle)) * mscale);
      out[base + half + i] = f(f(Math.sin(angle)) * mscale);
      theta = f(theta * thetaScale);
    }
  }
  return out;
}
