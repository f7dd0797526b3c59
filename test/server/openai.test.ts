// The OpenAI handler against a fake engine: routes, parameters, response shapes, SSE framing, errors,
// body limits, API keys, CORS, aborts.
import { describe, expect, it } from "vitest";
import { createOpenAIHandler, type OpenAIHandlerOptions } from "../../server/openai";
import { FakeEngine, REPLY } from "./fake-engine";

const BASE = "http://qwasm.test";

function setup(options: OpenAIHandlerOptions = {}) {
  const engine = new FakeEngine();
  const handler = createOpenAIHandler(engine, options);
  return { engine, handler };
}

function post(path: string, body: unknown, headers: Record<string, string> = {}, init: RequestInit = {}): Request {
  return new Request(BASE + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });
}

const chat = (body: Record<string, unknown> = {}) =>
  post("/v1/chat/completions", { model: "fake-qwen2", messages: [{ role: "user", content: "Hi" }], ...body });

/** The events of an SSE body, each `data:` payload as a string. */
function events(text: string): string[] {
  expect(text.endsWith("\n\n")).toBe(true);
  return text.slice(0, -2).split("\n\n").map((block) => {
    expect(block.startsWith("data: ")).toBe(true);
    expect(block.includes("\n")).toBe(false);
    return block.slice("data: ".length);
  });
}

async function errorOf(response: Response, status: number) {
  expect(response.status).toBe(status);
  expect(response.headers.get("content-type")).toBe("application/json");
  const body = await response.json();
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
  expect(JSON.stringify(body)).not.toMatch(/secret|at .*\.ts/);
  return body.error as { message: string; type: string; param: string | null; code: string | null };
}

describe("routes", () => {
  it("lists the one model, named after the engine or options.modelId", async () => {
    const { handler } = setup();
    const response = await handler(new Request(`${BASE}/v1/models`));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ object: "list", data: [{ id: "fake-qwen2", object: "model", created: 0, owned_by: "qwasm" }] });

    const named = createOpenAIHandler(new FakeEngine(), { modelId: "qwen2-0.5b" });
    expect((await (await named(new Request(`${BASE}/v1/models`))).json()).data[0].id).toBe("qwen2-0.5b");
    expect((await (await named(new Request(`${BASE}/v1/models/qwen2-0.5b`))).json()).id).toBe("qwen2-0.5b");
    const missing = await errorOf(await named(new Request(`${BASE}/v1/models/gpt-4`)), 404);
    expect(missing.code).toBe("model_not_found");
  });

  it("answers unknown routes with 404 and wrong methods with 405", async () => {
    const { handler } = setup();
    const unknown = await errorOf(await handler(new Request(`${BASE}/v1/embeddings`, { method: "POST" })), 404);
    expect(unknown.code).toBe("unknown_url");
    expect(unknown.type).toBe("invalid_request_error");
    await errorOf(await handler(new Request(`${BASE}/`)), 404);

    const get = await handler(new Request(`${BASE}/v1/chat/completions`));
    expect(get.headers.get("allow")).toBe("POST");
    expect((await errorOf(get, 405)).code).toBe("method_not_allowed");
    await errorOf(await handler(new Request(`${BASE}/v1/completions`, { method: "PUT", body: "{}" })), 405);
    await errorOf(await handler(post("/v1/models", {})), 405);
    // Without CORS a preflight is just a wrong method.
    await errorOf(await handler(new Request(`${BASE}/v1/chat/completions`, { method: "OPTIONS" })), 405);
  });
});

