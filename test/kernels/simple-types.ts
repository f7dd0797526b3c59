// Independent TypeScript decoders for the "simple" weight types (f32, f16, bf16, and the 32-weight
// blocks q4_0 q4_1 q5_0 q5_1 q8_0 iq4_nl) and the activation formats, written from ggml's block
// layouts for the kernel tests; plus encoders of random valid blocks.

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function f32Bits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0];
}

export function f32FromBits(bits: number): number {
  u32Scratch[0] = bits >>> 0;
  return f32Scratch[0];
}

export function halfToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** -24;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** f32 (any number is first rounded to f32) to half bits, round to nearest even; NaN → sign | 0x7e00. */
export function f32ToHalf(x: number): number {
  const f = Math.fround(x);
  const sign = (f32Bits(f) >>> 16) & 0x8000;
  const a = Math.abs(f);
  if (Number.isNaN(f)) return sign | 0x7e00;
  if (a >= 65520) return sign | 0x7c00; // 65504 + half an ulp rounds (to even) up to inf
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24); // subnormal: units of 2^-24 (1024 = the smallest normal)
  const e = Math.floor(Math.log2(a));
  const exp = a >= 2 ** (e + 1) ? e + 1 : a < 2 ** e ? e - 1 : e; // guard log2 rounding
  const m = roundHalfEven((a / 2 ** exp - 1) * 1024); // may reach 1024: carries into the exponent
  return sign | (((exp + 15) << 10) + m);
}

export function bf16ToF32(h: number): number {
  return f32FromBits(h << 16);
}

/** ggml_compute_fp32_to_bf16: round to nearest even, NaN quieted. */
export function f32ToBf16(x: number): number {
  const u = f32Bits(x);
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return ((u + (0x7fff + ((u >>> 16) & 1))) >>> 16) & 0xffff;
}

export function roundHalfEven(x: number): number {
  const r = Math.round(x); // rounds .5 up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export const KVALUES_IQ4NL = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

export type ActFormat = "f32" | "f16" | "bf16" | "q8_0" | "q8_1";

/** A weight type as the tests see it. */
export interface SimpleType {
  name: string;
  /** Weights per block (1 for the dense types). */
  block: number;
  /** Bytes per block. */
  bytes: number;
  act: ActFormat;
  /** For block types: the block at `off` as d, m and the 32 integer quants (w = d*q + m). */
  decodeBlock?(b: Uint8Array, off: number): { d: number; m: number; q: number[] };
  /** Dense types: element at `off`. */
  decodeElem?(b: Uint8Array, off: number): number;
}

const u16 = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);
const u32 = (b: Uint8Array, o: number) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
const nibbles = (b: Uint8Array, o: number) => {
  const q: number[] = new Array(32);
  for (let j = 0; j < 16; j++) {
    q[j] = b[o + j] & 15;
    q[j + 16] = b[o + j] >> 4;
  }
  return q;
};
const withHigh = (q: number[], qh: number) => q.map((n, j) => n | (((qh >>> j) & 1) << 4));

export const SIMPLE_TYPES: SimpleType[] = [
  { name: "f32", block: 1, bytes: 4, act: "f32", decodeElem: (b, o) => f32FromBits(u32(b, o)) },
  { name: "f16", block: 1, bytes: 2, act: "f16", decodeElem: (b, o) => halfToF32(u16(b, o)) },
  { name: "bf16", block: 1, bytes: 2, act: "bf16", decodeElem: (b, o) => bf16ToF32(u16(b, o)) },
  {
    name: "q4_0", block: 32, bytes: 18, act: "q8_0",
    decodeBlock: (b, o) => ({ d: halfToF32(u16(b, o)), m: 0, q: nibbles(b, o + 2).map((n) => n - 8) }),
  },
  {
    name: "q4_1", block: 32, bytes: 20, act: "q8_1",
    decodeBlock: (b, o) => ({ d: halfToF32(u16(b, o)), m: halfToF32(u16(b, o + 2)), q: nibbles(b, o + 4) }),
  },
  {
    name: "q5_0", block: 32, bytes: 22, act: "q8_0",
    decodeBlock: (b, o) => ({ d: halfToF32(u16(b, o)), m: 0, q: withHigh(nibbles(b, o + 6), u32(b, o + 2)).map((n) => n - 16) }),
  },
  {
    name: "q5_1", block: 32, bytes: 24, act: "q8_1",
    decodeBlock: (b, o) => ({ d: halfToF32(u16(b, o)), m: halfToF32(u16(b, o + 2)), q: withHigh(nibbles(b, o + 8), u32(b, o + 4)) }),
  },
  {
    name: "q8_0", block: 32, bytes: 34, act: "q8_0",
    decodeBlock: (b, o) => ({ d: halfToF32(u16(b, o)), m: 0, q: Array.from(new Int8Array(b.buffer, b.byteOffset + o + 2, 32)) }),
  },
  {
    name: "iq4_nl", block: 32, bytes: 18, act: "q8_0",
    decodeBlock: (b, o) => ({ d: halfToF32(u16(b, o)), m: 0, q: nibbles(b, o + 2).map((n) => KVALUES_IQ4NL[n]) }),
  },
];

export function simpleType(name: string): SimpleType {
  const t = SIMPLE_TYPES.find((s) => s.name === name);
  if (!t) throw new Error(`unknown type ${name}`);
  return t;
}

/** Bytes of a row of n weights. */
export function rowBytes(t: SimpleType, n: number): number {
  if (n % t.block !== 0) throw new Error(`${t.name}: ${n} is not a multiple of ${t.block}`);
  return (n / t.block) * t.bytes;
}

