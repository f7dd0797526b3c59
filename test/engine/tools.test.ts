// Tool calls: the parser (whole and piece by piece), the grammars, and the engine on a random-weight
// model: tool_choice "required" / a named function always give calls whose arguments validate
// against the parameter schema (ajv), "none" never gives calls, and "auto" constrains a block once
// `<tool_call>` is written.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Ajv2020 } from "ajv/dist/2020.js";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import { compileGrammar, GrammarMatcher, tokenTrie } from "../../engine/constrain";
import {
  parseToolCalls, toolCallsGbnf, toolConstraint, ToolCallParser, type ToolCallDelta,
} from "../../engine/tools";
import type { Delta, Tool, ToolCall } from "../../engine/types";
import { QwasmError } from "../../platform/errors";

const weather: Tool = {
  type: "function",
  function: {
    name: "get_weather", description: "Weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string", enum: ["Paris", "Oslo", "Lima"] }, days: { type: "integer", minimum: 1, maximum: 7 } },
      required: ["city", "days"], additionalProperties: false,
    },
  },
};
const time: Tool = { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { zone: { type: "string", enum: ["UTC", "CET"] } }, required: ["zone"] } } };
const noArgs: Tool = { type: "function", function: { name: "ping" } };
const TOOLS = [weather, time, noArgs];

const ids = (i: number) => `call_${i}`;

describe("the tool-call parser", () => {
  const text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>\n' +
    '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>';

  it("splits content and calls", () => {
    expect(parseToolCalls(text, ids)).toEqual({
      content: "Let me check.",
      toolCalls: [
        { id: "call_0", type: "function", function: { name: "get_weather", arguments: '{"city": "Paris", "days": 2}' } },
        { id: "call_1", type: "function", function: { name: "get_time", arguments: '{"zone": "CET"}' } },
      ],
    });
    expect(parseToolCalls("No calls here, < tool_call > nor <tool_ca", ids)).toEqual({ content: "No calls here, < tool_call > nor <tool_ca", toolCalls: [] });
    expect(parseToolCalls("  spaces stay \n", ids).content).toBe("  spaces stay \n");
  });

  it("gives the same content and calls piece by piece, streaming the arguments as OpenAI does", () => {
    for (const size of [1, 2, 3, 7, 16]) {
      const parser = new ToolCallParser(ids);
      let content = "";
      const deltas: ToolCallDelta[] = [];
      for (let i = 0; i < text.length; i += size) {
        const out = parser.push(text.slice(i, i + size));
        content += out.content;
        deltas.push(...out.toolCalls);
      }
      const end = parser.finish();
      content += end.content;
      deltas.push(...end.toolCalls);
      expect(content).toBe("Let me check.");
      // OpenAI's shape: the first piece of a call has id, type and name; the others only arguments.
      const calls: ToolCall[] = [];
      for (const d of deltas) {
        if (d.id !== undefined) {
          expect(d).toMatchObject({ index: calls.length, type: "function", function: { arguments: "" } });
          calls.push({ id: d.id, type: "function", function: { name: d.function.name!, arguments: "" } });
        } else {
          expect(Object.keys(d.function)).toEqual(["arguments"]);
          calls[d.index].function.arguments += d.function.arguments;
        }
      }
      expect(calls).toEqual(parseToolCalls(text, ids).toolCalls);
      if (size === 1) expect(deltas.length).toBeGreaterThan(10); // the arguments came in pieces
    }
  });

  it("blocks in another order, not JSON, or cut short", () => {
    expect(parseToolCalls('<tool_call>{"arguments": {"a": 1}, "name": "f"}</tool_call>', ids).toolCalls)
      .toEqual([{ id: "call_0", type: "function", function: { name: "f", arguments: '{"a":1}' } }]);
    expect(parseToolCalls("x <tool_call>not json</tool_call>", ids)).toEqual({ content: "x <tool_call>not json</tool_call>", toolCalls: [] });
    // Cut short (length) after the name: the call with the arguments so far.
    expect(parseToolCalls('<tool_call>\n{"name": "f", "arguments": {"a": [1, 2', ids).toolCalls)
      .toEqual([{ id: "call_0", type: "function", function: { name: "f", arguments: '{"a": [1, 2' } }]);
    // Cut before the name: content.
    expect(parseToolCalls('ok <tool_call>\n{"na', ids)).toEqual({ content: 'ok <tool_call>\n{"na', toolCalls: [] });
  });
});

