// The flash-attention kernels (flash_attention_paged_*, assembly/ops/flash.ts) against exact attention
// computed here in float64 from the cache's decoded values (the query converted as ggml converts it
// for that cache type: rounded to f16, or quantized to q8_0 and decoded): random page tables, GQA
// ratios, ragged tiles, pos0 > 0, page sizes that are and are not multiples of the kernel's block.
// Also: a row's result does not depend on the tile or the head run that computes it, nor on the page
// size or order (bit for bit),
// and the kernel writes nothing outside its output rows and its scratch.
import { beforeAll, describe, expect, it } from "vitest";
import { convertF32ToF16, quantizeQ8_0Activations } from "../../weights/quant/activations";
import { dequantize_f16 } from "../../weights/quant/float";
import { dequantize_q8_0 } from "../../weights/quant/q8_0";
import { flashScratchBytes } from "../../compute/model/forward";
import { gaussian, KernelHarness, rng } from "./harness";

let H: KernelHarness;

beforeAll(async () => {
  H = await KernelHarness.create(256);
});

type CacheType = "f32" | "f16" | "q8_0";
const TYPES: CacheType[] = ["f32", "f16", "q8_0"];

interface Case { nTok: number; pos0: number; nHeads: number; nKVHeads: number; headDim: number; pageSize: number }

/** The kernel's scratch as the forward step reserves it (rows = query heads of one KV head × nTok);
 *  runFlash checks that the kernel writes nothing past it. */
const scratchBytes = flashScratchBytes;

function normals(n: number, rand: () => number, sigma = 1): Float32Array {
  const g = gaussian(rand);
  return Float32Array.from({ length: n }, () => sigma * g());
}

function encode(type: CacheType, row: Float32Array): Uint8Array {
  if (type === "f32") return new Uint8Array(row.buffer.slice(row.byteOffset, row.byteOffset + row.byteLength));
  if (type === "f16") return convertF32ToF16(row);
  return quantizeQ8_0Activations(row);
}

function decode(type: CacheType, bytes: Uint8Array, n: number): Float32Array {
  if (type === "f32") return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 4 * n));
  if (type === "f16") return dequantize_f16(bytes, n);
  return dequantize_q8_0(bytes, n);
}

function rowBytes(type: CacheType, floats: number): number {
  return type === "f32" ? 4 * floats : type === "f16" ? 2 * floats : (floats / 32) * 34;
}

