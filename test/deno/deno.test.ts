// The built package (dist/) under Deno 2, with the worker pool: test/deno/smoke.js runs in a Deno
// process and checks its logits, tokens and OpenAI responses against what this Node process computes
// for the same synthetic model. Deno comes from the devDependency `deno` (its platform package
// node_modules/@deno/<platform> holds the binary), QWASM_DENO, or PATH; without it the test skips with a message.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createEngine } from "../../ts/engine/engine";
import { loadQwen2, prefill } from "../../ts/model/model";
import type { RequestOptions } from "../../ts/engine/types";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../weights/synth";
import { projectRoot } from "../fixtures";

/** Longest the Deno process may take, including exiting by itself after its last check. */
const DENO_TIMEOUT_MS = 90_000;

function findDeno(): string | undefined {
  const binary = process.platform === "win32" ? "deno.exe" : "deno";
  if (process.env.QWASM_DENO) return process.env.QWASM_DENO;
  const scope = join(projectRoot, "node_modules", "@deno");
  const packaged = existsSync(scope) ? readdirSync(scope).map((p) => join(scope, p, binary)).find((p) => existsSync(p)) : undefined;
  return packaged ?? (process.env.PATH ?? "").split(delimiter).map((p) => join(p, binary)).find((p) => p && existsSync(p));
}

const deno = findDeno();
const dist = join(projectRoot, "dist");
const work = mkdtempSync(join(tmpdir(), "qwasm-deno-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** What Node computes and the Deno script replays (greedy and seeded sampling, so both are exact). */
async function writeExpected(): Promise<void> {
  const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 11 }));
  writeFileSync(join(work, "model.gguf"), bytes);

  // Several prefill chunks of 4 tokens over pages of 4 positions.
  const loadOptions = { contextLength: 64, maxTokens: 4, pageSize: 4 };
  const engineOptions = { contextLength: 1024, maxSequences: 4, maxTokens: 16 };
  const engine = await createEngine(bytes, { ...engineOptions, threads: 1 });
  try {
    const promptIds = engine.tokenize("Deno runs the worker pool, and the logits agree.");
    const model = await loadQwen2(bytes, { ...loadOptions, threads: 1 });
    try {
      const logits = await prefill(model.forward, promptIds, 0, true);
      writeFileSync(join(work, "logits.f32"), new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
    } finally {
      await model.dispose();
    }

    const greedy: RequestOptions = { maxTokens: 12, temperature: 0, ignoreEos: true };
    const requests: { prompt: string; options: RequestOptions; tokens?: number[]; text?: string }[] = [
      { prompt: "Once upon a time", options: greedy },
      { prompt: "The quick brown fox jumps over the lazy dog, again and again and again.", options: greedy },
      { prompt: "Hi", options: { ...greedy, maxTokens: 7 } },
      { prompt: "Sampled, with a seed:", options: { maxTokens: 10, temperature: 0.9, topK: 40, topP: 0.95, seed: 42, ignoreEos: true } },
    ];
    // Submitted in one go, as the Deno script does, so that both engines batch the same steps.
    const results = await Promise.all(requests.map((r) => engine.generate(r.prompt, r.options)));
    results.forEach((result, i) => Object.assign(requests[i], { tokens: result.tokens, text: result.text }));

    const chat = { messages: [{ role: "user", content: "Hello from Deno" }], options: { maxTokens: 8, temperature: 0, ignoreEos: true } };
    const chatText = (await engine.chat(chat.messages as { role: "user"; content: string }[], chat.options)).text;
    writeFileSync(join(work, "expected.json"), JSON.stringify({
      promptIds, loadOptions, engineOptions, requests, chat: { ...chat, text: chatText },
    }));
  } finally {
    await engine.dispose();
  }
}

function runDeno(denoPath: string): Promise<{ code: number | null; output: string; timedOut: boolean }> {
  const args = ["run", "--no-prompt", "--no-lock", `--allow-read=${dist},${work}`, "--allow-net=127.0.0.1",
    join(projectRoot, "test", "deno", "smoke.js"), work];
  return new Promise((resolve, reject) => {
    const child = spawn(denoPath, args, { cwd: projectRoot, env: { ...process.env, NO_COLOR: "1" } });
    let output = "";
    child.stdout.on("data", (d) => { output += d; });
    child.stderr.on("data", (d) => { output += d; });
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill("SIGKILL"); }, DENO_TIMEOUT_MS);
    child.once("error", (e) => { clearTimeout(timer); reject(e); });
    child.once("close", (code) => { clearTimeout(timer); resolve({ code, output, timedOut }); });
  });
}

describe("Deno", () => {
  if (!deno) {
    console.warn("deno: skipped, no Deno binary (npm install the devDependency deno, set QWASM_DENO, or put deno on PATH)");
    it.skip("skipped: no Deno binary", () => {});
    return;
  }

  it("runs dist/index.js with 1-3 workers: Node's logits and tokens, and the OpenAI handler on Deno.serve", async () => {
    for (const file of ["index.js", "compute-worker.js"]) {
      if (!existsSync(join(dist, file))) throw new Error(`dist/${file} is missing: run npm run build first`);
    }
    await writeExpected();
    const { code, output, timedOut } = await runDeno(deno);
    const report = `deno ${deno}\n${output}`;
    console.log(report);
    expect(timedOut, `the Deno process did not exit within ${DENO_TIMEOUT_MS / 1000} s\n${report}`).toBe(false);
    expect(output, report).toMatch(/^DENO SMOKE: PASS/m);
    expect(output, report).not.toMatch(/^not ok/m);
    expect(code, report).toBe(0);
  });
});