describe("chat completions", () => {
  it("returns one chat.completion with the reply, finish reason and usage", async () => {
    const { engine, handler } = setup();
    const response = await handler(chat());
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json");
    const body = await response.json();
    expect(body.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect(body.created).toBeCloseTo(Date.now() / 1000, -1);
    expect(body).toEqual({
      id: body.id, object: "chat.completion", created: body.created, model: "fake-qwen2",
      choices: [{ index: 0, message: { role: "assistant", content: "Hello, world!" }, logprobs: null, finish_reason: "stop" }],
      usage: { prompt_tokens: 2, completion_tokens: 5, total_tokens: 7, prompt_tokens_details: { cached_tokens: 0 } },
    });
    expect(engine.lastCall.kind).toBe("chat");
    expect(engine.lastCall.messages).toEqual([{ role: "user", content: "Hi" }]);
  });

  it("finishes with length at max_tokens, and prefers max_completion_tokens", async () => {
    const { engine, handler } = setup();
    const body = await (await handler(chat({ max_tokens: 2 }))).json();
    expect(body.choices[0]).toMatchObject({ message: { content: "Hello," }, finish_reason: "length" });
    expect(body.usage.completion_tokens).toBe(2);
    await handler(chat({ max_tokens: 2, max_completion_tokens: 3 }));
    expect(engine.lastCall.options.maxTokens).toBe(3);
    await handler(chat());
    expect(engine.lastCall.options.maxTokens).toBeUndefined();
  });

  it("passes every sampling parameter to the engine", async () => {
    const { engine, handler } = setup();
    const response = await handler(chat({
      temperature: 0.7, top_p: 0.9, top_k: 40, min_p: 0.05, repetition_penalty: 1.1, presence_penalty: 0.5,
      frequency_penalty: -0.5, seed: 42, stop: "world", logit_bias: { "11": -100, "42": 5.5 }, n: 1,
      stream: false, user: "ignored", logprobs: false, some_future_field: { x: 1 },
    }));
    expect(response.status).toBe(200);
    expect((await response.json()).choices[0].message.content).toBe("Hello, ");
    const { signal, ...options } = engine.lastCall.options;
    expect(signal).toBeInstanceOf(AbortSignal);
    expect(options).toEqual({
      temperature: 0.7, topP: 0.9, topK: 40, minP: 0.05, repetitionPenalty: 1.1, presencePenalty: 0.5,
      frequencyPenalty: -0.5, seed: 42, stop: ["world"], logitBias: new Map([[11, -100], [42, 5.5]]),
    });
  });

  it("uses OpenAI's defaults: temperature 1, nulls as absent, top_k -1 as no limit", async () => {
    const { engine, handler } = setup();
    await handler(chat({ temperature: null, top_p: null, stop: null, max_tokens: null, n: null, top_k: -1 }));
    const { signal, ...options } = engine.lastCall.options;
    void signal;
    expect(options).toEqual({ temperature: 1, topK: 0 });
  });

  it("takes text parts, names and tool calls, and maps developer to system", async () => {
    const { engine, handler } = setup();
    const response = await handler(chat({
      messages: [
        { role: "developer", content: "Be brief." },
        { role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b", extra: 1 }], name: "ann" },
        { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }] },
        { role: "tool", content: "42", tool_call_id: "c1" },
      ],
    }));
    expect(response.status).toBe(200);
    expect(engine.lastCall.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }], name: "ann" },
      { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }] },
      { role: "tool", content: "42", tool_call_id: "c1" },
    ]);
  });
});

describe("completions", () => {
  it("returns one text_completion; the prompt may be an array of one string", async () => {
    const { engine, handler } = setup();
    for (const prompt of ["Once upon", ["Once upon"]]) {
      const response = await handler(post("/v1/completions", { model: "fake-qwen2", prompt, max_tokens: 100 }));
      expect(response.status).toBe(200);
      const body = await response.json();
      expect(body.id).toMatch(/^cmpl-[0-9a-f]{32}$/);
      expect(body).toEqual({
        id: body.id, object: "text_completion", created: body.created, model: "fake-qwen2",
        choices: [{ text: "Hello, world!", index: 0, logprobs: null, finish_reason: "stop" }],
        usage: { prompt_tokens: 9, completion_tokens: 5, total_tokens: 14, prompt_tokens_details: { cached_tokens: 0 } },
      });
      expect(engine.lastCall).toMatchObject({ kind: "generate", prompt: "Once upon" });
    }
  });

  it("defaults max_tokens to 16, as OpenAI does", async () => {
    const { engine, handler } = setup();
    await handler(post("/v1/completions", { prompt: "x" }));
    expect(engine.lastCall.options.maxTokens).toBe(16);
  });
});