function permutation(n: number, rand: () => number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

const CANARY = 12345;

/** A case in memory: q, the K/V rows in a pool of randomly ordered pages, and the decoded values. */
function setup(type: CacheType, c: Case, seed: number, qSigma = 2.5) {
  const rand = rng(seed);
  const nPos = c.pos0 + c.nTok;
  const kvFloats = c.nKVHeads * c.headDim;
  const qStride = c.nHeads * c.headDim + 8;
  const kvRowBytes = rowBytes(type, kvFloats) + (type === "f32" ? 12 : 6); // padded rows
  const qVals = normals(c.nTok * qStride, rand, qSigma);
  const kVals = normals(nPos * kvFloats, rand), vVals = normals(nPos * kvFloats, rand);
  const nPages = Math.ceil(nPos / c.pageSize);
  const poolPages = nPages + 3;
  const order = permutation(poolPages, rand).slice(0, nPages);
  const table = H.put(Int32Array.from(order), 4);
  const kPool = H.fresh(poolPages * c.pageSize * kvRowBytes, 0x7f, 16);
  const vPool = H.fresh(poolPages * c.pageSize * kvRowBytes, 0x7f, 16);
  const kDec: Float32Array[] = [], vDec: Float32Array[] = [];
  for (let j = 0; j < nPos; j++) {
    const at = (order[Math.floor(j / c.pageSize)] * c.pageSize + (j % c.pageSize)) * kvRowBytes;
    const kb = encode(type, kVals.subarray(j * kvFloats, (j + 1) * kvFloats));
    const vb = encode(type, vVals.subarray(j * kvFloats, (j + 1) * kvFloats));
    H.u8(kPool + at, kb.length).set(kb);
    H.u8(vPool + at, vb.length).set(vb);
    kDec.push(decode(type, kb, kvFloats));
    vDec.push(decode(type, vb, kvFloats));
  }
  const q = H.alloc(c.nTok * qStride * 4, 16);
  H.f32(q, c.nTok * qStride).set(qVals);
  return { nPos, qStride, kvRowBytes, qVals, kDec, vDec, table, kPool, vPool, q };
}
type Setup = ReturnType<typeof setup>;

/** The query row as the kernel's K·q sees it. */
function convertQuery(type: CacheType, row: Float32Array): Float32Array {
  if (type === "f32") return row;
  if (type === "f16") return dequantize_f16(convertF32ToF16(row), row.length);
  return dequantize_q8_0(quantizeQ8_0Activations(row), row.length);
}

/** Exact causal attention in float64; `below`, when given, counts the keys whose score sits more
 *  than 69.5 under their row's maximum (where the kernel's exp flushes to 0). */
function reference(type: CacheType, c: Case, s: Setup, below?: { count: number }): Float64Array[] {
  const group = c.nHeads / c.nKVHeads;
  const scale = Math.fround(1 / Math.sqrt(c.headDim));
  const out: Float64Array[] = [];
  for (let t = 0; t < c.nTok; t++) {
    for (let h = 0; h < c.nHeads; h++) {
      const qr = convertQuery(type, s.qVals.subarray(t * s.qStride + h * c.headDim, t * s.qStride + (h + 1) * c.headDim));
      const off = Math.floor(h / group) * c.headDim;
      const n = c.pos0 + t + 1;
      const sc = new Float64Array(n);
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        let d = 0;
        for (let i = 0; i < c.headDim; i++) d += qr[i] * s.kDec[j][off + i];
        sc[j] = d * scale;
        m = Math.max(m, sc[j]);
      }
      if (below) for (let j = 0; j < n; j++) if (sc[j] - m < -69.5) below.count++;
      let sum = 0;
      for (let j = 0; j < n; j++) sum += (sc[j] = Math.exp(sc[j] - m));
      const o = new Float64Array(c.headDim);
      for (let j = 0; j < n; j++) for (let i = 0; i < c.headDim; i++) o[i] += (sc[j] / sum) * s.vDec[j][off + i];
      out.push(o);
    }
  }
  return out;
}

/** Runs the kernel over the tokens in tiles and the heads in runs; returns the whole out buffer. */
function runFlash(type: CacheType, c: Case, s: Setup, tiles: [number, number][], runs: [number, number][]): Float32Array {
  const group = c.nHeads / c.nKVHeads;
  const maxTile = Math.max(...tiles.map(([a, b]) => b - a));
  const sBytes = scratchBytes(group * maxTile, c.headDim);
  const scratch = H.fresh(sBytes + 256, 0xa5, 16);
  const guard = H.u8(scratch + sBytes, 256).slice();
  const out = H.alloc(c.nTok * s.qStride * 4, 16);
  H.f32(out, c.nTok * s.qStride).fill(CANARY);
  const scale = Math.fround(1 / Math.sqrt(c.headDim));
  for (const [a, b] of tiles) {
    for (const [h0, h1] of runs) {
      H.call(`flash_attention_paged_${type}`, s.q + 4 * a * s.qStride, s.kPool, s.vPool, s.table, c.pageSize,
        out + 4 * a * s.qStride, scratch, b - a, c.pos0 + a, c.nHeads, c.nKVHeads, c.headDim, s.qStride, s.kvRowBytes,
        scale, h0, h1);
    }
  }
  expect(H.u8(scratch + sBytes, 256)).toEqual(guard); // nothing past the scratch
  return H.getF32(out, c.nTok * s.qStride);
}

/** Checks every (token, head, dim) of out against the reference within tol · (1 + |ref|); returns
 *  how many values it compared. */
