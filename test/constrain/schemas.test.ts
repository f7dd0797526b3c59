// The schema corpus (schemas/*.json, written by make-schemas.py) x a random-weight model at
// temperature 1 with several seeds: every output parses and validates with ajv (an independent,
// maintained validator), and generation stops when the value is complete.
import { readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import { createOpenAIHandler } from "../../server/openai";
import { isJsonPrefix } from "./json-prefix";

const dir = new URL("./schemas/", import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
const schemas = files.map((f) => ({ name: f.slice(0, -5), schema: JSON.parse(readFileSync(new URL(f, dir), "utf8")) }));
const SEEDS = [1, 2, 3];
const MAX_TOKENS = 160;

let engine: QwasmEngine;
beforeAll(async () => {
  const vocabulary = await readQwen2Vocabulary();
  const modelBytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q8_0", seed: 5 }));
  engine = await createEngine(modelBytes, { threads: 1, contextLength: 256, maxSequences: 8 });
});
afterAll(async () => { await engine?.dispose(); });

const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);

describe("JSON schema corpus", () => {
  it(`has at least 200 schemas (${schemas.length})`, () => {
    expect(schemas.length).toBeGreaterThanOrEqual(200);
  });

  it("every output parses and validates (3 seeds, temperature 1)", async () => {
    let checked = 0, cut = 0, tokens = 0;
    const failures: string[] = [];
    for (let i = 0; i < schemas.length; i += 3) {
      const batch = schemas.slice(i, i + 3);
      const runs = batch.flatMap(({ name, schema }) => SEEDS.map(async (seed) => {
        const r = await engine.generate("JSON:", {
          responseFormat: { type: "json_schema", json_schema: { name, schema, strict: true } },
          temperature: 1, seed, maxTokens: MAX_TOKENS,
        });
        tokens += r.usage.completionTokens;
        const at = `${name} seed ${seed}: ${JSON.stringify(r.text)}`;
        if (r.finishReason === "length") {
          cut++;
          if (!isJsonPrefix(r.text)) failures.push(`${at}: cut at maxTokens and not a JSON prefix`);
          return;
        }
        if (r.finishReason !== "stop") { failures.push(`${at}: finishReason ${r.finishReason}`); return; }
        let value: unknown;
        try { value = JSON.parse(r.text); } catch (e) { failures.push(`${at}: does not parse (${(e as Error).message})`); return; }
        const validate = ajv.compile(schema);
        if (!validate(value)) failures.push(`${at}: ${ajv.errorsText(validate.errors)}`);
        checked++;
      }));
      await Promise.all(runs);
    }
    console.log(`${checked} outputs validated, ${cut} cut at ${MAX_TOKENS} tokens (prefix checked), ${tokens} tokens`);
    expect(failures).toEqual([]);
    expect(checked + cut).toBe(schemas.length * SEEDS.length);
    expect(checked).toBeGreaterThan(0.8 * schemas.length * SEEDS.length);
    expect(engine.kvStats()).toMatchObject({ inUse: 0, reserved: 0, running: 0, waiting: 0 });
  }, 600_000);

  it("through the OpenAI handler: response_format gives the library's output, and it validates", async () => {
    const handler = createOpenAIHandler(engine, { modelId: "tiny" });
    const messages = [{ role: "user" as const, content: "Reply in JSON." }];
    let compared = 0, validated = 0;
    const failures: string[] = [];
    for (let i = 0; i < schemas.length; i += 6) {
      await Promise.all(schemas.slice(i, i + 6).map(async ({ name, schema }) => {
        const response_format = { type: "json_schema", json_schema: { name, schema, strict: true } };
        const response = await handler(new Request("http://x/v1/chat/completions", {
          method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify({ messages, response_format, temperature: 1, seed: 9, max_tokens: MAX_TOKENS }),
        }));
        expect(response.status, name).toBe(200);
        const body = await response.json();
        const library = await engine.chat(messages, { responseFormat: response_format as never, temperature: 1, seed: 9, maxTokens: MAX_TOKENS });
        const content = body.choices[0].message.content;
        if (content !== library.text) failures.push(`${name}: server ${JSON.stringify(content)} vs library ${JSON.stringify(library.text)}`);
        compared++;
        if (body.choices[0].finish_reason === "length") return;
        expect(body.choices[0].finish_reason).toBe("stop");
        const validate = ajv.compile(schema);
        if (!validate(JSON.parse(content))) failures.push(`${name}: ${ajv.errorsText(validate.errors)}`);
        validated++;
      }));
    }
    console.log(`server: ${compared} outputs compared with the library, ${validated} validated`);
    expect(failures).toEqual([]);
    expect(compared).toBe(schemas.length);
    expect(validated).toBeGreaterThan(0.8 * schemas.length);

    const refused = await handler(new Request("http://x/v1/chat/completions", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages, response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "array", uniqueItems: true } } } }),
    }));
    expect(refused.status).toBe(400);
    const error = (await refused.json()).error;
    expect(error).toMatchObject({ param: "response_format", code: "unsupported_schema" });
    expect(error.message).toContain("uniqueItems");
  }, 600_000);
});
