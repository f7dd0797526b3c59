// The engine on a synthetic qwen2moe model: continuous batching must not change a request's output
// (its tokens share each step's expert groups with seven others), pages come back, prefix reuse
// gives the same tokens, and the OpenAI handler serves it like a dense model.
import { describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import { createOpenAIHandler } from "../../server/openai";

const vocabulary = await readQwen2Vocabulary();
const modelBytes = await writeGGUFBytes(synthQwen2({ shape: "tiny-moe", vocabulary, type: "Q8_0", seed: 11 }));

function randomPrompt(n: number, seed: number): number[] {
  let x = seed;
  return Array.from({ length: n }, () => (x = (x * 1103515245 + 12345) >>> 0) % 512);
}

async function engine(threads: number): Promise<QwasmEngine> {
  return createEngine(modelBytes, { threads, oversubscribe: true, contextLength: 256, maxSequences: 8, maxTokens: 64 });
}

describe("continuous batching on a qwen2moe model", () => {
  for (const threads of [1, 2]) {
    it(`greedy output is the same alone and among seven others (${threads} thread${threads > 1 ? "s" : ""})`, async () => {
      const e = await engine(threads);
      const prompts = Array.from({ length: 8 }, (_, i) => randomPrompt(5 + 9 * i, 100 + i));
      const alone: number[][] = [];
      for (const p of prompts) alone.push((await e.generateTokens(p, { maxTokens: 24, ignoreEos: true })).tokens);
      const together = await Promise.all(prompts.map((p) => e.generateTokens(p, { maxTokens: 24, ignoreEos: true }).result));
      expect(together.length).toBe(8);
      together.forEach((r, i) => expect(r.tokens, `request ${i}`).toEqual(alone[i]));
      expect(e.kvStats()).toMatchObject({ inUse: 0, reserved: 0, running: 0, waiting: 0 });
      await e.dispose();
    });
  }

  it("a repeated prompt prefix gives the same tokens", async () => {
    const e = await engine(1);
    const p = randomPrompt(40, 9);
    const first = await e.generateTokens(p, { maxTokens: 12, ignoreEos: true }).result;
    const again = await e.generateTokens(p, { maxTokens: 12, ignoreEos: true }).result;
    expect(again.tokens).toEqual(first.tokens);
    await e.dispose();
  });

  it("the OpenAI handler: a chat completion gives the library's greedy text", async () => {
    const e = await engine(1);
    const messages = [{ role: "user" as const, content: "Hello there" }];
    const expected = await e.chat(messages, { maxTokens: 10, temperature: 0, ignoreEos: true });
    const handler = createOpenAIHandler(e, { modelId: "qwen2moe-tiny" });
    const response = await handler(new Request("http://localhost/v1/chat/completions", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "qwen2moe-tiny", messages, max_tokens: 10, temperature: 0, ignore_eos: true }),
    }));
    expect(response.status).toBe(200);
    const body = await response.json() as { choices: { message: { content: string } }[]; usage: { completion_tokens: number } };
    expect(body.choices[0].message.content).toBe(expected.text);
    expect(body.usage.completion_tokens).toBe(10);
    await e.dispose();
  });
});
