// The official `openai` npm client against serveNode(createOpenAIHandler(fake engine)): what real
// callers will do.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveNode, type NodeServer } from "../../platform/http-node";
import { createOpenAIHandler } from "../../server/openai";
import { FakeEngine } from "./fake-engine";

let server: NodeServer;
let client: OpenAI;
const engine = new FakeEngine();

beforeAll(async () => {
  server = await serveNode(createOpenAIHandler(engine, { apiKey: "sk-test" }), { port: 0 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "sk-test", maxRetries: 0 });
});
afterAll(() => server.close());

describe("the openai client", () => {
  it("creates a chat completion", async () => {
    const completion = await client.chat.completions.create({
      model: "fake-qwen2", messages: [{ role: "system", content: "Be kind." }, { role: "user", content: "Hi" }], temperature: 0, seed: 1,
    });
    expect(completion.object).toBe("chat.completion");
    expect(completion.choices[0].message).toEqual({ role: "assistant", content: "Hello, world!" });
    expect(completion.choices[0].finish_reason).toBe("stop");
    expect(completion.usage).toMatchObject({ prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 });
    expect(engine.lastCall.options).toMatchObject({ temperature: 0, seed: 1 });
  });

  it("streams a chat completion, with usage", async () => {
    const stream = await client.chat.completions.create({
      model: "fake-qwen2", messages: [{ role: "user", content: "Hi" }], stream: true, stream_options: { include_usage: true }, max_tokens: 4,
    });
    let content = "";
    const finishReasons: (string | null)[] = [];
    let usage;
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? "";
      if (chunk.choices[0]) finishReasons.push(chunk.choices[0].finish_reason);
      if (chunk.usage) usage = chunk.usage;
    }
    expect(content).toBe("Hello, world");
    expect(finishReasons.at(-1)).toBe("length");
    expect(usage).toMatchObject({ completion_tokens: 4 });
  });

  it("runs the stream helper to the final message", async () => {
    const runner = client.chat.completions.stream({ model: "fake-qwen2", messages: [{ role: "user", content: "Hi" }] });
    const final = await runner.finalChatCompletion();
    expect(final.choices[0].message.content).toBe("Hello, world!");
  });

  it("creates a text completion, streamed and not", async () => {
    const completion = await client.completions.create({ model: "fake-qwen2", prompt: "Once", max_tokens: 3 });
    expect(completion.choices[0]).toMatchObject({ text: "Hello,", finish_reason: "length" });
    const stream = await client.completions.create({ model: "fake-qwen2", prompt: "Once", stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
    expect(text).toBe("Hello, world!");
  });

  it("lists and retrieves the model", async () => {
    const models = [];
    for await (const model of client.models.list()) models.push(model.id);
    expect(models).toEqual(["fake-qwen2"]);
    expect((await client.models.retrieve("fake-qwen2")).id).toBe("fake-qwen2");
  });

  it("surfaces a bad parameter as an APIError with status 400", async () => {
    const error = await client.chat.completions.create({ model: "fake-qwen2", messages: [{ role: "user", content: "Hi" }], temperature: 5 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ status: 400, param: "temperature", code: "invalid_value", type: "invalid_request_error" });
  });

  it("surfaces a context overflow", async () => {
    const error = await client.completions.create({ model: "fake-qwen2", prompt: "x".repeat(500) }).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 400, code: "context_length_exceeded" });
  });

  it("surfaces a wrong key as AuthenticationError", async () => {
    const wrong = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "sk-nope", maxRetries: 0 });
    await expect(wrong.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });
});
