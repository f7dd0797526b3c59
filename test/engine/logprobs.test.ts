// Logprobs against an independent reference: the `qwasm logits` command's float32 logits of the same
// model and the same tokens (prompt + generated, one pass), log-softmaxed here in float64. The
// engine reports the log-softmax of the raw logits, so temperature, logit bias and penalties must
// not change the numbers.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import { main as logitsCommand } from "../../cli/commands/logits";
import type { CompletionResult, Delta, GeneratedTokenLogprob } from "../../engine/types";

let dir: string;
let modelPath: string;
let engine: QwasmEngine;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "qwasm-logprobs-"));
  modelPath = join(dir, "tiny.gguf");
  writeFileSync(modelPath, await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q8_0", seed: 5 })));
  engine = await createEngine(modelPath, { threads: 1, contextLength: 256, maxSequences: 4 });
});
afterAll(async () => {
  await engine?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** Rows of the logits command's output (n x vocab float32) for these ids, run in this process. */
async function referenceLogits(ids: number[]): Promise<Float32Array[]> {
  const out = join(dir, `logits-${ids.length}.f32`);
  const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    expect(await logitsCommand([modelPath, "--ids", ids.join(","), "--out", out, "--threads", "1"])).toBe(0);
  } finally {
    stderr.mockRestore();
  }
  const bytes = readFileSync(out);
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const vocab = all.length / ids.length;
  return ids.map((_, i) => all.subarray(i * vocab, (i + 1) * vocab));
}

/** log-softmax in float64. */
function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) if (v > max) max = v;
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (v) => v - lse);
}

const TOL = 2e-4; // float32 logits, possibly summed in another order by a one-pass prefill

async function checkAgainstReference(prompt: string, result: CompletionResult, top: number): Promise<number> {
  const promptIds = engine.tokenize(prompt);
  const lps = result.logprobs!;
  expect(lps).toHaveLength(result.tokens.length);
  const rows = await referenceLogits([...promptIds, ...result.tokens.slice(0, -1)]);
  let compared = 0;
  lps.forEach((lp: GeneratedTokenLogprob, i) => {
    const ref = logSoftmax(rows[promptIds.length - 1 + i]);
    expect(lp.id).toBe(result.tokens[i]);
    expect(Math.abs(lp.logprob - ref[lp.id])).toBeLessThan(TOL);
    expect(lp.topLogprobs).toHaveLength(top);
    // The reference's top ids, most likely first, ties to the lowest id.
    const order = Array.from(ref.keys()).sort((a, b) => ref[b] - ref[a] || a - b).slice(0, top);
    lp.topLogprobs.forEach((t, k) => {
      expect(Math.abs(t.logprob - ref[t.id])).toBeLessThan(TOL);
      if (k > 0) expect(t.logprob).toBeLessThanOrEqual(lp.topLogprobs[k - 1].logprob);
      // Same id unless two candidates are within the tolerance of each other.
      if (t.id !== order[k]) expect(Math.abs(ref[t.id] - ref[order[k]])).toBeLessThan(TOL);
      expect(t.bytes).toEqual(Array.from(engine.tokenizer.tokenBytes(t.id)));
      compared++;
    });
    // bytes are the token's UTF-8 bytes; token is their text.
    expect(lp.bytes).toEqual(Array.from(engine.tokenizer.tokenBytes(lp.id)));
    expect(lp.token).toBe(new TextDecoder().decode(Uint8Array.from(lp.bytes)));
    compared++;
  });
  return compared;
}

describe("logprobs", () => {
  it("equal a log-softmax of the logits command's output, whatever the sampling settings", async () => {
    const prompt = "The quick brown fox";
    let compared = 0;
    for (const options of [
      { temperature: 0 },
      { temperature: 1.5, seed: 3, topK: 40 },
      { temperature: 0.7, seed: 4, logitBias: { 100: 5, 200: -100 }, repetitionPenalty: 1.3, presencePenalty: 1 },
    ]) {
      const result = await engine.generate(prompt, { ...options, maxTokens: 8, ignoreEos: true, logprobs: true, topLogprobs: 5 });
      expect(result.tokens).toHaveLength(8);
      compared += await checkAgainstReference(prompt, result, 5);
    }
    expect(compared).toBe(3 * 8 * 6);
  });

  it("come with each delta, and the bytes of all tokens are the text", async () => {
    const stream = engine.generate("Once upon", { temperature: 1, seed: 9, maxTokens: 12, ignoreEos: true, logprobs: true, topLogprobs: 2 });
    const deltas: Delta[] = [];
    for await (const d of stream) deltas.push(d);
    const result = await stream;
    const streamed = deltas.flatMap((d) => d.logprobs ?? []);
    expect(streamed).toEqual(result.logprobs);
    for (const d of deltas) expect(d.logprobs?.length ?? 0).toBe(d.tokens.length);
    const bytes = Uint8Array.from(streamed.flatMap((lp) => lp.bytes));
    expect(new TextDecoder().decode(bytes)).toBe(result.text);
    await checkAgainstReference("Once upon", result, 2);
  });

  it("top 0 gives no alternatives; off gives none; bad values are refused", async () => {
    const none = await engine.generate("Hi", { maxTokens: 2, ignoreEos: true });
    expect(none.logprobs).toBeUndefined();
    const zero = await engine.generate("Hi", { maxTokens: 2, ignoreEos: true, logprobs: true });
    expect(zero.logprobs!.map((lp) => lp.topLogprobs)).toEqual([[], []]);
    expect(() => engine.generate("Hi", { logprobs: true, topLogprobs: 21 })).toThrow(/topLogprobs must be an integer from 0 to 20/);
    expect(() => engine.generate("Hi", { topLogprobs: 3 })).toThrow(/topLogprobs needs logprobs/);
    expect(engine.kvStats().inUse).toBe(0);
  });
});
