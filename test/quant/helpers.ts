// Shared by the quantizer tests: a seeded PRNG, random rows and blocks, and an independent decoder of
// the activation formats (so a dot product can be checked against plain f64 arithmetic).
import { f16ToF32, type ActivationFormat, type QuantTraits } from "../../weights/quant/index";
import { bf16ToF32, f32ToF16 } from "../../weights/quant/half";
import { rng } from "../random";

export { rng } from "../random";

export function gaussian(next: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
}

export function randomRow(n: number, seed: number, scale = 1): Float32Array {
  const g = gaussian(rng(seed));
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = g() * scale;
  return x;
}

/**
 * Random bytes shaped as valid blocks of `traits`: every byte random, then the f16 scale fields set to
 * small finite values (random f16 bits could be inf/NaN or huge).
 */
export function randomBlocks(traits: QuantTraits, n: number, seed: number): Uint8Array {
  const next = rng(seed);
  const nb = n / traits.blockSize;
  const out = new Uint8Array(nb * traits.typeSize);
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(next() * 256);
  const setF16 = (o: number, v: number) => { const h = f32ToF16(v); out[o] = h & 0xff; out[o + 1] = h >> 8; };
  const scale = () => (0.5 + next()) * 0.01;
  for (let b = 0; b < nb; b++) {
    const o = b * traits.typeSize;
    switch (traits.name) {
      case "F32": new DataView(out.buffer).setFloat32(o, next() * 2 - 1, true); break;
      case "F16": setF16(o, next() * 2 - 1); break;
      case "BF16": out[o + 1] = 0x3f; out[o] = Math.floor(next() * 256); if (next() < 0.5) out[o + 1] |= 0x80; break;
      case "Q4_0": case "Q5_0": case "Q8_0": case "IQ4_NL": setF16(o, scale()); break;
      case "Q4_1": case "Q5_1": setF16(o, scale()); setF16(o + 2, -scale() * 8); break;
      case "Q2_K": setF16(o + 80, scale()); setF16(o + 82, scale()); break;
      case "Q3_K": setF16(o + 108, scale()); break;
      case "Q4_K": case "Q5_K": setF16(o, scale()); setF16(o + 2, scale()); break;
      case "Q6_K": setF16(o + 208, scale()); break;
      default: throw new Error(`no random blocks for ${traits.name}`);
    }
  }
  return out;
}

/** Decodes an activation row back to numbers (independently of weights/quant's dot products). */
export function decodeActivations(format: ActivationFormat, bytes: Uint8Array, n: number): Float64Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const y = new Float64Array(n);
  const half = (o: number) => f16ToF32(view.getUint16(o, true));
  for (let i = 0; i < n; i++) {
    switch (format) {
      case "f32": y[i] = view.getFloat32(4 * i, true); break;
      case "f16": y[i] = half(2 * i); break;
      case "bf16": y[i] = bf16ToF32(view.getUint16(2 * i, true)); break;
      case "q8_0": { const o = (i >> 5) * 34; y[i] = half(o) * view.getInt8(o + 2 + (i & 31)); break; }
      case "q8_1": { const o = (i >> 5) * 36; y[i] = half(o) * view.getInt8(o + 4 + (i & 31)); break; }
      case "q8_K": { const o = (i >> 8) * 292; y[i] = view.getFloat32(o, true) * view.getInt8(o + 4 + (i & 255)); break; }
    }
  }
  return y;
}

export function relRms(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let e = 0;
  let s = 0;
  for (let i = 0; i < want.length; i++) {
    e += (got[i] - want[i]) ** 2;
    s += want[i] ** 2;
  }
  return Math.sqrt(e / s);
}

/**
 * Largest |decoded - x[i]| that converting x to `format` can cause at element i: q8 formats round to
 * the block's step amax/127 (plus the f16 rounding of d, and of s for q8_1), f16/bf16 to half an ulp.
 */
export function activationErrorBounds(format: ActivationFormat, x: Float32Array): Float64Array {
  const block = format === "q8_K" ? 256 : 32;
  const out = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += block) {
    let amax = 0;
    for (let i = b; i < Math.min(b + block, x.length); i++) amax = Math.max(amax, Math.abs(x[i]));
    for (let i = b; i < Math.min(b + block, x.length); i++) {
      const ax = Math.abs(x[i]);
      out[i] = {
        f32: 0, f16: ax * 2 ** -11, bf16: ax * 2 ** -8,
        q8_0: amax / 254 + amax * 2 ** -11, q8_1: amax / 254 + amax * 2 ** -10, q8_K: (amax / 254) * 1.001,
      }[format];
    }
  }
  return out;
}