describe("streaming", () => {
  it("frames a chat stream exactly as OpenAI does, skipping empty deltas", async () => {
    const { handler } = setup();
    const response = await handler(chat({ stream: true }));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(response.headers.get("cache-control")).toBe("no-cache");
    const text = await response.text();
    const first = JSON.parse(events(text)[0]);
    const head = { id: first.id, object: "chat.completion.chunk", created: first.created, model: "fake-qwen2" };
    const chunk = (delta: object, finish: string | null) =>
      `data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
    expect(first.id).toMatch(/^chatcmpl-/);
    expect(text).toBe(
      chunk({ role: "assistant", content: "Hello" }, null) +
      chunk({ content: "," }, null) +
      chunk({ content: " world" }, null) +
      chunk({ content: "!" }, null) +
      chunk({}, "stop") +
      "data: [DONE]\n\n");
    expect(REPLY).toContain("");
  });

  it("adds usage: null to each chunk and a usage chunk with stream_options.include_usage", async () => {
    const { handler } = setup();
    const text = await (await handler(chat({ stream: true, max_tokens: 2, stream_options: { include_usage: true } }))).text();
    const all = events(text);
    expect(all.at(-1)).toBe("[DONE]");
    const chunks = all.slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks.map((c) => c.choices[0]?.delta)).toEqual([{ role: "assistant", content: "Hello" }, { content: "," }, {}, undefined]);
    expect(chunks.slice(0, 3).every((c) => c.usage === null)).toBe(true);
    expect(chunks[2].choices[0].finish_reason).toBe("length");
    expect(chunks[3]).toEqual({
      id: chunks[0].id, object: "chat.completion.chunk", created: chunks[0].created, model: "fake-qwen2", choices: [],
      usage: { prompt_tokens: 2, completion_tokens: 2, total_tokens: 4, prompt_tokens_details: { cached_tokens: 0 } },
    });
  });

  it("tells the role even when the reply is empty", async () => {
    const { engine, handler } = setup();
    engine.pieces = [""];
    const chunks = events(await (await handler(chat({ stream: true }))).text()).slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks.map((c) => [c.choices[0].delta, c.choices[0].finish_reason])).toEqual([
      [{ role: "assistant", content: "" }, null],
      [{}, "stop"],
    ]);
  });

  it("frames a completions stream", async () => {
    const { handler } = setup();
    const text = await (await handler(post("/v1/completions", { prompt: "x", stream: true, stream_options: { include_usage: false } }))).text();
    const first = JSON.parse(events(text)[0]);
    const head = { id: first.id, object: "text_completion", created: first.created, model: "fake-qwen2" };
    const chunk = (piece: string, finish: string | null) =>
      `data: ${JSON.stringify({ ...head, choices: [{ text: piece, index: 0, logprobs: null, finish_reason: finish }] })}\n\n`;
    expect(first.id).toMatch(/^cmpl-/);
    expect(text).toBe(chunk("Hello", null) + chunk(",", null) + chunk(" world", null) + chunk("!", null) +
      chunk("", "stop") + "data: [DONE]\n\n");
  });

  it("ignores stream_options when not streaming", async () => {
    const { handler } = setup();
    const body = await (await handler(chat({ stream_options: { include_usage: true } }))).json();
    expect(body.object).toBe("chat.completion");
  });

  it("ends with an error event (and no [DONE]) when the engine fails midway", async () => {
    const errors: unknown[] = [];
    const { handler } = setup({ onError: (e) => errors.push(e) });
    const response = await handler(chat({ stream: true, messages: [{ role: "user", content: "MIDWAY" }] }));
    expect(response.status).toBe(200);
    const all = events(await response.text());
    expect(JSON.parse(all[0]).choices[0].delta.content).toBe("Hello");
    expect(JSON.parse(all[1])).toEqual({ error: {
      message: "the server failed to complete the request; its log says why", type: "server_error", param: null, code: "internal_error",
    } });
    expect(all.length).toBe(2);
    expect(errors).toHaveLength(1);
  });
});

describe("validation", () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ["temperature as a string", { temperature: "0.5" }, "temperature"],
    ["negative temperature", { temperature: -0.1 }, "temperature"],
    ["temperature above 2", { temperature: 2.5 }, "temperature"],
    ["top_p 0", { top_p: 0 }, "top_p"],
    ["top_p above 1", { top_p: 1.5 }, "top_p"],
    ["fractional max_tokens", { max_tokens: 1.5 }, "max_tokens"],
    ["negative max_tokens", { max_tokens: -1 }, "max_tokens"],
    ["zero max_tokens", { max_tokens: 0 }, "max_tokens"],
    ["max_tokens as a string", { max_tokens: "10" }, "max_tokens"],
    ["bad max_completion_tokens", { max_completion_tokens: 2.5 }, "max_completion_tokens"],
    ["n = 2", { n: 2 }, "n"],
    ["n as a string", { n: "1" }, "n"],
    ["five stop strings", { stop: ["a", "b", "c", "d", "e"] }, "stop"],
    ["a stop that is not a string", { stop: [1] }, "stop"],
    ["an empty stop string", { stop: "" }, "stop"],
    ["fractional seed", { seed: 1.5 }, "seed"],
    ["presence_penalty above 2", { presence_penalty: 3 }, "presence_penalty"],
    ["frequency_penalty below -2", { frequency_penalty: -2.5 }, "frequency_penalty"],
    ["logit_bias as an array", { logit_bias: [1] }, "logit_bias"],
    ["logit_bias key not a token id", { logit_bias: { abc: 1 } }, "logit_bias"],
    ["logit_bias negative key", { logit_bias: { "-1": 1 } }, "logit_bias"],
    ["logit_bias out of range", { logit_bias: { "5": 101 } }, "logit_bias"],
    ["logit_bias value a string", { logit_bias: { "5": "1" } }, "logit_bias"],
    ["stream as a string", { stream: "yes" }, "stream"],
    ["stream_options not an object", { stream: true, stream_options: true }, "stream_options"],
    ["include_usage not a boolean", { stream: true, stream_options: { include_usage: 1 } }, "stream_options.include_usage"],
    ["top_k below -1", { top_k: -2 }, "top_k"],
    ["fractional top_k", { top_k: 1.5 }, "top_k"],
    ["min_p above 1", { min_p: 2 }, "min_p"],
    ["repetition_penalty 0", { repetition_penalty: 0 }, "repetition_penalty"],
    ["model not a string", { model: 5 }, "model"],
    ["no messages", { messages: undefined }, "messages"],
    ["empty messages", { messages: [] }, "messages"],
    ["messages not an array", { messages: "hi" }, "messages"],
    ["a message not an object", { messages: ["hi"] }, "messages[0]"],
    ["an unknown role", { messages: [{ role: "wizard", content: "x" }] }, "messages[0].role"],
    ["a missing role", { messages: [{ content: "x" }] }, "messages[0].role"],
    ["missing user content", { messages: [{ role: "user" }] }, "messages[0].content"],
    ["content a number", { messages: [{ role: "user", content: 5 }] }, "messages[0].content"],
    ["an image part", { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }, "messages[0].content[0]"],
    ["a name not a string", { messages: [{ role: "user", content: "x", name: 1 }] }, "messages[0].name"],
  ];
  it.each(cases)("rejects %s with 400", async (_, fields, param) => {
    const { engine, handler } = setup();
    const error = await errorOf(await handler(chat(fields)), 400);
    expect(error.type).toBe("invalid_request_error");
    expect(error.param).toBe(param);
    expect(error.message).toContain(param.replace(/\[.*$/, ""));
    expect(engine.calls).toHaveLength(0);
  });

  it.each([
    ["no prompt", {}],
    ["a prompt array of two strings", { prompt: ["a", "b"] }],
    ["a token-id prompt", { prompt: [1, 2, 3] }],
    ["a number prompt", { prompt: 5 }],
  ])("rejects a completion with %s", async (_, body) => {
    const { handler } = setup();
    expect((await errorOf(await handler(post("/v1/completions", body)), 400)).param).toBe("prompt");
  });

  it("rejects bodies that are not JSON objects", async () => {
    const { handler } = setup();
    for (const body of ["{not json", "[1,2]", "null", "42", ""]) {
      const error = await errorOf(await handler(post("/v1/chat/completions", body)), 400);
      expect(error.code).toBe("invalid_json");
    }
    const bytes = new Uint8Array([0x7b, 0xff, 0x7d]);
    await errorOf(await handler(new Request(`${BASE}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: bytes })), 400);
  });

  it("rejects other content types with 415", async () => {
    const { handler } = setup();
    for (const type of ["text/plain", "application/x-www-form-urlencoded", undefined]) {
      const headers: Record<string, string> = type ? { "content-type": type } : {};
      const request = new Request(`${BASE}/v1/chat/completions`, { method: "POST", headers, body: new Blob([JSON.stringify({ messages: [] })]) });
      expect((await errorOf(await handler(request), 415)).code).toBe("unsupported_media_type");
    }
    const ok = await handler(chat({}).clone());
    expect(ok.status).toBe(200);
    const withCharset = await handler(post("/v1/completions", { prompt: "x" }, { "content-type": "application/json; charset=utf-8" }));
    expect(withCharset.status).toBe(200);
  });
});

