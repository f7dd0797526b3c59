#!/usr/bin/env node
// Decode and prefill with every core free, then with other processes keeping cores busy: what a
// shared server, a browser with other tabs or an edge host does to qwasm's threads. Runs
// `qwasm bench --json` (end to end through the engine, warm-up excluded) for each thread count,
// quiet and busy, and prints the table and the ratio of each busy row to the busy 1-thread row.
//
//   node scripts/bench-busy.mjs MODEL [--threads 1,2] [--busy 1] [--prompt-tokens 128]
//     [--gen-tokens 64] [--repeat 3]
//
// --busy N starts N processes that spin (one core each) for the busy rows.
import { spawn, spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: "string", default: "1,2" },
    busy: { type: "string", default: "1" },
    "prompt-tokens": { type: "string", default: "128" },
    "gen-tokens": { type: "string", default: "64" },
    repeat: { type: "string", default: "3" },
  },
});
const model = positionals[0];
if (!model) {
  console.error("usage: node scripts/bench-busy.mjs MODEL [--threads 1,2] [--busy 1] [--prompt-tokens 128] [--gen-tokens 64] [--repeat 3]");
  process.exit(2);
}
const cli = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const threadCounts = values.threads.split(",").map(Number);
const busy = Number(values.busy);

function bench(threads) {
  const r = spawnSync(process.execPath, [cli, "bench", model, "--threads", String(threads), "--json",
    "--prompt-tokens", values["prompt-tokens"], "--gen-tokens", values["gen-tokens"], "--repeat", values.repeat],
  { encoding: "utf8", maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`bench failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const rows = [];
for (const threads of threadCounts) rows.push({ load: "quiet", threads, ...bench(threads) });
const spinners = Array.from({ length: busy }, () => spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" }));
try {
  await new Promise((resolve) => setTimeout(resolve, 500));
  for (const threads of threadCounts) rows.push({ load: `${busy} core${busy === 1 ? "" : "s"} busy`, threads, ...bench(threads) });
} finally {
  for (const s of spinners) s.kill("SIGKILL");
}

console.log(`${model}, ${availableParallelism()} cores, kernels ${rows[0].kernels ?? "?"}; bench --prompt-tokens ${values["prompt-tokens"]} ` +
  `--gen-tokens ${values["gen-tokens"]} --repeat ${values.repeat} (best of ${values.repeat}; engine end to end, warm-up excluded)`);
console.log("| load | threads | prefill tokens/s | decode tokens/s | decode vs 1 thread, same load |");
console.log("|---|---|---|---|---|");
for (const r of rows) {
  const one = rows.find((o) => o.load === r.load && o.threads === 1);
  const ratio = one ? (r.decodeTokensPerSecond / one.decodeTokensPerSecond).toFixed(2) + "x" : "-";
  console.log(`| ${r.load} | ${r.threads} | ${r.prefillTokensPerSecond.toFixed(1)} | ${r.decodeTokensPerSecond.toFixed(1)} | ${ratio} |`);
}
