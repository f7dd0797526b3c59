// The official `openai` client against the real engine on a synthetic model, over loopback HTTP:
// streamed and whole completions agree with the library, and a disconnect frees the request's pages.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import { serveNode, type NodeServer } from "../../platform/http-node";
import { createOpenAIHandler } from "../../server/openai";

let engine: QwasmEngine;
let server: NodeServer;
let client: OpenAI;

beforeAll(async () => {
  const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 3 }));
  engine = await createEngine(bytes, { threads: 2, contextLength: 256, maxSequences: 4 });
  server = await serveNode(createOpenAIHandler(engine, { modelId: "qwen2-tiny" }), { port: 0 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
});
afterAll(async () => {
  await server.close();
  await engine.dispose();
});

describe("openai client against qwasm", () => {
  it("chat, whole and streamed, give the library's greedy text", async () => {
    const messages = [{ role: "user" as const, content: "Hello there" }];
    const expected = await engine.chat(messages, { maxTokens: 12, temperature: 0, ignoreEos: true });
    const whole = await client.chat.completions.create({
      model: "qwen2-tiny", messages, max_tokens: 12, temperature: 0, ignore_eos: true,
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(whole.choices[0].message.content).toBe(expected.text);
    expect(whole.usage?.completion_tokens).toBe(12);
    const stream = await client.chat.completions.create({
      model: "qwen2-tiny", messages, max_tokens: 12, temperature: 0, ignore_eos: true, stream: true,
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe(expected.text);
  });

  it("completions and models", async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["qwen2-tiny"]);
    const c = await client.completions.create({ model: "qwen2-tiny", prompt: "Once upon", max_tokens: 5, temperature: 0 });
    expect(c.choices[0].finish_reason).toMatch(/stop|length/);
  });

  it("a prompt past the context is a 400 error", async () => {
    await expect(client.completions.create({ model: "qwen2-tiny", prompt: "word ".repeat(400), max_tokens: 5 }))
      .rejects.toMatchObject({ status: 400 });
  });

  it("a client that disconnects mid-stream frees its pages", async () => {
    const abort = new AbortController();
    const stream = await client.chat.completions.create({
      model: "qwen2-tiny", messages: [{ role: "user", content: "Tell me everything" }], max_tokens: 200, stream: true, ignore_eos: true,
    } as OpenAI.ChatCompletionCreateParamsStreaming, { signal: abort.signal });
    let chunks = 0;
    try {
      for await (const _ of stream) if (++chunks === 3) abort.abort();
    } catch {
      // the client reports the abort as an error or just ends the stream, depending on timing
    }
    expect(chunks).toBeLessThan(50);
    for (let i = 0; i < 100 && engine.kvStats().running > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(engine.kvStats()).toMatchObject({ running: 0, inUse: 0, reserved: 0 });
  });
});