describe("engine errors", () => {
  const user = (content: string) => ({ messages: [{ role: "user", content }] });

  it("maps INVALID_ARGUMENT to 400 with the engine's message", async () => {
    const { handler } = setup();
    const error = await errorOf(await handler(chat(user("INVALID"))), 400);
    expect(error).toEqual({ message: "sampling option topK = 7: the fake says no", type: "invalid_request_error", param: null, code: "invalid_value" });
  });

  it("maps CONTEXT_OVERFLOW to 400 context_length_exceeded", async () => {
    const { handler } = setup();
    const error = await errorOf(await handler(post("/v1/completions", { prompt: "x".repeat(201) })), 400);
    expect(error.code).toBe("context_length_exceeded");
    expect(error.message).toContain("201 tokens");
  });

  it("maps other failures to a generic 500 and tells onError", async () => {
    const errors: unknown[] = [];
    const { handler } = setup({ onError: (e) => errors.push(e) });
    for (const content of ["CRASH", "WORKER", "MIDWAY"]) {
      const error = await errorOf(await handler(chat(user(content))), 500);
      expect(error).toEqual({ message: "the server failed to complete the request; its log says why", type: "server_error", param: null, code: "internal_error" });
    }
    expect(errors.map((e) => (e as Error).message)).toEqual(["secret internal detail", "worker 3 died: secret detail", "secret midway failure"]);
  });

  it("maps QUEUE_FULL to 429 with Retry-After, in OpenAI's rate-limit shape, without blaming the server", async () => {
    const errors: unknown[] = [];
    const { handler } = setup({ onError: (e) => errors.push(e) });
    for (const request of [chat(user("BUSY")), chat({ ...user("BUSY"), stream: true }), post("/v1/completions", { prompt: "BUSY" })]) {
      const response = await handler(request);
      expect(response.headers.get("retry-after")).toBe("1");
      const error = await errorOf(response, 429);
      expect(error).toMatchObject({ type: "requests", param: null, code: "rate_limit_exceeded" });
      expect(error.message).toMatch(/busy.*retry/);
    }
    expect(errors).toEqual([]);
  });
});