function expectNearReference(out: Float32Array, ref: Float64Array[], c: Case, s: Setup, tol: number, what: string): number {
  let compared = 0;
  for (let t = 0; t < c.nTok; t++) {
    for (let h = 0; h < c.nHeads; h++) {
      const r = ref[t * c.nHeads + h];
      for (let i = 0; i < c.headDim; i++) {
        const got = out[t * s.qStride + h * c.headDim + i];
        if (!(Math.abs(got - r[i]) <= tol * (1 + Math.abs(r[i])))) throw new Error(`${what}: t=${t} h=${h} i=${i}: ${got} vs ${r[i]}`);
        compared++;
      }
    }
  }
  return compared;
}

/** Tiles of `size` tokens (the last one ragged). */
function tilesOf(nTok: number, size: number): [number, number][] {
  const t: [number, number][] = [];
  for (let a = 0; a < nTok; a += size) t.push([a, Math.min(nTok, a + size)]);
  return t;
}

const kvRuns = (c: Case): [number, number][] => {
  const group = c.nHeads / c.nKVHeads;
  return Array.from({ length: c.nKVHeads }, (_, g) => [g * group, (g + 1) * group] as [number, number]);
};

const CASES: Case[] = [
  { nTok: 1, pos0: 0, nHeads: 2, nKVHeads: 2, headDim: 32, pageSize: 16 },
  { nTok: 13, pos0: 0, nHeads: 4, nKVHeads: 2, headDim: 64, pageSize: 16 },
  { nTok: 9, pos0: 37, nHeads: 14, nKVHeads: 2, headDim: 64, pageSize: 16 },
  { nTok: 8, pos0: 150, nHeads: 14, nKVHeads: 2, headDim: 64, pageSize: 5 },
  { nTok: 11, pos0: 90, nHeads: 6, nKVHeads: 1, headDim: 128, pageSize: 100 },
  { nTok: 7, pos0: 200, nHeads: 8, nKVHeads: 8, headDim: 32, pageSize: 64 },
  { nTok: 16, pos0: 3, nHeads: 12, nKVHeads: 4, headDim: 64, pageSize: 1 },
];

