// Per-token time of Sampler.sample on vocabulary-sized rows of several shapes, for the sampling
// settings people use (temperature 0.7 with top-p 0.9, top-k 40, min-p 0.05, ...). Bundles
// ts/sampler/sampler.ts with esbuild on the fly (no build needed), or another copy of it with
// --source (e.g. the previous version, to compare). Prints numbers; asserts nothing.
//   node scripts/bench-sampler.mjs [--vocab 152064] [--source path/to/sampler.ts] [--ms 300]
// Times are CPU time of this process (process.cpuUsage), the best of 5 rounds, so that other
// processes on the machine disturb less; still, say the load average when quoting them.
import { loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return at >= 0 && at + 1 < argv.length ? argv[at + 1] : fallback;
};
const vocab = Number(option("vocab", "152064"));
const source = resolve(option("source", join(root, "ts", "sampler", "sampler.ts")));
const minMs = Number(option("ms", "300"));

const esbuild = await import("esbuild");
const bundle = await esbuild.build({ entryPoints: [source], bundle: true, format: "esm", platform: "node", write: false, logLevel: "error" });
const { Sampler } = await import("data:text/javascript;base64," + Buffer.from(bundle.outputFiles[0].text).toString("base64"));

let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());

/** Logit rows: `peaked` as a trained model's (a bulk of std 2.5, a long tail of a few hundred tokens
 *  5-14 above it, one or two on top), `confident` (one token far above all), `flat` as a
 *  random-weight model's (std 0.5), `ties` (coarse values: large groups of equal logits). */
const SHAPES = {
  peaked: () => Float32Array.from({ length: vocab }, () => 2.5 * gauss() + (rand() < 0.002 ? 5 + 9 * rand() : 0)),
  confident: () => { const l = Float32Array.from({ length: vocab }, () => 2.5 * gauss()); l[4242] = 30; return l; },
  flat: () => Float32Array.from({ length: vocab }, () => 0.5 * gauss()),
  ties: () => Float32Array.from({ length: vocab }, () => Math.round(4 * gauss()) / 2),
};

const SETTINGS = {
  "T 0.7 top-p 0.9": { temperature: 0.7, topP: 0.9 },
  "T 0.7 top-k 40 top-p 0.9 min-p 0.05": { temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05 },
  "T 0.7 top-p 0.9 min-p 0.05": { temperature: 0.7, topP: 0.9, minP: 0.05 },
  "T 0.7 min-p 0.05": { temperature: 0.7, minP: 0.05 },
  "T 0.7 top-k 40": { temperature: 0.7, topK: 40 },
  "T 1 top-p 0.95": { temperature: 1, topP: 0.95 },
  "T 1 (no filter)": { temperature: 1 },
  "greedy": { temperature: 0 },
};

const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

/** Milliseconds per call: the best of 5 rounds of at least minMs each. */
function bench(fn) {
  for (let i = 0; i < 10; i++) fn();
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    let reps = 0;
    const t0 = cpuMs();
    let t = t0;
    while (t - t0 < minMs) { fn(); reps++; t = cpuMs(); }
    best = Math.min(best, (t - t0) / reps);
  }
  return best;
}

console.log(`sampler ${source}, vocabulary ${vocab}, node ${process.version}, load average ${loadavg().map((v) => v.toFixed(2)).join(" ")}`);
const rows = Object.fromEntries(Object.entries(SHAPES).map(([name, make]) => [name, make()]));
const width = Math.max(...Object.keys(SETTINGS).map((s) => s.length));
console.log(`${"ms/token".padEnd(width)}  ${Object.keys(SHAPES).map((s) => s.padStart(9)).join(" ")}`);
for (const [name, options] of Object.entries(SETTINGS)) {
  const cells = [];
  for (const row of Object.values(rows)) {
    // The sampler modifies its row only through bias and penalties, which are off: one row serves.
    const sampler = new Sampler({ ...options, seed: 7 });
    cells.push(bench(() => sampler.sample(row)).toFixed(3).padStart(9));
  }
  console.log(`${name.padEnd(width)}  ${cells.join(" ")}`);
}
console.log(`load average after: ${loadavg().map((v) => v.toFixed(2)).join(" ")}`);
