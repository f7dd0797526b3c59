// The qwasm command line: one file per command in commands/, each with `help` and `main(argv)`.
import { QwasmError } from "../platform/errors";
import { editDistance } from "./args";
import { errorReport } from "./errors";
import { allowRelaxedSimd, relaxedSimdValidates } from "../compute/kernels/module";
import { enableRelaxedSimdFlag } from "../platform/node";
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
import * as quantize from "./commands/quantize";

interface Command {
  help: string;
  main(argv: string[]): Promise<number>;
}

/** Every command, with the one line the top-level help shows for it. */
const COMMANDS: Record<string, [Command, string]> = {
  run: [run, "generate text from a prompt (or one chat message), streamed to stdout"],
  chat: [chat, "an interactive chat in the terminal"],
  serve: [serve, "an OpenAI-compatible HTTP server"],
  bench: [bench, "load time, prefill and decode tokens/s, time to first token, memory"],
  logits: [logits, "the logits of every position of a prompt of token ids"],
  inspect: [inspect, "a GGUF file's metadata, Qwen2 config and tensor table"],
  tokenize: [tokenize, "text to token ids with a model's tokenizer"],
  detokenize: [detokenize, "token ids back to text"],
  synth: [synth, "write a synthetic Qwen2 GGUF (random weights, the real vocabulary)"],
  quantize: [quantize, "quantize a GGUF as llama-quantize does (Q4_K_M, Q8_0, ...), byte for byte"],
  "bench-tokenizer": [benchTokenizer, "the tokenizer's speed in MB/s"],
  fuzz: [fuzz, "a seeded GGUF mutation campaign against the reader"],
  loadtest: [loadtest, "streaming clients against a server: latency percentiles"],
};

const USAGE = `qwasm — Qwen2 language models on the CPU, from JavaScript

usage: qwasm <command> [options]      qwasm <command> --help

commands:
${Object.entries(COMMANDS).map(([name, [, summary]]) => `  ${name.padEnd(16)} ${summary}`).join("\n")}

MODEL is a GGUF file path or an http(s) URL. --verbose (or QWASM_DEBUG=1) prints the stack of an error.
`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(USAGE);
    return name ? 0 : 1;
  }
  const command = COMMANDS[name]?.[0];
  if (!command) {
    const near = Object.keys(COMMANDS).find((known) => editDistance(name, known) <= 2);
    throw new QwasmError("INVALID_ARGUMENT", `unknown command "${name}"${near ? `; did you mean ${near}?` : ""} (see qwasm --help)`);
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(command.help + "\n");
    return 0;
  }
  try {
    return await command.main(rest);
  } catch (error) {
    // A usage error says where the usage is.
    if (error instanceof QwasmError && error.code === "INVALID_ARGUMENT" && !error.message.includes("--help")) {
      throw new QwasmError(error.code, `${error.message} (see qwasm ${name} --help)`, { cause: error });
    }
    throw error;
  }
}

/**
 * Node 20 validates relaxed SIMD only behind a V8 flag (Node 22 and later, Deno and Chromium have
 * it on). The CLI owns its process, so it turns the flag on before any WebAssembly is compiled; the
 * kernels then take the relaxed build only where the correctness probe finds that it computes what
 * the SIMD128 build does (compute/kernels/module.ts): Q4_0 decodes about 1.3-1.4x faster with it.
 * QWASM_RELAXED_SIMD=0 keeps the SIMD128 build. (A library does not change its host's V8 flags:
 * there, `node --experimental-wasm-relaxed-simd` does the same.)
 */
async function enableRelaxedSimd(): Promise<void> {
  const allowed = process.env.QWASM_RELAXED_SIMD !== "0";
  allowRelaxedSimd(allowed);
  if (!allowed || relaxedSimdValidates()) return;
  await enableRelaxedSimdFlag();
}

// --verbose, anywhere on the line and for every command, asks for the stack of an error.
const argv = process.argv.slice(2);
const verbose = argv.includes("--verbose") || process.env.QWASM_DEBUG === "1";

enableRelaxedSimd().then(() => main(argv.filter((a) => a !== "--verbose"))).then(
  (code) => { process.exitCode = code; },
  (error: unknown) => {
    // Every failure is one line (bad input and bad files say what is wrong); --verbose adds the stack.
    process.stderr.write(errorReport(error, verbose));
    process.exitCode = error instanceof QwasmError ? 2 : 1;
  },
);