describe("flash_attention_paged_* against exact float64 attention", () => {
  for (const type of TYPES) {
    it(`${type}: every (token, head) within f32 tolerance, for tiles of 1, 4 and all tokens`, () => {
      let compared = 0;
      for (const [ci, c] of CASES.entries()) {
        H.reset();
        const s = setup(type, c, 100 + ci);
        const ref = reference(type, c, s);
        for (const tile of [1, 4, c.nTok]) {
          const out = runFlash(type, c, s, tilesOf(c.nTok, tile), kvRuns(c));
          // outputs are averages of N(0,1) values: absolute error of a few f32 ulps of the scores'
          // magnitude (|s| up to ~10), relative to the output's scale of 1
          compared += expectNearReference(out, ref, c, s, 2e-5, `${type} case ${ci} tile ${tile}`);
          // the padding between rows is never written
          for (let t = 0; t < c.nTok; t++) {
            for (let i = c.nHeads * c.headDim; i < s.qStride; i++) expect(out[t * s.qStride + i]).toBe(CANARY);
          }
        }
      }
      expect(compared).toBe(3 * CASES.reduce((a, c) => a + c.nTok * c.nHeads * c.headDim, 0));
    });

    it(`${type}: sharp attention (scores spread over hundreds; probabilities below e^-69 flushed to 0) within f32 tolerance`, () => {
      H.reset();
      // queries of std 40: scores of std 40 after the 1/8 scale, so most keys of a row sit more than
      // 69 below its maximum, where the kernel's exp gives 0 (math.ts, expNeg) and the float64
      // reference keeps e^-69 and less: a difference far below the tolerance
      const c: Case = { nTok: 9, pos0: 300, nHeads: 14, nKVHeads: 2, headDim: 64, pageSize: 16 };
      const s = setup(type, c, 11, 40);
      const flushed = { count: 0 };
      const ref = reference(type, c, s, flushed);
      expect(flushed.count).toBeGreaterThan(c.nTok * c.nHeads * 100); // most of the ~300 keys of every row
      let compared = 0;
      for (const tile of [1, c.nTok]) {
        // scores up to ~150: their f32 rounding (1e-5) moves the few weights that matter by as much
        compared += expectNearReference(runFlash(type, c, s, tilesOf(c.nTok, tile), kvRuns(c)), ref, c, s, 1e-4, `${type} sharp, tile ${tile}`);
      }
      expect(compared).toBe(2 * c.nTok * c.nHeads * c.headDim);
    });

    it(`${type}: a row is bit-identical whichever tile and head run computes it`, () => {
      H.reset();
      const c: Case = { nTok: 23, pos0: 41, nHeads: 14, nKVHeads: 2, headDim: 64, pageSize: 16 };
      const s = setup(type, c, 7);
      const whole = runFlash(type, c, s, [[0, c.nTok]], [[0, c.nHeads]]);
      const ragged = runFlash(type, c, s, [[0, 3], [3, 11], [11, 12], [12, 23]], [[0, 3], [3, 7], [7, 8], [8, 14]]);
      const a = new Uint32Array(whole.buffer, whole.byteOffset, whole.length);
      const b = new Uint32Array(ragged.buffer, ragged.byteOffset, ragged.length);
      expect(a.length).toBe(c.nTok * s.qStride);
      expect(Array.from(b)).toEqual(Array.from(a));
    });

    it(`${type}: the same bits whatever the page size and page order (blocks are positions [0, 64), [64, 128), ...)`, () => {
      const outs = [1, 5, 16, 48, 64, 100, 300].map((pageSize) => {
        H.reset();
        const c: Case = { nTok: 23, pos0: 141, nHeads: 14, nKVHeads: 2, headDim: 64, pageSize };
        const s = setup(type, c, 8); // the same values for every page size, in pages of a random order
        return new Uint32Array(runFlash(type, c, s, tilesOf(c.nTok, 16), kvRuns(c)).buffer);
      });
      expect(outs[0].length).toBe(23 * (14 * 64 + 8));
      for (let i = 1; i < outs.length; i++) expect(Array.from(outs[i]), `page size #${i}`).toEqual(Array.from(outs[0]));
    });

    it(`${type}: agrees with the non-flash attention_paged_${type} within f32 tolerance`, () => {
      H.reset();
      const c: Case = { nTok: 12, pos0: 300, nHeads: 14, nKVHeads: 2, headDim: 64, pageSize: 16 };
      const s = setup(type, c, 9);
      const flash = runFlash(type, c, s, tilesOf(c.nTok, 8), kvRuns(c));
      const out = H.alloc(c.nTok * s.qStride * 4, 16);
      const scratch = H.alloc((c.nHeads / c.nKVHeads) * (c.headDim + s.nPos) * 4, 16);
      H.call(`attention_paged_${type}`, s.q, s.kPool, s.vPool, s.table, c.pageSize, out, scratch, c.nTok, c.pos0,
        c.nHeads, c.nKVHeads, c.headDim, s.qStride, s.kvRowBytes, Math.fround(1 / Math.sqrt(c.headDim)), 0, c.nHeads);
      const old = H.getF32(out, c.nTok * s.qStride);
      // the non-flash f16 kernel rounds the probabilities to f16 (llama.cpp's V·p): 2^-11 relative
      const tol = type === "f16" ? 2e-3 : 2e-5;
      let n = 0;
      for (let t = 0; t < c.nTok; t++) {
        for (let i = 0; i < c.nHeads * c.headDim; i++, n++) {
          expect(Math.abs(flash[t * s.qStride + i] - old[t * s.qStride + i])).toBeLessThanOrEqual(tol * (1 + Math.abs(old[t * s.qStride + i])));
        }
      }
      expect(n).toBe(c.nTok * c.nHeads * c.headDim);
    });
  }
});
