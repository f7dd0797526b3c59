// The CLI's --json-schema and --grammar (run) and bench --json-schema, on a tiny synthetic model.
import { afterAll, describe, expect, it, vi } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { main as bench } from "../../cli/commands/bench";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { cliBuilt, runCli } from "../cli/helpers";

const tmp = mkdtempSync(join(tmpdir(), "qwasm-constrain-"));
const modelPath = join(tmp, "tiny.gguf");
writeFileSync(modelPath, await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q8_0", seed: 3 })));
const schema = { type: "object", properties: { ok: { type: "boolean" }, n: { type: "integer", minimum: 0, maximum: 99 } }, required: ["ok", "n"], additionalProperties: false };
const schemaPath = join(tmp, "schema.json");
writeFileSync(schemaPath, JSON.stringify(schema));
const grammarPath = join(tmp, "answer.gbnf");
writeFileSync(grammarPath, 'root ::= ("yes" | "no") " " [0-9]{3}\n');
const badSchemaPath = join(tmp, "bad.json");
writeFileSync(badSchemaPath, JSON.stringify({ type: "array", uniqueItems: true }));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(!cliBuilt)("qwasm run --json-schema / --grammar (dist/cli.js; run node scripts/build.mjs)", () => {
  it("--json-schema prints JSON that validates, and stops when it is complete", async () => {
    const r = await runCli(["run", modelPath, "--prompt", "JSON:", "--json-schema", schemaPath, "--temperature", "1", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--threads", "1", "--max-tokens", "64"]);
    expect(r.code, r.stderr).toBe(0);
    expect(new Ajv2020().compile(schema)(JSON.parse(r.stdout))).toBe(true);
    expect(r.stderr).toContain("finish: stop");
  });

  it("--grammar prints text of the grammar", async () => {
    const r = await runCli(["run", modelPath, "--prompt", "Answer:", "--grammar", grammarPath, "--temperature", "1", "--threads", "1", "--max-tokens", "16"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^(yes|no) [0-9]{3}\n$/);
  });

  it("an unsupported keyword fails before the model loads, naming it", async () => {
    const r = await runCli(["run", modelPath, "--prompt", "x", "--json-schema", badSchemaPath]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/uniqueItems.*\[UNSUPPORTED_SCHEMA\]/);
    const missing = await runCli(["run", modelPath, "--prompt", "x", "--grammar", join(tmp, "none.gbnf")]);
    expect(missing.stderr).toContain("[FILE_NOT_FOUND]");
  });
});

describe("qwasm bench --json-schema", () => {
  it("prints the constrained decode rate against the unconstrained one, and the compile time", async () => {
    let out = "";
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => { out += String(chunk); return true; });
    try {
      expect(await bench([modelPath, "--threads", "1", "--prompt-tokens", "8", "--gen-tokens", "16", "--temperature", "1", "--json-schema", schemaPath, "--json"])).toBe(0);
    } finally {
      write.mockRestore();
    }
    const result = JSON.parse(out);
    for (const f of ["constrainedDecodeTokensPerSecond", "schemaCompileMs", "tokenTrieMs", "decodeTokensPerSecond"]) {
      expect(typeof result[f], f).toBe("number");
      expect(result[f], f).toBeGreaterThan(0);
    }
  });
});
