// A full 7B-shape model (Qwen2-7B-Instruct's shapes, 28 layers) past 4 GiB: Q4_0 (4.3 GB) and Q8_0
// (8.1 GB) load over several WebAssembly memories and generate, with 2 workers, through the library,
// `qwasm run` and `qwasm serve` in Node, and the Q4_0 one in Deno and Bun. The files hold the real
// synth header and zero weights (a sparse file in the test's temp dir, written in a moment): loading
// and the forward step do the same work whatever the values, and random weights would take synth tens
// of minutes. Each load takes minutes on two shared cores, so the suite runs only when asked
// (QWASM_BIG_TESTS=1) and when the host has the RAM; otherwise it is skipped with the reason.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { freemem, tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { layoutGGUF } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2, type SynthType } from "../../tools/synth";
import { loadQwen2 } from "../../compute/model/model";
import { projectRoot } from "../fixtures";

const GiB = 2 ** 30;
const asked = process.env.QWASM_BIG_TESTS === "1";
const free = freemem();
const work = mkdtempSync(join(tmpdir(), "qwasm-7b-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Why a run needing `bytes` of RAM is skipped, or undefined when it runs. */
function skipReason(bytes: number): string | undefined {
  if (!asked) return "set QWASM_BIG_TESTS=1 to run it: each load takes minutes";
  if (free < bytes) return `${(free / GiB).toFixed(1)} GiB free, it needs ${(bytes / GiB).toFixed(1)} GiB`;
  return undefined;
}
const title = (what: string, reason: string | undefined) => reason ? `${what} (skipped: ${reason})` : what;

const files = new Map<SynthType, Promise<string>>();
/** The 7B-shape file of `type` with zero weights (made once). */
function zeroModel(type: SynthType): Promise<string> {
  let made = files.get(type);
  if (!made) {
    made = (async () => {
      const layout = layoutGGUF(synthQwen2({ shape: "7b", vocabulary: await readQwen2Vocabulary(), type }));
      const path = join(work, `7b-${type}.gguf`);
      const file = await open(path, "w");
      await file.write(layout.header, 0, layout.header.length, 0);
      await file.truncate(layout.fileSize);
      await file.close();
      return path;
    })();
    files.set(type, made);
  }
  return made;
}

function runProcess(command: string, args: string[], until?: RegExp): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: projectRoot, env: { ...process.env, NO_COLOR: "1" } });
    let output = "";
    const seen = (d: Buffer) => {
      output += d;
      if (until?.test(output)) child.kill("SIGTERM");
    };
    child.stdout.on("data", seen);
    child.stderr.on("data", seen);
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, output }));
  });
}

const cli = join(projectRoot, "dist", "cli.js");

describe.each([["Q4_0", 8 * GiB], ["Q8_0", 13 * GiB]] as const)("7B-shape %s over several memories", (type, needs) => {
  const reason = skipReason(needs);

  it.skipIf(reason !== undefined)(title(`the library: loadQwen2 with 2 workers, 2 memories, a prefill and a decode step`, reason), async () => {
    const model = await loadQwen2(await zeroModel(type), { threads: 2, contextLength: 256, maxTokens: 16 });
    try {
      expect(model.forward.layout.shards).toBeGreaterThanOrEqual(2);
      expect(model.forward.threads).toBe(2);
      const logits = await model.forward.step([1, 2, 3, 4], 0);
      expect(logits.length).toBe(152064);
      expect(logits.every(Number.isFinite)).toBe(true);
      expect((await model.forward.step([5], 4)).every(Number.isFinite)).toBe(true);
    } finally {
      await model.dispose();
    }
  }, 1_800_000);

  it.skipIf(reason !== undefined)(title(`qwasm run generates with 2 threads`, reason), async () => {
    const { code, output } = await runProcess("node", [cli, "run", await zeroModel(type), "--prompt", "Hello", "--max-tokens", "3",
      "--threads", "2", "--context", "256", "--ignore-eos"]);
    expect(output).toMatch(/decode 3 tokens/);
    expect(code, output).toBe(0);
  }, 1_800_000);

  it.skipIf(reason !== undefined)(title(`qwasm serve loads it and answers a completion`, reason), async () => {
    const child = spawn("node", [cli, "serve", await zeroModel(type), "--port", "0", "--threads", "2", "--context", "256", "--max-sequences", "1"],
      { cwd: projectRoot, env: { ...process.env, NO_COLOR: "1" } });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (d) => {
          out += d;
          const m = /http:\/\/\S+/.exec(out);
          if (m) resolve(m[0].replace(/\/(v1\/?)?$/, "")); // serve prints <url>/v1
        });
        child.once("close", (code) => reject(new Error(`serve exited with ${code}`)));
      });
      const res = await fetch(`${url}/v1/completions`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "Hello", max_tokens: 2, temperature: 0 }),
      });
      expect(res.status).toBe(200);
      const body = await res.json() as { usage: { completion_tokens: number } };
      expect(body.usage.completion_tokens).toBeGreaterThanOrEqual(1);
    } finally {
      child.kill("SIGKILL");
    }
  }, 1_800_000);
});

/** The binary `name` from QWASM_<NAME>, a platform package under node_modules/<scope>, or PATH. */
function findBinary(name: string, scope: string, inPackage: string): string | undefined {
  const fromEnv = process.env[`QWASM_${name.toUpperCase()}`];
  if (fromEnv) return fromEnv;
  const dir = join(projectRoot, "node_modules", scope);
  const packaged = existsSync(dir) ? readdirSync(dir).map((p) => join(dir, p, inPackage, name)).find((p) => existsSync(p)) : undefined;
  return packaged ?? (process.env.PATH ?? "").split(delimiter).map((p) => join(p, name)).find((p) => p && existsSync(p));
}

const RUNTIMES = [
  ["Deno", findBinary("deno", "@deno", ""), (script: string) => ["run", "--no-prompt", "--no-lock", "-A", script]],
  ["Bun", findBinary("bun", "@oven", "bin"), (script: string) => [script]],
] as const;

describe.each(RUNTIMES)("7B-shape Q4_0 in %s", (name, binary, args) => {
  const reason = binary ? skipReason(8 * GiB) : `no ${name} binary`;
  it.skipIf(reason !== undefined)(title(`${name} loads it over several memories with 2 workers and steps`, reason), async () => {
    const path = await zeroModel("Q4_0");
    const script = join(work, "load-7b.mjs");
    const { writeFile } = await import("node:fs/promises");
    await writeFile(script, `import { loadQwen2 } from ${JSON.stringify(join(projectRoot, "dist", "index.js"))};
const model = await loadQwen2(${JSON.stringify(path)}, { threads: 2, contextLength: 256, maxTokens: 16 });
const logits = await model.forward.step([1, 2, 3], 0);
console.log("SHARDS " + model.forward.layout.shards + " LOGITS " + logits.length + " FINITE " + logits.every(Number.isFinite));
await model.dispose();
`);
    const { code, output } = await runProcess(binary!, args(script));
    expect(output).toMatch(/SHARDS [2-9] LOGITS 152064 FINITE true/);
    expect(code, output).toBe(0);
  }, 1_800_000);
});