describe("model", () => {
  it("answers a request that names the served model or none (null counts as none)", async () => {
    const { engine, handler } = setup();
    for (const model of ["fake-qwen2", undefined, null]) {
      expect((await handler(chat({ model }))).status).toBe(200);
      expect((await handler(post("/v1/completions", { model, prompt: "Once" }))).status).toBe(200);
    }
    expect(engine.calls).toHaveLength(6);
    const named = createOpenAIHandler(new FakeEngine(), { modelId: "qwen2-0.5b" });
    expect((await named(chat({ model: "qwen2-0.5b" }))).status).toBe(200);
  });

  it("answers another model with OpenAI's 404 model_not_found, naming the served one", async () => {
    const { engine, handler } = setup();
    for (const request of [chat({ model: "gpt-4o" }), chat({ model: "gpt-4o", stream: true }), post("/v1/completions", { model: "FAKE-QWEN2", prompt: "Once" })]) {
      const error = await errorOf(await handler(request), 404);
      expect(error).toMatchObject({ type: "invalid_request_error", param: "model", code: "model_not_found" });
      expect(error.message).toContain('"fake-qwen2"');
    }
    expect(engine.calls).toHaveLength(0);
  });

  it("accepts any model with anyModel, and still refuses one that is not a string", async () => {
    const { engine, handler } = setup({ anyModel: true });
    const response = await handler(chat({ model: "gpt-4o" }));
    expect(response.status).toBe(200);
    expect((await response.json()).model).toBe("fake-qwen2");
    expect((await errorOf(await handler(chat({ model: 5 })), 400)).param).toBe("model");
    expect(engine.calls).toHaveLength(1);
  });
});

