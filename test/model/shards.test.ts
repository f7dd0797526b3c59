// One model over several WebAssembly memories (compute/model/model.ts planModel places layers into
// shards, compute/model/forward.ts runs each layer with its shard's kernels and carries the residual
// across): the logits must be bit-identical to the one-shard run for any shard count and any worker
// count. maxShardBytes forces small shards on small models; the counts are found from the plan.
import { describe, expect, it } from "vitest";
import { parseGGUFBytes } from "../../weights/gguf/reader";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { mapQwen2Tensors, parseQwen2Config } from "../../weights/qwen2";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { loadQwen2, planModel, type LoadOptions, type Qwen2Model } from "../../compute/model/model";
import { createEngine } from "../../engine/engine";
import { describeFixtures, readFixture } from "../fixtures";

const vocabulary = await readQwen2Vocabulary();

/** The plan of `bytes` under `options` (sizers only). */
async function plan(bytes: Uint8Array, options: LoadOptions) {
  const file = parseGGUFBytes(bytes);
  const config = parseQwen2Config(file.metadata, file.tensors);
  return planModel(file, config, mapQwen2Tensors(config, file.tensors), options);
}

/** The smallest maxShardBytes that places the model in at most `n` shards (binary search on the plan);
 *  the test then requires exactly `n`. */
async function shardLimitFor(bytes: Uint8Array, options: LoadOptions, n: number): Promise<number> {
  let lo = 65536, hi = 4 * 2 ** 30; // count(hi) <= n; find the smallest such
  const count = async (limit: number) => {
    try {
      return (await plan(bytes, { ...options, maxShardBytes: limit })).shardBytes.length;
    } catch (e) {
      if ((e as { code?: string }).code === "OUT_OF_MEMORY") return Infinity; // a unit alone is bigger
      throw e;
    }
  };
  while (hi - lo > 64) {
    const mid = Math.floor((lo + hi) / 2);
    if (await count(mid) <= n) hi = mid; else lo = mid;
  }
  return hi;
}

/** Logits of a prefill (every row), two decode steps, and a step of two sequences with their own
 *  page tables (pages not in order), all concatenated. */
async function run(model: Qwen2Model, tokens: number[]): Promise<Float32Array> {
  const f = model.forward;
  const out: Float32Array[] = [];
  out.push(await f.step(tokens, 0, true));
  out.push(await f.step([tokens[1]], tokens.length));
  out.push(await f.step([tokens[2]], tokens.length + 1));
  const perSeq = f.contextLength / f.pageSize;
  const tableA = Array.from({ length: perSeq }, (_, p) => f.kvPages - 1 - p);
  const tableB = Array.from({ length: perSeq }, (_, p) => f.kvPages - 1 - perSeq - p);
  out.push(await f.run([...tokens.slice(0, 3), ...tokens.slice(2, 4)],
    [{ tokenStart: 0, nTok: 3, pos0: 0, table: tableA }, { tokenStart: 3, nTok: 2, pos0: 0, table: tableB }], [2, 4, 1]));
  const all = new Float32Array(out.reduce((n, o) => n + o.length, 0));
  let at = 0;
  for (const o of out) { all.set(o, at); at += o.length; }
  return all;
}

function differing(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  expect(y.length).toBe(x.length);
  let n = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) n++;
  return n;
}

/** Loads `bytes` in 1 shard at 1 worker (the reference), then in each of `shards` at 1 and 2 workers,
 *  and requires the same bits. Returns the runs compared. */
async function sameLogits(bytes: Uint8Array, base: LoadOptions, shards: number[], tokens: number[]): Promise<number> {
  const opts = { ...base, oversubscribe: true, maxSequences: 2, kvPages: 2 * Math.ceil((base.contextLength ?? 64) / (base.pageSize ?? 16)) };
  const reference = await loadQwen2(bytes, { ...opts, threads: 1 });
  let expected: Float32Array;
  try {
    expect(reference.forward.layout.shards).toBe(1);
    expected = await run(reference, tokens);
  } finally {
    await reference.dispose();
  }
  let compared = 0;
  for (const n of shards) {
    const maxShardBytes = n === 1 ? undefined : await shardLimitFor(bytes, opts, n);
    for (const threads of [1, 2]) {
      const model = await loadQwen2(bytes, { ...opts, threads, maxShardBytes });
      try {
        expect(model.forward.layout.shards, `${n} shards`).toBe(n);
        expect(model.arenas.length).toBe(n);
        const logits = await run(model, tokens);
        expect(differing(expected, logits), `${n} shards, ${threads} workers: differing logits`).toBe(0);
        compared++;
      } finally {
        await model.dispose();
      }
    }
  }
  return compared;
}

const tokens = [9707, 11, 1879, 0, 17, 315, 264, 1296].map((t) => t % 500); // within every vocabulary here

