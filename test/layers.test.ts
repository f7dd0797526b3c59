// The map of the source tree (DEVELOPERS.md, "Layers"), read from the imports themselves with the
// TypeScript compiler's own scanner: every import points to the same layer or one below, no two
// files import each other through any chain (no circles, `import type` included), and only
// platform/ names `node:` modules.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Bottom to top. A folder may import its own layer and the layers before it. */
const LAYERS: string[][] = [
  ["platform"], // errors, the runtime adapters: the only code that touches node:, Deno, Bun
  ["weights"], // GGUF, weight formats and quantizers, the Qwen2 config
  ["compute"], // kernel loading, the model's memory and step, the worker pool
  ["engine"], // scheduler, sampler, tokenizer, chat template
  ["server", "tools"], // the OpenAI handler; synthetic models and the fuzzer
  ["api", "browser"], // the library's entry points
  ["cli"],
];
const rank = new Map(LAYERS.flatMap((names, i) => names.map((n) => [n, i] as const)));
/** Generated code that sits outside the layers, and who may import it. */
const GENERATED: Record<string, string[]> = { build: ["compute"] };

function sources(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) return sources(path);
    return name.endsWith(".ts") && !name.endsWith(".d.ts") ? [path] : [];
  });
}

function resolveImport(from: string, spec: string): string {
  const base = relative(root, join(root, dirname(from), spec));
  for (const candidate of [base, `${base}.ts`, `${base.replace(/\.js$/, "")}.ts`, join(base, "index.ts")]) {
    try {
      if (statSync(join(root, candidate)).isFile()) return candidate;
    } catch { /* next candidate */ }
  }
  throw new Error(`${from}: cannot resolve ${spec}`);
}

const files = [...rank.keys()].flatMap(sources);
const graph = new Map<string, string[]>();
const external = new Map<string, string[]>();
for (const file of files) {
  const info = ts.preProcessFile(readFileSync(join(root, file), "utf8"), true, true);
  const specs = info.importedFiles.map((f) => f.fileName);
  graph.set(file, specs.filter((s) => s.startsWith(".")).map((s) => resolveImport(file, s)));
  external.set(file, specs.filter((s) => !s.startsWith(".")));
}
const layerOf = (file: string) => file.split("/")[0];

describe("the layers of the source tree", () => {
  it("finds the sources of every layer", () => {
    for (const name of rank.keys()) expect(files.some((f) => layerOf(f) === name), name).toBe(true);
    expect([...graph.values()].flat().length).toBeGreaterThan(200);
  });

  it("imports point down (or within a layer), never up", () => {
    const up: string[] = [];
    for (const [file, targets] of graph) {
      for (const target of targets) {
        const from = layerOf(file), to = layerOf(target);
        const ok = rank.has(to) ? rank.get(to)! <= rank.get(from)! : (GENERATED[to] ?? []).includes(from);
        if (!ok) up.push(`${file} -> ${target}`);
      }
    }
    expect(up).toEqual([]);
  });

  it("no file reaches itself through its imports", () => {
    // Tarjan's strongly connected components: any component of more than one file is a circle.
    let next = 0;
    const index = new Map<string, number>(), low = new Map<string, number>(), stack: string[] = [];
    const onStack = new Set<string>();
    const circles: string[][] = [];
    const visit = (v: string) => {
      index.set(v, next); low.set(v, next); next++;
      stack.push(v); onStack.add(v);
      for (const w of graph.get(v) ?? []) {
        if (!index.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
        else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
      if (low.get(v) === index.get(v)) {
        const component: string[] = [];
        let w: string;
        do { w = stack.pop()!; onStack.delete(w); component.push(w); } while (w !== v);
        if (component.length > 1 || (graph.get(v) ?? []).includes(v)) circles.push(component.sort());
      }
    };
    for (const v of graph.keys()) if (!index.has(v)) visit(v);
    expect(index.size).toBe(new Set([...graph.keys(), ...[...graph.values()].flat()]).size);
    expect(circles).toEqual([]);
  });

  it("only platform/ imports node: modules", () => {
    const outside = [...external].flatMap(([file, specs]) =>
      specs.filter((s) => s.startsWith("node:") && layerOf(file) !== "platform").map((s) => `${file}: ${s}`));
    expect(outside).toEqual([]);
  });
});
