// GBNF grammars on a random-weight model (outputs checked by independent checkers written here),
// grammar errors, refused schema keywords, and the matcher's mask against a token-by-token check.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ajv2020 } from "ajv/dist/2020.js";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import { compileGrammar, compileJsonSchema, GrammarMatcher, jsonSchemaToGbnf, tokenTrie } from "../../engine/constrain";
import { Sampler } from "../../engine/sampler/sampler";
import { QwasmError } from "../../platform/errors";

let engine: QwasmEngine;
beforeAll(async () => {
  const vocabulary = await readQwen2Vocabulary();
  const modelBytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q8_0", seed: 7 }));
  engine = await createEngine(modelBytes, { threads: 1, contextLength: 256, maxSequences: 8 });
});
afterAll(async () => { await engine?.dispose(); });

const SEEDS = [1, 2, 3, 4, 5, 6];

async function outputs(grammar: string, maxTokens = 120): Promise<string[]> {
  const results = await Promise.all(SEEDS.map((seed) => engine.generate("Out:", { grammar, temperature: 1, seed, maxTokens }).result));
  for (const r of results) expect(r.finishReason, r.text).toBe("stop");
  return results.map((r) => r.text);
}

/** An independent parser for the arithmetic grammar below: sum of products of numbers or (sums). */
function isExpression(text: string): boolean {
  let i = 0;
  const number = () => { const m = /^[0-9]{1,3}/.exec(text.slice(i)); if (!m) return false; i += m[0].length; return true; };
  const factor = (): boolean => {
    if (text[i] === "(") { i++; if (!sum() || text[i] !== ")") return false; i++; return true; }
    return number();
  };
  const product = (): boolean => { if (!factor()) return false; while (text[i] === "*") { i++; if (!factor()) return false; } return true; };
  const sum = (): boolean => { if (!product()) return false; while (text[i] === "+" || text[i] === "-") { i++; if (!product()) return false; } return true; };
  return sum() && i === text.length;
}

describe("GBNF grammars", () => {
  it("a regular grammar: every output matches the equivalent regex", async () => {
    const texts = await outputs(`
      # an answer and a number
      root ::= answer ", " [0-9]{2,4} "!"
      answer ::= "yes" | "no" | "maybe"`);
    expect(texts).toHaveLength(SEEDS.length);
    for (const t of texts) expect(t).toMatch(/^(yes|no|maybe), [0-9]{2,4}!$/);
  });

  it("unicode classes, negation and escapes", async () => {
    const texts = await outputs(`root ::= [α-ω]+ ("-" [^\\x00-\\x7f]{1,3})? "\\n" "\\"" [a-c]* "\\""`);
    for (const t of texts) expect(t).toMatch(/^[α-ω]+(-[^\x00-\x7f]{1,3})?\n"[a-c]*"$/u);
  });

  it("a recursive grammar (nested parentheses): every output parses", async () => {
    const texts = await outputs(`
      root ::= sum
      sum ::= product (("+" | "-") product){0,2}
      product ::= factor ("*" factor)?
      factor ::= [0-9] [0-9]? [0-9]? | "(" sum ")"`, 200);
    for (const t of texts) expect(isExpression(t), t).toBe(true);
  });

  it("a JSON schema wrapped in literal text (a tool call)", async () => {
    const args = { type: "object", properties: { city: { type: "string", maxLength: 12 }, days: { type: "integer", minimum: 1, maximum: 7 } }, required: ["city", "days"], additionalProperties: false };
    const grammar = `root ::= "<tool_call>\\n{\\"name\\": \\"weather\\", \\"arguments\\": " args "}\\n</tool_call>"\n` + jsonSchemaToGbnf(args, "args");
    const texts = await outputs(grammar);
    const validate = new Ajv2020({ strict: false }).compile(args);
    for (const t of texts) {
      const m = /^<tool_call>\n(.*)\n<\/tool_call>$/s.exec(t);
      expect(m, t).not.toBeNull();
      const call = JSON.parse(m![1]);
      expect(call.name).toBe("weather");
      expect(validate(call.arguments), t).toBe(true);
    }
  });

  it("json_object: any JSON object", async () => {
    const results = await Promise.all(SEEDS.map((seed) => engine.generate("Out:", { responseFormat: { type: "json_object" }, temperature: 1, seed, maxTokens: 200, logitBias: { 1: 4 } }).result));
    let parsed = 0;
    for (const r of results) {
      if (r.finishReason === "length") continue;
      expect(r.finishReason).toBe("stop");
      const v = JSON.parse(r.text);
      expect(typeof v === "object" && v !== null && !Array.isArray(v), r.text).toBe(true);
      parsed++;
    }
    expect(parsed).toBeGreaterThan(0);
  });

  const bad: [string, RegExp][] = [
    ["root ::= foo", /rule foo is used but not defined/],
    ["start ::= \"a\"", /no rule named root/],
    ["root ::= \"a", /unterminated string/],
    ["root ::= [a-", /unterminated character class/],
    ["root ::= root \"a\" | \"b\"", /left-recursive/],
    ["root ::= (\"\")*", /left-recursive/],
    ["root ::= x\nx ::= \"a\" \"\\q\"", /unknown escape/],
    ["root ::= \"a\"{3,2}", /maximum is below the minimum/],
  ];
  for (const [text, message] of bad) {
    it(`refuses ${JSON.stringify(text)} with INVALID_GRAMMAR`, () => {
      expect(() => engine.generate("x", { grammar: text })).toThrow(message);
      try { compileGrammar(text); } catch (e) { expect((e as QwasmError).code).toBe("INVALID_GRAMMAR"); }
      expect.assertions(2);
    });
  }
});