describe("sharded memories", () => {
  it("a 0.5B-shape model (tied LM head, 6 layers, 512-token vocabulary) in 1, 2, 3 and 7 shards at 1 and 2 workers", async () => {
    const bytes = await writeGGUFBytes(synthQwen2({ shape: { ...QWEN2_PRESETS["0.5b"], layers: 6, vocab: 512 }, vocabulary, type: "Q4_0", seed: 3 }));
    expect(await sameLogits(bytes, { contextLength: 64 }, [1, 2, 3, 7], tokens)).toBe(8);
  }, 300_000);

  it("an untied model (token_embd with the first layers, the LM head with the last) in 2, 3 and 7 shards, f16 KV", async () => {
    // 7 parts of about the same size (token_embd, 5 layers, the head): 7 shards when each is alone.
    const bytes = await writeGGUFBytes(synthQwen2({ shape: { ...QWEN2_PRESETS.tiny, layers: 5, tied: false }, vocabulary, type: "Q8_0", seed: 4 }));
    expect(await sameLogits(bytes, { contextLength: 64, kvType: "f16", maxTokens: 8 }, [2, 3, 7], tokens)).toBe(6);
  }, 300_000);

  it("a qwen2moe model in 2 and 3 shards (routing and expert scratch per shard)", async () => {
    const bytes = await writeGGUFBytes(synthQwen2({ shape: { ...QWEN2_PRESETS["tiny-moe"], layers: 4 }, vocabulary, type: "Q8_0", seed: 5 }));
    expect(await sameLogits(bytes, { contextLength: 64 }, [2, 3], tokens)).toBe(4);
  }, 300_000);

  it("places every tensor wholly in one shard, within the limit, and the plan is what loading allocates", async () => {
    const bytes = await writeGGUFBytes(synthQwen2({ shape: { ...QWEN2_PRESETS.tiny, layers: 8, tied: false }, vocabulary, type: "Q4_0", seed: 6 }));
    const options: LoadOptions = { threads: 1, contextLength: 64 };
    const limit = await shardLimitFor(bytes, options, 3);
    const p = await plan(bytes, { ...options, maxShardBytes: limit });
    expect(p.shardBytes.length).toBe(3);
    for (const b of p.shardBytes) expect(b).toBeLessThanOrEqual(limit);
    expect(p.bytes).toBe(p.shardBytes.reduce((a, b) => a + b, 0));
    expect(p.placement.embd).toBe(0);
    expect(p.placement.output).toBe(2);
    // Layers in order: a shard holds a contiguous run.
    expect([...p.placement.layers].sort((a, b) => a - b)).toEqual(p.placement.layers);
    const model = await loadQwen2(bytes, { ...options, maxShardBytes: limit });
    try {
      expect(model.arenas.map((a) => a.used)).toEqual(p.shardBytes);
      expect(model.arenas.map((a) => a.memory.buffer.byteLength)).toEqual(p.shardBytes.map((b) => Math.ceil(b / 65536) * 65536));
      const { layers } = model.forward.layout;
      for (const [i, l] of model.tensors.layers.entries()) {
        const end = l.down.offset + l.down.nbytes;
        expect(end).toBeLessThanOrEqual(model.arenas[layers[i].shard].used);
      }
    } finally {
      await model.dispose();
    }
  });

  it("refuses a maxShardBytes that no layer fits in, and one past 4 GiB, with the numbers", async () => {
    const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q4_0", seed: 1 }));
    await expect(loadQwen2(bytes, { threads: 1, contextLength: 64, maxShardBytes: 200_000 })).rejects.toMatchObject({
      code: "OUT_OF_MEMORY", message: expect.stringMatching(/layer 0 with its KV pools alone needs a memory of .* more than a shard's/),
    });
    await expect(loadQwen2(bytes, { threads: 1, maxShardBytes: 5 * 2 ** 30 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});

describe("sharded memories in the engine", () => {
  it("batched requests with prefix reuse give one memory's tokens over 3 memories, and every page comes back", async () => {
    const bytes = await writeGGUFBytes(synthQwen2({ shape: { ...QWEN2_PRESETS.tiny, layers: 4 }, vocabulary, type: "Q8_0", seed: 7 }));
    const options = { threads: 2, oversubscribe: true, contextLength: 128, maxSequences: 4 };
    const limit = await shardLimitFor(bytes, { ...options, maxTokens: 64 }, 3);
    const system = Array.from({ length: 40 }, (_, i) => (37 * i + 11) % 500);
    const prompts = [[...system, 1, 2, 3], [...system, 1, 2, 3], [...system, 9], [5, 6, 7, 8]];
    const results: { tokens: number[][]; cached: number[] }[] = [];
    for (const maxShardBytes of [undefined, limit]) {
      const engine = await createEngine(bytes, { ...options, maxShardBytes });
      try {
        expect(engine.model.forward.layout.shards).toBe(maxShardBytes ? 3 : 1);
        const first = await engine.generateTokens(prompts[0], { maxTokens: 12, ignoreEos: true });
        const rest = await Promise.all(prompts.slice(1).map((p) => engine.generateTokens(p, { maxTokens: 12, ignoreEos: true }).result));
        results.push({ tokens: [first.tokens, ...rest.map((r) => r.tokens)], cached: [first, ...rest].map((r) => r.usage.cachedPromptTokens) });
        expect(engine.kvStats()).toMatchObject({ inUse: 0, running: 0, waiting: 0 });
      } finally {
        await engine.dispose();
      }
    }
    expect(results[0].cached[1]).toBe(32); // 2 full pages of 16 of the shared prefix were reused
    expect(results[1]).toEqual(results[0]);
  }, 300_000);
});

describeFixtures("sharded memories: the mini fixtures", () => {
  // mini has 2 layers and a tied LM head: 3 parts, so at most 3 shards (a shard holds whole layers).
  for (const name of ["Q4_K_M", "Q8_0-pure"]) {
    it(`mini ${name} in 1, 2 and 3 shards at 1 and 2 workers`, async () => {
      const bytes = new Uint8Array(readFixture("mini", `${name}.gguf`));
      expect(await sameLogits(bytes, { contextLength: 64, maxTokens: 8 }, [1, 2, 3], tokens)).toBe(6);
    }, 300_000);
  }
});
