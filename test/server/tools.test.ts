// The official `openai` client against `qwasm serve` (the command, in this process) on a
// random-weight synthetic model: tool calls with tool_choice "required", a named function and
// "none", a two-turn round trip (call, the result as role "tool", an answer), streamed and whole,
// the arguments validated against the schema with ajv; logprobs for chat and completions.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { Ajv2020 } from "ajv/dist/2020.js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { main as serve } from "../../cli/commands/serve";

const weather = {
  type: "function" as const,
  function: {
    name: "get_weather", description: "The weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string", enum: ["Paris", "Oslo", "Lima"] }, days: { type: "integer", minimum: 1, maximum: 7 } },
      required: ["city", "days"], additionalProperties: false,
    },
  },
};
const time = {
  type: "function" as const,
  function: { name: "get_time", parameters: { type: "object", properties: { zone: { type: "string", enum: ["UTC", "CET"] } }, required: ["zone"] } },
};
const tools = [weather, time];
const validate = new Map(tools.map((t) => [t.function.name, new Ajv2020({ strict: false }).compile(t.function.parameters)]));

let dir: string;
let exit: Promise<number>;
let client: OpenAI;
const MODEL = "qwen2-tiny";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "qwasm-tools-"));
  const modelPath = join(dir, "tiny.gguf");
  writeFileSync(modelPath, await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q8_0", seed: 21 })));
  let printed = "";
  const stdout = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => { printed += String(chunk); return true; });
  const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  exit = serve([modelPath, "--port", "0", "--threads", "1", "--context", "1024", "--max-sequences", "4", "--any-model"]);
  // A guard against a hang, not a timing assertion: serve prints its URL once the model is loaded.
  for (let i = 0; i < 6000 && !printed.includes("\n"); i++) await Promise.race([exit, new Promise((r) => setTimeout(r, 10))]);
  stdout.mockRestore();
  stderr.mockRestore();
  client = new OpenAI({ baseURL: printed.trim(), apiKey: "unused", maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  process.emit("SIGINT");
  expect(await exit).toBe(0);
  stderr.mockRestore();
  rmSync(dir, { recursive: true, force: true });
});

function checkCall(call: OpenAI.ChatCompletionMessageToolCall, names = tools.map((t) => t.function.name)): void {
  expect(call.type).toBe("function");
  expect(call.id).toMatch(/^call_[0-9a-f]{24}$/);
  if (call.type !== "function") return;
  expect(names).toContain(call.function.name);
  expect(validate.get(call.function.name)!(JSON.parse(call.function.arguments)), call.function.arguments).toBe(true);
}

const question: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "What is the weather in Oslo this week?" }];

