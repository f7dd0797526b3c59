// A model that cannot be loaded (no such file, a directory, a refused connection, an HTTP error
// status, a download cut mid-body) is a QwasmError with a code naming the path or URL, in the
// library, and one line on stderr with a non-zero exit (no stack trace) in every CLI command.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEngine } from "../../engine/engine";
import { QwasmError } from "../../platform/errors";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { openGGUF } from "../../weights/gguf/reader";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { closedPort, cliBuilt, runCli, startModelServer } from "./helpers";

const tmp = mkdtempSync(join(tmpdir(), "qwasm-load-errors-"));
let server: Awaited<ReturnType<typeof startModelServer>>;
let modelBytes: Uint8Array;
let refusedPort = 0;

beforeAll(async () => {
  modelBytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q8_0", seed: 1 }));
  server = await startModelServer(modelBytes);
  refusedPort = await closedPort();
});
afterAll(async () => {
  await server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** Each way a load fails: the source, the code, and what the message must name. */
function cases(): { name: string; source: string; code: string }[] {
  return [
    { name: "a missing file", source: join(tmp, "missing.gguf"), code: "FILE_NOT_FOUND" },
    { name: "a directory", source: tmp, code: "FILE_UNREADABLE" },
    { name: "a refused connection", source: `http://127.0.0.1:${refusedPort}/model.gguf`, code: "NETWORK" },
    { name: "an HTTP 404", source: `${server.base}/missing.gguf`, code: "HTTP_STATUS" },
    { name: "a download cut in the header", source: `${server.base}/cut-1000.gguf`, code: "NETWORK" },
  ];
}

/** Each command that loads a model, with the rest of a valid command line. */
const COMMANDS: [string, (source: string) => string[]][] = [
  ["run", (s) => ["run", s, "--prompt", "hi", "--max-tokens", "1"]],
  ["chat", (s) => ["chat", s]],
  ["serve", (s) => ["serve", s, "--port", "0"]],
  ["bench", (s) => ["bench", s, "--prompt-tokens", "2", "--gen-tokens", "1"]],
  ["logits", (s) => ["logits", s, "--ids", "1,2"]],
  ["tokenize", (s) => ["tokenize", s, "--text", "hi"]],
  ["detokenize", (s) => ["detokenize", s, "--ids", "1"]],
  ["inspect", (s) => ["inspect", s]],
];

describe("the library", () => {
  it("throws a QwasmError naming the path or URL, for openGGUF and createEngine", async () => {
    let compared = 0;
    for (const { name, source, code } of cases()) {
      for (const [api, load] of [
        ["openGGUF", async () => (await openGGUF(source)).close()],
        ["createEngine", async () => (await createEngine(source, { threads: 1, contextLength: 32 })).dispose()],
      ] as const) {
        const error = await load().then(() => undefined, (e: unknown) => e);
        expect(error, `${api}: ${name}`).toBeInstanceOf(QwasmError);
        expect((error as QwasmError).code, `${api}: ${name}: ${(error as Error).message}`).toBe(code);
        expect((error as QwasmError).message, `${api}: ${name}`).toContain(source);
        compared++;
      }
    }
    expect(compared).toBe(10);
  });

  it("a download cut in the tensor data is NETWORK, naming the URL", async () => {
    const source = `${server.base}/cut-${Math.floor(modelBytes.length * 0.9)}.gguf`;
    const error = await createEngine(source, { threads: 1, contextLength: 32 }).then(
      (engine) => engine.dispose(), (e: unknown) => e);
    expect(error).toBeInstanceOf(QwasmError);
    expect((error as QwasmError).code, (error as Error).message).toBe("NETWORK");
    expect((error as QwasmError).message).toContain(source);
  });

  it("the whole file over HTTP still loads (the server is sound)", async () => {
    const file = await openGGUF(`${server.base}/model.gguf`);
    expect(file.tensors.length).toBeGreaterThan(0);
    await file.close();
  });
});

describe.skipIf(!cliBuilt)("the CLI (dist/cli.js; run node scripts/build.mjs)", () => {
  it("prints one line naming the path or URL, with the code, and exits non-zero, for every command", async () => {
    const runs = cases().flatMap((c) => COMMANDS.map(([command, argv]) => ({ ...c, command, argv: argv(c.source) })));
    expect(runs.length).toBe(40);
    // Two at a time: the machine is shared.
    const results: { run: (typeof runs)[number]; result: Awaited<ReturnType<typeof runCli>> }[] = [];
    for (let i = 0; i < runs.length; i += 2) {
      results.push(...await Promise.all(runs.slice(i, i + 2).map(async (run) => ({ run, result: await runCli(run.argv) }))));
    }
    for (const { run, result } of results) {
      const what = `${run.command} with ${run.name}: ${JSON.stringify(result.stderr)}`;
      expect(result.code, what).not.toBe(0);
      expect(result.code, what).not.toBe(null);
      const stderr = result.stderr.trimEnd();
      expect(stderr.split("\n"), what).toHaveLength(1);
      expect(stderr, what).not.toMatch(/\bat .*:\d+:\d+/);
      expect(stderr, what).toContain(run.source);
      expect(stderr, what).toMatch(new RegExp(`^qwasm: .*\\[${run.code}\\]$`));
    }
    expect(results.length).toBe(40);
  });

  it("a missing tokenizer.json is FILE_NOT_FOUND too (not TOKENIZER_INVALID)", async () => {
    const source = join(tmp, "missing.json");
    const { code, stderr } = await runCli(["tokenize", source, "--text", "hi"]);
    expect(code).toBe(2);
    expect(stderr).toBe(`qwasm: cannot read ${source}: no such file (ENOENT) [FILE_NOT_FOUND]\n`);
  });

  it("QWASM_DEBUG=1 or --verbose adds the stack", async () => {
    const source = join(tmp, "missing.gguf");
    for (const [argv, env] of [
      [["run", source, "--prompt", "hi"], { QWASM_DEBUG: "1" }],
      [["run", source, "--prompt", "hi", "--verbose"], {}],
      [["inspect", "--verbose", source], {}],
    ] as const) {
      const { code, stderr } = await runCli([...argv], { env });
      expect(code, argv.join(" ")).not.toBe(0);
      expect(stderr, argv.join(" ")).toContain("[FILE_NOT_FOUND]");
      expect(stderr, argv.join(" ")).toMatch(/\n\s+at /);
    }
  });
});