describe("unsupported JSON schema keywords", () => {
  const cases: [string, object][] = [
    ["multipleOf", { type: "integer", multipleOf: 3 }],
    ["uniqueItems", { type: "array", uniqueItems: true }],
    ["not", { not: { type: "string" } }],
    ["minProperties", { type: "object", minProperties: 1 }],
    ["maxProperties", { type: "object", maxProperties: 1 }],
    ["patternProperties", { type: "object", patternProperties: { "^a": { type: "string" } } }],
    ["if", { if: { type: "string" }, then: { maxLength: 2 } }],
    ["contains", { type: "array", contains: { type: "integer" } }],
    ["dependentRequired", { type: "object", dependentRequired: { a: ["b"] } }],
    ["propertyNames", { type: "object", propertyNames: { maxLength: 3 } }],
    ["nullable", { type: "string", nullable: true }],
    ["ipv4", { type: "string", format: "ipv4" }],
    ["lookaround", { type: "string", pattern: "^(?=a)a$" }],
    ["backreferences", { type: "string", pattern: "^(a)\\1$" }],
    ["minimum 0.5 on a number", { type: "number", minimum: 0.5 }],
    ["only references inside the schema", { $ref: "https://example.com/s.json" }],
    ["additionalProperties in one branch", { allOf: [{ properties: { a: {} }, additionalProperties: false }, { properties: { b: {} } }] }],
    ["not in properties and additionalProperties is false", { type: "object", required: ["x"], additionalProperties: false }],
  ];
  for (const [keyword, schema] of cases) {
    it(`${keyword}: UNSUPPORTED_SCHEMA naming it`, () => {
      let error: unknown;
      try {
        engine.generate("x", { responseFormat: { type: "json_schema", json_schema: { name: "s", schema } } });
      } catch (e) { error = e; }
      expect(error).toBeInstanceOf(QwasmError);
      expect((error as QwasmError).code).toBe("UNSUPPORTED_SCHEMA");
      expect((error as Error).message).toContain(keyword);
      expect(engine.kvStats()).toMatchObject({ inUse: 0, reserved: 0, running: 0, waiting: 0 });
    });
  }
});