describe("tool calls through the openai client", () => {
  it("a two-turn round trip: required call, its result as role tool, then an answer (whole)", async () => {
    const first = await client.chat.completions.create({
      model: MODEL, messages: question, tools, tool_choice: "required", parallel_tool_calls: false, seed: 1, max_tokens: 120,
    });
    const choice = first.choices[0];
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message.content).toBeNull();
    expect(choice.message.tool_calls).toHaveLength(1);
    const call = choice.message.tool_calls![0];
    checkCall(call);

    const second = await client.chat.completions.create({
      model: MODEL, tools, tool_choice: "none", seed: 2, max_tokens: 8,
      messages: [...question, choice.message, { role: "tool", tool_call_id: call.id, content: '{"temp_c": -3, "sky": "snow"}' }],
    });
    expect(second.choices[0].message.tool_calls).toBeUndefined();
    expect(["stop", "length"]).toContain(second.choices[0].finish_reason);
    expect(typeof second.choices[0].message.content).toBe("string");
    // The call and the tool's answer are in the second prompt (tool_choice "none" leaves the tools out of both).
    const baseline = await client.chat.completions.create({ model: MODEL, tools, tool_choice: "none", messages: question, max_tokens: 1 });
    expect(second.usage!.prompt_tokens).toBeGreaterThan(baseline.usage!.prompt_tokens + 20);
  });

  it("the same round trip streamed: OpenAI's tool-call deltas, assembled by the client's stream helper", async () => {
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    const stream = await client.chat.completions.create({
      model: MODEL, messages: question, tools, tool_choice: "required", parallel_tool_calls: false, seed: 3, max_tokens: 120, stream: true,
    });
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0].choices[0].delta.role).toBe("assistant");
    const pieces = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(pieces.length).toBeGreaterThan(1); // the name, then the arguments in pieces
    expect(pieces[0]).toMatchObject({ index: 0, type: "function", function: { arguments: "" } });
    expect(pieces[0].id).toMatch(/^call_/);
    expect(pieces.slice(1).every((p) => p.id === undefined && p.function?.name === undefined)).toBe(true);
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe("tool_calls");
    const args = pieces.map((p) => p.function?.arguments ?? "").join("");
    checkCall({ id: pieces[0].id!, type: "function", function: { name: pieces[0].function!.name!, arguments: args } });

    const runner = client.chat.completions.stream({
      model: MODEL, messages: question, tools, tool_choice: "required", parallel_tool_calls: false, seed: 4, max_tokens: 120,
    });
    const final = await runner.finalChatCompletion();
    expect(final.choices[0].finish_reason).toBe("tool_calls");
    const call = final.choices[0].message.tool_calls![0];
    checkCall(call);

    const answer = await client.chat.completions.create({
      model: MODEL, tools, seed: 5, max_tokens: 6, stream: true, tool_choice: "none",
      messages: [...question, final.choices[0].message, { role: "tool", tool_call_id: call.id, content: "snow" }],
    });
    let text = "";
    for await (const chunk of answer) {
      expect(chunk.choices[0]?.delta.tool_calls).toBeUndefined();
      text += chunk.choices[0]?.delta.content ?? "";
    }
    expect(text.length).toBeGreaterThan(0);
  });

  it("a named function is always the one called; none never calls", async () => {
    for (const seed of [6, 7, 8]) {
      const named = await client.chat.completions.create({
        model: MODEL, messages: question, tools, tool_choice: { type: "function", function: { name: "get_time" } }, parallel_tool_calls: false, seed, max_tokens: 80,
      });
      expect(named.choices[0].finish_reason).toBe("tool_calls");
      for (const call of named.choices[0].message.tool_calls!) checkCall(call, ["get_time"]);
      const none = await client.chat.completions.create({ model: MODEL, messages: question, tools, tool_choice: "none", seed, max_tokens: 16 });
      expect(none.choices[0].message.tool_calls).toBeUndefined();
      expect(none.choices[0].finish_reason).not.toBe("tool_calls");
    }
  });

  it("refuses a parameter schema it cannot express, and a named function that is not in tools", async () => {
    await expect(client.chat.completions.create({
      model: MODEL, messages: question, tools: [{ type: "function", function: { name: "f", parameters: { type: "object", patternProperties: { x: {} } } } }],
    })).rejects.toMatchObject({ status: 400, param: "tools", code: "unsupported_schema" });
    await expect(client.chat.completions.create({
      model: MODEL, messages: question, tools, tool_choice: { type: "function", function: { name: "nope" } },
    })).rejects.toMatchObject({ status: 400, param: "tool_choice" });
  });
});

describe("logprobs through the openai client", () => {
  it("chat: token, logprob, bytes and top_logprobs, the same streamed and whole", async () => {
    const params = { model: MODEL, messages: question, temperature: 0, max_tokens: 6, logprobs: true, top_logprobs: 3, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsNonStreaming;
    const whole = await client.chat.completions.create(params);
    const content = whole.choices[0].logprobs!.content!;
    expect(content).toHaveLength(6);
    for (const t of content) {
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs[0].logprob).toBeGreaterThanOrEqual(t.logprob); // greedy: the top one
      expect(t.top_logprobs[0].token).toBe(t.token);
      for (let k = 1; k < 3; k++) expect(t.top_logprobs[k].logprob).toBeLessThanOrEqual(t.top_logprobs[k - 1].logprob);
    }
    expect(new TextDecoder().decode(Uint8Array.from(content.flatMap((t) => t.bytes!)))).toBe(whole.choices[0].message.content);

    const stream = await client.chat.completions.create({ ...params, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming);
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    expect(streamed).toEqual(content);
  });

  it("completions: tokens, token_logprobs, top_logprobs and text_offset", async () => {
    const c = await client.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 5, temperature: 0, logprobs: 2, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    const lp = c.choices[0].logprobs!;
    expect(lp.tokens).toHaveLength(5);
    expect(lp.token_logprobs).toHaveLength(5);
    expect(lp.top_logprobs!.every((t) => Object.keys(t).length >= 1 && Object.keys(t).length <= 2)).toBe(true);
    expect(lp.text_offset).toEqual(lp.tokens!.map((_, i) => lp.tokens!.slice(0, i).join("").length));
    const stream = await client.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 5, temperature: 0, logprobs: 2, ignore_eos: true, stream: true } as OpenAI.CompletionCreateParamsStreaming);
    const tokens: string[] = [];
    const values: number[] = [];
    for await (const chunk of stream) {
      tokens.push(...(chunk.choices[0]?.logprobs?.tokens ?? []));
      values.push(...(chunk.choices[0]?.logprobs?.token_logprobs ?? []));
    }
    expect(tokens).toEqual(lp.tokens);
    expect(values).toEqual(lp.token_logprobs);
  });
});