describe("what qwasm does not do", () => {
  const refused: [string, Record<string, unknown>, string][] = [
    ["a tool parameter schema qwasm cannot express", { tools: [{ type: "function", function: { name: "f", parameters: { type: "integer", multipleOf: 3 } } }] }, "tools"],
    ["tool_choice required", { tool_choice: "required" }, "tool_choice"],
    ["tool_choice naming a function", { tool_choice: { type: "function", function: { name: "f" } } }, "tool_choice"],
    ["functions", { functions: [{ name: "f", parameters: {} }] }, "functions"],
    ["function_call naming a function", { function_call: { name: "f" } }, "function_call"],
    ["a JSON schema keyword qwasm cannot express", { response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "integer", multipleOf: 3 } } } }, "response_format"],
    ["a response_format type qwasm does not know", { response_format: { type: "xml" } }, "response_format"],
    ["top_logprobs without logprobs", { top_logprobs: 3 }, "top_logprobs"],
    ["more than 20 top_logprobs", { logprobs: true, top_logprobs: 21 }, "top_logprobs"],
    ["audio output", { modalities: ["text", "audio"], audio: { voice: "alloy", format: "wav" } }, "modalities"],
    ["audio", { audio: { voice: "alloy", format: "wav" } }, "audio"],
    ["predicted outputs", { prediction: { type: "content", content: "x" } }, "prediction"],
    ["web search", { web_search_options: {} }, "web_search_options"],
    ["n = 2", { n: 2 }, "n"],
  ];
  it.each(refused)("refuses a chat request asking for %s with 400 naming the field", async (_, fields, param) => {
    const { engine, handler } = setup();
    for (const stream of [false, true]) {
      const error = await errorOf(await handler(chat({ ...fields, stream })), 400);
      expect(error).toMatchObject({ type: "invalid_request_error", param });
      expect(error.message).toContain(param);
    }
    expect(engine.calls).toHaveLength(0);
  });

  it.each([
    ["more than 5 logprobs", { logprobs: 6 }],
    ["echo", { echo: true }],
    ["best_of", { best_of: 3 }],
    ["suffix", { suffix: " the end." }],
  ])("refuses a completion asking for %s", async (_, fields) => {
    const { engine, handler } = setup();
    const param = Object.keys(fields)[0];
    expect((await errorOf(await handler(post("/v1/completions", { prompt: "Once", ...fields })), 400)).param).toBe(param);
    expect(engine.calls).toHaveLength(0);
  });

  it("takes the values that ask for nothing, as OpenAI does", async () => {
    const { engine, handler } = setup();
    const neutral = {
      tools: [], tool_choice: "none", functions: [], function_call: "none", response_format: { type: "text" },
      logprobs: false, top_logprobs: 0, modalities: ["text"], audio: null, prediction: null, web_search_options: null,
      parallel_tool_calls: true, n: 1, user: "someone", metadata: { a: "b" }, store: false,
    };
    expect((await handler(chat(neutral))).status).toBe(200);
    expect((await handler(chat({ tool_choice: "auto", function_call: "auto" }))).status).toBe(200);
    const completion = { prompt: "Once", logprobs: null, echo: false, best_of: 1, suffix: "", n: 1 };
    expect((await handler(post("/v1/completions", completion))).status).toBe(200);
    expect(engine.calls).toHaveLength(3);
  });
});

