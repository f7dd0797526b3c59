// Helpers the model tests share: comparing logit rows, the synthetic models' tolerances, prompts of
// regular token ids, and a virtual GGUF file (a real header, zeros for the weights).
import { expect } from "vitest";
import { argmax } from "../../engine/sampler/sampler";
import type { SynthType } from "../../tools/synth";
import type { RandomAccessFile } from "../../platform/index";

/** Mean and standard deviation of a row. */
export function meanStd(row: ArrayLike<number>): { mean: number; std: number } {
  let mean = 0;
  for (let i = 0; i < row.length; i++) mean += row[i];
  mean /= row.length;
  let s = 0;
  for (let i = 0; i < row.length; i++) s += (row[i] - mean) ** 2;
  return { mean, std: Math.sqrt(s / row.length) };
}

/** Largest and rms |Δ| of a row against a reference row, both divided by the reference's std. */
export function relDiff(ours: ArrayLike<number>, ref: ArrayLike<number>): { rel: number; rms: number } {
  let mean = 0;
  for (let i = 0; i < ref.length; i++) mean += ref[i];
  mean /= ref.length;
  let variance = 0;
  let max = 0;
  let sq = 0;
  for (let i = 0; i < ref.length; i++) {
    variance += (ref[i] - mean) ** 2;
    const d = Math.abs(ours[i] - ref[i]);
    max = Number.isNaN(d) ? Infinity : Math.max(max, d);
    sq += d * d;
  }
  const std = Math.sqrt(variance / ref.length);
  return { rel: max / std, rms: Math.sqrt(sq / ref.length) / std };
}

/** The fixtures' tolerances (max and rms |Δ|/std) by weight type. */
export function tolerance(type: SynthType): { max: number; rms: number } {
  if (type === "F32") return { max: 1e-4, rms: 2e-5 };
  if (type === "F16") return { max: 1e-2, rms: 3e-3 };
  if (type === "BF16") return { max: 5e-2, rms: 1.5e-2 };
  return { max: 0.25, rms: 0.05 };
}

/** A prompt of regular token ids (the tiny models keep the first 512 tokens). */
/** How many of two equally long float32 arrays' elements differ in their bits (NaN payloads and -0 count). */
export function differingBits(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let differing = 0;
  for (let j = 0; j < x.length; j++) if (x[j] !== y[j]) differing++;
  return differing;
}

export function prompt(n: number, seed = 3): number[] {
  let x = seed;
  return Array.from({ length: n }, () => (x = (x * 1103515245 + 12345) >>> 0) % 512);
}

/** A file of `size` bytes: `header`, then zeros; `onTensorRead` hears of reads at or past `dataOffset`. */
export function virtualFile(header: Uint8Array, size: number, dataOffset: number, onTensorRead?: () => void): RandomAccessFile {
  return {
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      const end = Math.min(size, offset + length);
      const bytes = new Uint8Array(Math.max(0, end - offset));
      if (offset < header.length) bytes.set(header.subarray(offset, Math.min(header.length, end)));
      if (offset >= dataOffset) onTensorRead?.();
      return bytes;
    },
    async close() {},
  };
}

/** One position of a fixture's top10.json. */
export interface Top10Position { pos: number; token: number; logits_mean: number; logits_std: number; top: [number, number][] }

/**
 * Checks our logits at one position against llama.cpp's top10.json entry: each listed logit within
 * `tol.max` (|Δ|/std), the row's mean and std within `tol.rms`, and the top-1 token wherever
 * llama.cpp's margin is at least `margin`. Returns the worst |Δ|/std and whether top-1 was compared.
 */
export function checkTop10(at: string, i: number, p: Top10Position, ours: Float32Array,
  tol: { max: number; rms: number }, margin: number): { worst: number; top1: boolean } {
  let worst = 0;
  for (const [id, logit] of p.top) {
    const rel = Math.abs(ours[id] - logit) / p.logits_std;
    worst = Math.max(worst, Number.isNaN(rel) ? Infinity : rel);
    expect(rel, `${at} position ${i}: logit of token ${id}, |Δ|/std`).toBeLessThanOrEqual(tol.max);
  }
  const { mean, std } = meanStd(ours);
  expect(Math.abs(mean - p.logits_mean) / p.logits_std, `${at} position ${i}: |Δmean|/std`).toBeLessThanOrEqual(tol.rms);
  expect(Math.abs(std - p.logits_std) / p.logits_std, `${at} position ${i}: |Δstd|/std`).toBeLessThanOrEqual(tol.rms);
  const top1 = p.top[0][1] - p.top[1][1] >= margin;
  if (top1) expect(argmax(ours), `${at} top-1 at position ${i}`).toBe(p.top[0][0]);
  return { worst, top1 };
}

/**
 * A load-time writer that rewrites bytes in place (a wasm packer or interleaver) against the
 * JavaScript writer of the same layout: random bytes at W - 32 .. W + n + 32 of `memory` (W odd in
 * the callers), `reference(copy, 32)` on a copy of them, `write()` on the memory; the bytes must be
 * equal and nothing outside [W, W + n) written. With `scratch`, the writer's scratch at `at` must be
 * untouched but for its first `used` bytes (filled with a marker first, checked up to at + bytes).
 */
export function expectInPlaceWriter(memory: WebAssembly.Memory, rand: () => number, W: number, n: number,
  reference: (bytes: Uint8Array, at: number) => void, write: () => void,
  scratch?: { at: number; used: number; bytes: number }): void {
  const u8 = new Uint8Array(memory.buffer);
  for (let i = 0; i < n + 64; i++) u8[W - 32 + i] = (rand() * 256) | 0;
  const expected = u8.slice(W - 32, W + n + 32);
  reference(expected, 32);
  if (scratch) u8.fill(0x5a, scratch.at - 64, scratch.at + scratch.bytes + 64);
  write();
  expect(u8.subarray(W - 32, W + n + 32)).toEqual(expected); // and nothing outside the matrix written
  if (scratch) {
    const untouched = u8.subarray(scratch.at - 64, scratch.at).every((v) => v === 0x5a) &&
      u8.subarray(scratch.at + scratch.used, scratch.at + scratch.bytes + 64).every((v) => v === 0x5a);
    expect(untouched, "nothing written around the group's scratch").toBe(true);
  }
}