describe("failures stay in their request", () => {
  it("no allowed token with a finite logit: the sampler throws (the engine fails that request alone)", () => {
    const tokenizer = engine.tokenizer;
    const m = new GrammarMatcher(compileGrammar('root ::= "a"'), tokenTrie(tokenizer));
    const logits = new Float32Array(tokenizer.vocabSize).fill(1);
    logits[tokenizer.tokenToId("a")!] = -Infinity;
    expect(() => new Sampler({ temperature: 1 }).sample(logits, m)).toThrow(/no token that the grammar allows/);
  });

  it("an abort in the middle of a constrained request frees its pages", async () => {
    const abort = new AbortController();
    const stream = engine.generate("x", { responseFormat: { type: "json_object" }, maxTokens: 200, temperature: 1, signal: abort.signal });
    let deltas = 0;
    for await (const _ of stream) if (++deltas === 3) abort.abort();
    expect((await stream).finishReason).toBe("abort");
    expect(engine.kvStats()).toMatchObject({ inUse: 0, reserved: 0, running: 0, waiting: 0 });
  });

  it("with ignoreEos, end of generation still ends a complete value (and adds no text)", async () => {
    // End of generation made likely (a bias), so that it comes once the value is complete.
    const logitBias = Object.fromEntries([...engine.tokenizer.endOfGenerationIds].map((id) => [id, 1000]));
    const results = await Promise.all(SEEDS.map((seed) => engine.generate("x", { grammar: "root ::= [0-9]+", ignoreEos: true, logitBias, maxTokens: 60, temperature: 1, seed }).result));
    for (const r of results) {
      expect(r.finishReason, `${r.text} ${r.tokens}`).toBe("stop");
      expect(r.text).toMatch(/^[0-9]+$/);
    }
    expect(results).toHaveLength(SEEDS.length);
  });

  it("maxTokens cuts a value with finish reason length", async () => {
    const r = await engine.generate("x", { grammar: 'root ::= "[" [0-9]{40} "]"', maxTokens: 3, temperature: 1 });
    expect(r.finishReason).toBe("length");
    expect(r.text).toMatch(/^\[[0-9]*$/);
  });
});

describe("the matcher", () => {
  it("the trie mask equals a token-by-token check of the whole vocabulary, EOS only when complete", () => {
    const tokenizer = engine.tokenizer;
    const trie = tokenTrie(tokenizer);
    const grammar = compileJsonSchema({ type: "object", properties: { n: { type: "integer", minimum: 0, maximum: 99 }, s: { type: "string", maxLength: 3 } }, required: ["n"], additionalProperties: false });
    const m = new GrammarMatcher(grammar, trie);
    const eos = [...tokenizer.endOfGenerationIds];
    let states = 0;
    for (const text of ['{"', 'n": ', "4", "2", ', "s": "', "é", '"', "}"]) {
      const mask = m.allowedTokens();
      const direct: number[] = [];
      for (let id = 0; id < tokenizer.vocabSize; id++) if (m.allows(id)) direct.push(id);
      expect(mask, `after ${states} pieces`).toEqual(direct);
      expect(eos.some((id) => mask.includes(id))).toBe(m.isComplete());
      states++;
      expect(m.acceptText(text), text).toBe(true);
    }
    expect(states).toBe(8);
    expect(m.isFinished()).toBe(true);
    expect(m.allowedTokens().filter((id) => !eos.includes(id))).toEqual([]);
  });

  it("greedy sampling under a constraint takes the best allowed token", () => {
    const tokenizer = engine.tokenizer;
    const m = new GrammarMatcher(compileGrammar('root ::= "b" | "c"'), tokenTrie(tokenizer));
    const logits = new Float32Array(tokenizer.vocabSize).fill(0);
    const a = tokenizer.tokenToId("a")!, b = tokenizer.tokenToId("b")!, c = tokenizer.tokenToId("c")!;
    logits[a] = 9; logits[b] = 2; logits[c] = 3;
    expect(new Sampler().sample(logits.slice(), m)).toBe(c);
    expect(new Sampler().sample(logits.slice())).toBe(a);
  });
});