describe("request body limit", () => {
  it("refuses a declared Content-Length over the limit without reading", async () => {
    const { engine, handler } = setup({ maxBodyBytes: 100 });
    let pulls = 0;
    const body = new ReadableStream<Uint8Array>({ pull(c) { pulls++; c.enqueue(new Uint8Array(10)); } });
    const request = new Request(`${BASE}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json", "content-length": "101" }, body, duplex: "half",
    } as RequestInit);
    expect((await errorOf(await handler(request), 413)).code).toBe("request_too_large");
    expect(pulls).toBeLessThanOrEqual(1);
    expect(engine.calls).toHaveLength(0);
  });

  it("reads an endless body only up to the limit, then cancels it", async () => {
    const { handler } = setup({ maxBodyBytes: 1000 });
    let sent = 0;
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      pull(c) { sent += 64; c.enqueue(new Uint8Array(64).fill(0x20)); },
      cancel() { cancelled = true; },
    });
    const request = new Request(`${BASE}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body, duplex: "half" } as RequestInit);
    await errorOf(await handler(request), 413);
    expect(cancelled).toBe(true);
    expect(sent).toBeLessThan(2000);
  });

  it("takes a body of exactly the limit", async () => {
    const json = JSON.stringify({ prompt: "x" });
    const { handler } = setup({ maxBodyBytes: json.length });
    expect((await handler(post("/v1/completions", json))).status).toBe(200);
    const { handler: smaller } = setup({ maxBodyBytes: json.length - 1 });
    await errorOf(await smaller(post("/v1/completions", json)), 413);
  });

  it("defaults to 1 MiB", async () => {
    const { handler } = setup();
    const big = JSON.stringify({ prompt: "x", pad: "y".repeat(1024 * 1024) });
    await errorOf(await handler(post("/v1/completions", big)), 413);
  });
});