/** The f32 values of n weights at `off`, as ggml's dequantize_row (d*q + m rounded to f32). */
export function dequantize(t: SimpleType, b: Uint8Array, off: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (t.decodeElem) {
    for (let i = 0; i < n; i++) out[i] = t.decodeElem(b, off + i * t.bytes);
    return out;
  }
  for (let blk = 0; blk < n / 32; blk++) {
    const { d, m, q } = t.decodeBlock!(b, off + blk * t.bytes);
    // x*d, or x*d + m with a min: adding a zero min would turn -0 into +0
    for (let j = 0; j < 32; j++) out[blk * 32 + j] = Math.fround(t.act === "q8_1" ? d * q[j] + m : d * q[j]);
  }
  return out;
}

export const ACT_BYTES: Record<ActFormat, [number, number]> = { // [elements, bytes] per block
  f32: [1, 4], f16: [1, 2], bf16: [1, 2], q8_0: [32, 34], q8_1: [32, 36],
};

/** llama.cpp's x86 quantize_row_q8_0 / q8_1 (and the f16/bf16 roundings), in TypeScript. */
export function quantizeActivations(fmt: ActFormat, x: Float32Array): Uint8Array {
  const [per, bytes] = ACT_BYTES[fmt];
  const out = new Uint8Array((x.length / per) * bytes);
  const dv = new DataView(out.buffer);
  if (fmt === "f32") new Float32Array(out.buffer).set(x);
  else if (fmt === "f16") x.forEach((v, i) => dv.setUint16(2 * i, f32ToHalf(v), true));
  else if (fmt === "bf16") x.forEach((v, i) => dv.setUint16(2 * i, f32ToBf16(v), true));
  else {
    const qs = fmt === "q8_1" ? 4 : 2;
    for (let b = 0; b < x.length / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
      const d = Math.fround(amax / 127);
      const id = amax !== 0 ? Math.fround(127 / amax) : 0;
      let sum = 0;
      for (let j = 0; j < 32; j++) {
        const q = Math.max(-128, Math.min(127, roundHalfEven(Math.fround(x[b * 32 + j] * id))));
        dv.setInt8(b * bytes + qs + j, q);
        sum += q;
      }
      dv.setUint16(b * bytes, f32ToHalf(d), true);
      if (fmt === "q8_1") dv.setUint16(b * bytes + 2, f32ToHalf(Math.fround(d * sum)), true);
    }
  }
  return out;
}

/**
 * dot(weight row, activation row) in f64 from the decoded values, as ggml's vec_dot defines it:
 * per block d_w d_x sum(q_w q_x) (+ m_w s_x), or the sum of products for dense types. Also returns
 * the sum of the absolute terms, the scale that rounding errors are measured against.
 */
export function exactDot(t: SimpleType, w: Uint8Array, wOff: number, x: Uint8Array, xOff: number, k: number): { dot: number; abs: number } {
  let dot = 0, abs = 0;
  if (t.decodeElem) {
    const xd = t.act === "f32" ? (o: number) => f32FromBits(u32(x, o)) : t.act === "f16" ? (o: number) => halfToF32(u16(x, o))
      : (o: number) => bf16ToF32(u16(x, o));
    for (let i = 0; i < k; i++) {
      const p = t.decodeElem(w, wOff + i * t.bytes) * xd(xOff + i * t.bytes);
      dot += p;
      abs += Math.abs(p);
    }
    return { dot, abs };
  }
  const [, xb] = ACT_BYTES[t.act];
  const qs = t.act === "q8_1" ? 4 : 2;
  for (let b = 0; b < k / 32; b++) {
    const { d, m, q } = t.decodeBlock!(w, wOff + b * t.bytes);
    const xo = xOff + b * xb;
    const dx = halfToF32(u16(x, xo));
    let isum = 0, iabs = 0;
    for (let j = 0; j < 32; j++) {
      const p = q[j] * ((x[xo + qs + j] << 24) >> 24);
      isum += p;
      iabs += Math.abs(p);
    }
    dot += d * dx * isum;
    abs += Math.abs(d * dx) * iabs;
    if (t.act === "q8_1") {
      const s = halfToF32(u16(x, xo + 2));
      dot += m * s;
      abs += Math.abs(m * s);
    }
  }
  return { dot, abs };
}

/**
 * n random weights of type t as valid bytes: random quants with sane f16 scales (a few zero and
 * subnormal scales among them), or random dense values (some subnormal, some zero).
 */
export function randomWeights(t: SimpleType, n: number, rand: () => number, normal: () => number): Uint8Array {
  const out = new Uint8Array(rowBytes(t, n));
  const dv = new DataView(out.buffer);
  if (t.name === "f32") {
    for (let i = 0; i < n; i++) dv.setFloat32(4 * i, normal() * 0.05, true);
    return out;
  }
  if (t.name === "f16" || t.name === "bf16") {
    const enc = t.name === "f16" ? f32ToHalf : f32ToBf16;
    for (let i = 0; i < n; i++) {
      const r = rand();
      const v = r < 0.02 ? 0 : r < 0.05 ? normal() * 1e-6 : normal() * 0.05; // zeros, f16 subnormals
      dv.setUint16(2 * i, enc(v), true);
    }
    return out;
  }
  for (let i = 0; i < out.length; i++) out[i] = (rand() * 256) | 0;
  for (let b = 0; b < n / 32; b++) {
    const o = b * t.bytes;
    const r = rand();
    const d = r < 0.03 ? 0 : r < 0.06 ? 3e-6 * rand() : (rand() < 0.5 ? -1 : 1) * (0.002 + 0.01 * rand());
    dv.setUint16(o, f32ToHalf(d), true);
    if (t.act === "q8_1") dv.setUint16(o + 2, f32ToHalf(-0.08 * rand()), true);
  }
  return out;
}
