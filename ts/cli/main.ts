// The qwasm command line: one file per command in commands/, each with `help` and `main(argv)`.
import { QwasmError } from "../errors";
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

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (error: unknown) => {
    // Expected failures (bad input, bad files) get their message, not a stack trace.
    if (error instanceof QwasmError) process.stderr.write(`qwasm: ${error.message} [${error.code}]\n`);
    else process.stderr.write(`qwasm: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
    process.exitCode = error instanceof QwasmError ? 2 : 1;
  },
);