describe("API key", () => {
  it("requires Authorization: Bearer with the key", async () => {
    const { engine, handler } = setup({ apiKey: "sk-right" });
    const attempts: Record<string, string>[] = [{}, { authorization: "Bearer sk-wrong" }, { authorization: "Bearer sk-right-but-longer" },
      { authorization: "sk-right" }, { authorization: "Basic sk-right" }, { authorization: "Bearer " }];
    for (const headers of attempts) {
      const request = post("/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }] }, headers);
      const denied = await handler(request);
      expect(denied.headers.get("www-authenticate")).toBe("Bearer");
      expect((await errorOf(denied, 401)).code).toBe("invalid_api_key");
    }
    const models = await handler(new Request(`${BASE}/v1/models`));
    await errorOf(models, 401);
    expect(engine.calls).toHaveLength(0);

    const ok = await handler(post("/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }] }, { authorization: "Bearer sk-right" }));
    expect(ok.status).toBe(200);
    expect((await handler(new Request(`${BASE}/v1/models`, { headers: { authorization: "bearer sk-right" } }))).status).toBe(200);
  });
});

describe("CORS", () => {
  it("is off by default", async () => {
    const { handler } = setup();
    const response = await handler(new Request(`${BASE}/v1/models`, { headers: { origin: "https://a.example" } }));
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("answers preflights and marks every response when enabled", async () => {
    const { handler } = setup({ cors: true, apiKey: "k" });
    const preflight = await handler(new Request(`${BASE}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: { origin: "https://a.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type, x-stainless-os" },
    }));
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("*");
    expect(preflight.headers.get("access-control-allow-methods")).toBe("GET, POST, OPTIONS");
    expect(preflight.headers.get("access-control-allow-headers")).toBe("authorization, content-type, x-stainless-os");
    // Errors too, so that a page can read them.
    const denied = await handler(new Request(`${BASE}/v1/models`));
    expect(denied.status).toBe(401);
    expect(denied.headers.get("access-control-allow-origin")).toBe("*");
    const streamed = await handler(chat({ stream: true }).clone());
    expect(streamed.headers.get("access-control-allow-origin")).toBe("*");
  });

  it("names one origin when given one", async () => {
    const { handler } = setup({ cors: "https://app.example" });
    const response = await handler(new Request(`${BASE}/v1/models`));
    expect(response.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(response.headers.get("vary")).toBe("Origin");
  });
});

describe("aborts", () => {
  const forever = (stream: boolean, init: RequestInit = {}) =>
    post("/v1/chat/completions", { messages: [{ role: "user", content: "FOREVER" }], stream }, {}, init);

  it("aborts the engine when the streamed response is cancelled", async () => {
    const { engine, handler } = setup();
    const response = await handler(forever(true));
    const reader = response.body!.getReader();
    const { value } = await reader.read();
    expect(new TextDecoder().decode(value)).toContain('"content":"tick "');
    expect(engine.lastCall.options.signal!.aborted).toBe(false);
    await reader.cancel();
    await engine.lastCall.aborted;
    expect(engine.lastCall.options.signal!.aborted).toBe(true);
  });

  it("aborts the engine when the request's signal aborts", async () => {
    const { engine, handler } = setup();
    const client = new AbortController();
    const pending = handler(forever(false, { signal: client.signal }));
    while (engine.calls.length === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    client.abort();
    await engine.lastCall.aborted;
    expect((await pending).status).toBe(499);

    const streamClient = new AbortController();
    const response = await handler(forever(true, { signal: streamClient.signal }));
    await response.body!.getReader().read();
    streamClient.abort();
    await engine.lastCall.aborted;
  });

  it("gives the engine requestTimeoutMs as the request's time limit; its TIMEOUT is a 504, or an error event once streaming", async () => {
    const { engine, handler } = setup({ requestTimeoutMs: 30 });
    const error = await errorOf(await handler(forever(false)), 504);
    expect(error).toMatchObject({ type: "server_error", code: "timeout", param: null });
    expect(error.message).toMatch(/time limit/);
    expect(engine.lastCall.options.timeoutMs).toBe(30);

    const text = await (await handler(forever(true))).text();
    const all = events(text);
    expect(all).not.toContain("[DONE]");
    expect(all.length).toBeGreaterThan(1); // the stream had started: chunks, then the error event
    expect(JSON.parse(all.at(-1)!).error).toMatchObject({ type: "server_error", code: "timeout" });
    expect(engine.lastCall.options.timeoutMs).toBe(30);
  });

  it("maps the engine's own TIMEOUT (its requestTimeoutMs) the same way, and sets no limit unless told", async () => {
    const { engine, handler } = setup();
    await (await handler(chat())).json();
    expect(engine.lastCall.options.timeoutMs).toBeUndefined();
    engine.chat = (messages, options) => FakeEngine.prototype.chat.call(engine, messages, { ...options, timeoutMs: 20 });
    expect((await errorOf(await handler(forever(false)), 504)).code).toBe("timeout");
  });

  it("does not abort requests that finish", async () => {
    const { engine, handler } = setup({ requestTimeoutMs: 60_000 });
    await (await handler(chat({ stream: true }))).text();
    await (await handler(chat())).json();
    expect(engine.calls.every((c) => !c.options.signal!.aborted)).toBe(true);
  });
});

describe("options", () => {
  it("rejects a bad maxBodyBytes or requestTimeoutMs", () => {
    expect(() => createOpenAIHandler(new FakeEngine(), { maxBodyBytes: 0 })).toThrow(/maxBodyBytes/);
    expect(() => createOpenAIHandler(new FakeEngine(), { requestTimeoutMs: -1 })).toThrow(/requestTimeoutMs/);
  });
});
