// The qwasm command line: one file per command in commands/, each with `help` and `main(argv)`.
import { QwasmError } from "../errors";
import { allowRelaxedSimd, relaxedSimdValidates } from "../kernels/module";
import { enableRelaxedSimdFlag } from "../runtime/node";
import * as detokenize from "./commands/detokenize";
import * as inspect from "./commands/inspect-model";
import * as logits from "./commands/logits";
import * as run from "./commands/run";
import * as synth from "./commands/synth";
import * as tokenize from "./commands/tokenize";
import * as benchTokenizer from "./commands/bench-tokenizer";
import * as bench from "./commands/bench";
import * as serve from "./commands/serve";
import * as chat from "./commands/chat";
import * as fuzz from "./commands/fuzz";
import * as loadtest from "./commands/loadtest";

interface Command {
  help: string;
  main(argv: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  run, chat, serve, bench, logits, inspect, tokenize, detokenize, synth, "bench-tokenizer": benchTokenizer, fuzz, loadtest,
};

const USAGE = `qwasm — Qwen2 language models on the CPU, from JavaScript

usage: qwasm <command> [options]      qwasm <command> --help

commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(16)} ${c.help.split("\n")[0].replace(/^qwasm \S+ ?/, "")}`).join("\n")}
`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(USAGE);
    return name ? 0 : 1;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`qwasm: unknown command "${name}"\n\n${USAGE}`);
    return 1;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(command.help + "\n");
    return 0;
  }
  return command.main(rest);
}

/**
 * Node 20 validates relaxed SIMD only behind a V8 flag (Node 22 and later, Deno and Chromium have
 * it on). The CLI owns its process, so it turns the flag on before any WebAssembly is compiled; the
 * kernels then take the relaxed build only where the correctness probe finds that it computes what
 * the SIMD128 build does (ts/kernels/module.ts): Q4_0 decodes about 1.3-1.4x faster with it.
 * QWASM_RELAXED_SIMD=0 keeps the SIMD128 build. (A library does not change its host's V8 flags:
 * there, `node --experimental-wasm-relaxed-simd` does the same.)
 */
async function enableRelaxedSimd(): Promise<void> {
  const allowed = process.env.QWASM_RELAXED_SIMD !== "0";
  allowRelaxedSimd(allowed);
  if (!allowed || relaxedSimdValidates()) return;
  await enableRelaxedSimdFlag();
}

enableRelaxedSimd().then(() => main(process.argv.slice(2))).then(
  (code) => { process.exitCode = code; },
  (error: unknown) => {
    // Expected failures (bad input, bad files) get their message, not a stack trace.
    if (error instanceof QwasmError) process.stderr.write(`qwasm: ${error.message} [${error.code}]\n`);
    else process.stderr.write(`qwasm: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
    process.exitCode = error instanceof QwasmError ? 2 : 1;
  },
);
