// Per-token time of Sampler.sample on vocabulary-sized rows of several shapes, for the sampling
// settings people use (temperature 0.7 with top-p 0.9, top-k 40, min-p 0.05, ...). Bundles
// engine/sampler/sampler.ts with esbuild on the fly (no build needed), or other copies of it with
// --source (repeatable: e.g. the previous version and this one, to compare: their rounds alternate,
// so that a busy machine slows both alike). Prints numbers; asserts nothing.
//   node scripts/bench-sampler.mjs [--vocab 152064] [--source path/to/sampler.ts ...] [--ms 20] [--rounds 15]
// Times are CPU time of this process (process.cpuUsage), the best of the rounds, so that other
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
const sources = argv.flatMap((a, i) => (a === "--source" && i + 1 < argv.length ? [resolve(argv[i + 1])] : []));
if (sources.length === 0) sources.push(join(root, "ts", "sampler", "sampler.ts"));
const minMs = Number(option("ms", "20"));
const rounds = Number(option("rounds", "15"));

const esbuild = await import("esbuild");
const samplers = [];
for (const source of sources) {
  const bundle = await esbuild.build({ entryPoints: [source], bundle: true, format: "esm", platform: "node", write: false, logLevel: "error" });
  // A query string per source: the same text twice would be one module.
  samplers.push((await import("data:text/javascript;base64," + Buffer.from(bundle.outputFiles[0].text + `\n// ${source}`).toString("base64"))).Sampler);
}

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

/** Milliseconds per call of each function: the best of `rounds` rounds of at least minMs each,
 *  the functions' rounds alternating. */
function bench(fns) {
  for (const fn of fns) for (let i = 0; i < 10; i++) fn();
  const best = fns.map(() => Infinity);
  for (let round = 0; round < rounds; round++) {
    fns.forEach((fn, f) => {
      let reps = 0;
      const t0 = cpuMs();
      let t = t0;
      while (t - t0 < minMs) { fn(); reps++; t = cpuMs(); }
      best[f] = Math.min(best[f], (t - t0) / reps);
    });
  }
  return best;
}

console.log(`vocabulary ${vocab}, node ${process.version}, load average ${loadavg().map((v) => v.toFixed(2)).join(" ")}`);
sources.forEach((source, s) => console.log(`[${s}] ${source}`));
const rows = Object.fromEntries(Object.entries(SHAPES).map(([name, make]) => [name, make()]));
const width = Math.max(...Object.keys(SETTINGS).map((s) => s.length));
const cell = (text) => text.padStart(sources.length > 1 ? 10 + 7 * (sources.length - 1) : 10);
console.log(`${"ms/token".padEnd(width)} ${Object.keys(SHAPES).map(cell).join("")}`);
for (const [name, options] of Object.entries(SETTINGS)) {
  const cells = [];
  for (const row of Object.values(rows)) {
    // The sampler modifies its row only through bias and penalties, which are off: one row serves.
    const instances = samplers.map((Sampler) => new Sampler({ ...options, seed: 7 }));
    cells.push(cell(bench(instances.map((sampler) => () => sampler.sample(row))).map((ms) => ms.toFixed(3)).join(" ")));
  }
  console.log(`${name.padEnd(width)} ${cells.join("")}`);
}
console.log(`load average after: ${loadavg().map((v) => v.toFixed(2)).join(" ")}`);