describe("tool-call grammars", () => {
  it("accept Qwen2.5's format for the functions given, and nothing else", () => {
    const g = compileGrammar(toolCallsGbnf(TOOLS.map((t) => t.function), true));
    const accepts = (s: string) => {
      const m = new GrammarMatcher(g, tokenTrie(byteTokens));
      return m.acceptText(s) && m.isComplete();
    };
    expect(accepts('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 7}}\n</tool_call>')).toBe(true);
    expect(accepts('<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "UTC"}}\n</tool_call>')).toBe(true);
    expect(accepts('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "days": 7}}\n</tool_call>')).toBe(false);
    expect(accepts('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 8}}\n</tool_call>')).toBe(false);
    expect(accepts('<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>')).toBe(false);
    const single = compileGrammar(toolCallsGbnf([noArgs.function], false));
    const m = new GrammarMatcher(single, tokenTrie(byteTokens));
    expect(m.acceptText('<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>')).toBe(true);
    expect(m.isFinished()).toBe(true);
  });

  it("refuses bad tools and schemas it cannot express, naming them", () => {
    const bad: [unknown, unknown, RegExp, string][] = [
      [[{ type: "retrieval" }], undefined, /tools\[0\]\.type/, "INVALID_ARGUMENT"],
      [[{ type: "function", function: { name: "has space" } }], undefined, /tools\[0\]\.function\.name/, "INVALID_ARGUMENT"],
      [[weather, weather], undefined, /given twice/, "INVALID_ARGUMENT"],
      [[weather], { type: "function", function: { name: "other" } }, /not in tools/, "INVALID_ARGUMENT"],
      [[weather], "sometimes", /toolChoice must be/, "INVALID_ARGUMENT"],
      [[{ type: "function", function: { name: "f", parameters: { type: "integer", multipleOf: 2 } } }], "required", /function "f".*multipleOf/, "UNSUPPORTED_SCHEMA"],
    ];
    for (const [tools, toolChoice, message, code] of bad) {
      let error: unknown;
      try {
        toolConstraint(byteTokens, { tools: tools as Tool[], toolChoice: toolChoice as "auto" });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(QwasmError);
      expect((error as QwasmError).code).toBe(code);
      expect((error as QwasmError).message).toMatch(message);
    }
  });
});

/** A vocabulary of the 256 single bytes (id = byte) and an end token 256: enough for grammar checks. */
const byteTokens = {
  vocabSize: 257,
  endOfGenerationIds: new Set([256]),
  tokenBytes: (id: number) => (id < 256 ? Uint8Array.of(id) : new Uint8Array(0)),
  isControl: (id: number) => id === 256,
};

describe("tool_choice auto: the lazy constraint", () => {
  const bytes = (s: string) => Array.from(new TextEncoder().encode(s));

  it("allows anything until <tool_call>, then only the call, then anything again", () => {
    const c = toolConstraint(byteTokens, { tools: TOOLS, toolChoice: "auto" })!;
    for (const b of bytes("Sure: <tool_")) { expect(c.allows(b)).toBe(true); c.accept(b); }
    expect(c.allows("x".charCodeAt(0))).toBe(true); // "<tool_x" is still text
    for (const b of bytes("call>")) c.accept(b);
    // Inside the block: only the grammar.
    expect(c.allows("x".charCodeAt(0))).toBe(false);
    expect(c.allows("\n".charCodeAt(0))).toBe(true);
    const logits = new Float32Array(257);
    c.maskLogits(logits);
    expect([...logits].filter((l) => l === 0).length).toBe(1); // "\n" only
    for (const b of bytes('\n{"name": "get_time", "arguments": {"zone": "UTC"}}\n</tool_call')) { expect(c.allows(b)).toBe(true); c.accept(b); }
    expect(c.allows(256)).toBe(false); // not before the block is closed
    c.accept(">".charCodeAt(0));
    expect(c.isFinished()).toBe(false); // parallel calls: free text again
    expect(c.allows("x".charCodeAt(0))).toBe(true);
    expect(c.allows(256)).toBe(true);

    const one = toolConstraint(byteTokens, { tools: TOOLS, toolChoice: "auto", parallelToolCalls: false })!;
    for (const b of bytes('<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>')) one.accept(b);
    expect(one.isFinished()).toBe(true);
  });
});

describe("tool calls on a random-weight model", () => {
  let engine: QwasmEngine;
  beforeAll(async () => {
    const vocabulary = await readQwen2Vocabulary();
    engine = await createEngine(await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q8_0", seed: 11 })),
      { threads: 1, contextLength: 1024, maxSequences: 6 });
  });
  afterAll(async () => { await engine?.dispose(); });

  const messages = [{ role: "user", content: "What is the weather in Paris?" }];
  const SEEDS = [1, 2, 3, 4, 5, 6];
  const ajv = new Ajv2020({ strict: false });
  const validators = new Map(TOOLS.map((t) => [t.function.name, ajv.compile(t.function.parameters ?? { type: "object" })]));

  function checkCalls(calls: ToolCall[] | undefined, names: string[]): void {
    expect(calls?.length).toBeGreaterThan(0);
    for (const call of calls!) {
      expect(call.id).toMatch(/^call_[0-9a-f]{24}$/);
      expect(names).toContain(call.function.name);
      const validate = validators.get(call.function.name)!;
      expect(validate(JSON.parse(call.function.arguments)), call.function.arguments).toBe(true);
    }
  }

  it('"required": every answer is calls whose arguments validate, streamed and whole alike', async () => {
    const streams = SEEDS.map((seed) => engine.chat(messages, { tools: TOOLS, toolChoice: "required", parallelToolCalls: false, temperature: 1, seed, maxTokens: 120 }));
    const deltas: Delta[][] = await Promise.all(streams.map(async (s) => { const all: Delta[] = []; for await (const d of s) all.push(d); return all; }));
    const results = await Promise.all(streams.map((s) => s.result));
    results.forEach((r, i) => {
      expect(r.finishReason, r.text).toBe("tool_calls");
      expect(r.text).toBe("");
      expect(r.toolCalls).toHaveLength(1);
      checkCalls(r.toolCalls, TOOLS.map((t) => t.function.name));
      // The streamed pieces add up to the result's calls, ids included.
      const streamed: ToolCall[] = [];
      for (const d of deltas[i]) {
        expect(d.text).toBe("");
        for (const t of d.toolCalls ?? []) {
          if (t.id) streamed.push({ id: t.id, type: "function", function: { name: t.function.name!, arguments: "" } });
          else streamed[t.index].function.arguments += t.function.arguments;
        }
      }
      expect(streamed).toEqual(r.toolCalls);
    });
  });

  it("parallel calls: one or more, each valid", async () => {
    const results = await Promise.all(SEEDS.map((seed) => engine.chat(messages, { tools: TOOLS, toolChoice: "required", temperature: 1, seed, maxTokens: 300 }).result));
    let complete = 0;
    for (const r of results) {
      if (r.finishReason === "length") continue; // the random model went on calling
      complete++;
      expect(r.finishReason).toBe("tool_calls");
      checkCalls(r.toolCalls, TOOLS.map((t) => t.function.name));
    }
    expect(complete).toBeGreaterThan(0);
  });

  it("a named function is always the one called", async () => {
    const results = await Promise.all(SEEDS.map((seed) => engine.chat(messages, {
      tools: TOOLS, toolChoice: { type: "function", function: { name: "get_weather" } }, parallelToolCalls: false, temperature: 1, seed, maxTokens: 120,
    }).result));
    for (const r of results) {
      expect(r.finishReason).toBe("tool_calls");
      checkCalls(r.toolCalls, ["get_weather"]);
    }
  });

  it('"none" never calls, even when the text has a <tool_call> block', async () => {
    const results = await Promise.all(SEEDS.map((seed) => engine.chat(messages, { tools: TOOLS, toolChoice: "none", temperature: 1, seed, maxTokens: 40 }).result));
    for (const r of results) {
      expect(r.toolCalls).toBeUndefined();
      expect(r.finishReason).not.toBe("tool_calls");
    }
    // The model is forced (a grammar) to write a call; with tools "none" it stays text.
    const grammar = `root ::= "<tool_call>\\n{\\"name\\": \\"ping\\", \\"arguments\\": {}}\\n</tool_call>"`;
    const forced = await engine.chat(messages, { tools: TOOLS, toolChoice: "none", grammar, temperature: 0 }).result;
    expect(forced.text).toBe('<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>');
    expect(forced.toolCalls).toBeUndefined();
  });

  it("an abort in the middle of a call ends the stream and frees the pages", async () => {
    const abort = new AbortController();
    const stream = engine.chat(messages, { tools: TOOLS, toolChoice: "required", temperature: 1, seed: 1, maxTokens: 200, signal: abort.signal });
    let pieces = 0;
    for await (const d of stream) {
      pieces += d.toolCalls?.length ?? 0;
      if (pieces > 0) abort.abort();
    }
    const r = await stream;
    expect(pieces).toBeGreaterThan(0);
    expect(r.finishReason).toBe("abort");
    expect(engine.kvStats().inUse).toBe(0);
  });

  it("a constraint that throws fails only its own request; the pages come back", async () => {
    const spy = vi.spyOn(GrammarMatcher.prototype, "accept").mockImplementationOnce(() => { throw new Error("injected"); });
    try {
      const failing = engine.chat(messages, { tools: TOOLS, toolChoice: "required", temperature: 1, seed: 2, maxTokens: 60 });
      const plain = engine.chat(messages, { temperature: 1, seed: 2, maxTokens: 5, ignoreEos: true });
      await expect(failing.result).rejects.toThrow("injected");
      expect((await plain.result).tokens).toHaveLength(5);
      expect(spy).toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
    expect(engine.kvStats().inUse).toBe(0);
  });

  it("tools with responseFormat, and tools on generate, are refused", () => {
    expect(() => engine.chat(messages, { tools: TOOLS, responseFormat: { type: "json_object" } })).toThrow(/either tools or responseFormat/);
    expect(() => engine.generate("x", { tools: TOOLS })).toThrow(/tools are for chat/);
    expect(engine.kvStats().inUse).toBe(0);
  });
});
