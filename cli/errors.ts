// How the CLI reports a failure: one line on stderr, never a stack trace unless asked for
// (--verbose or QWASM_DEBUG=1).
import { QwasmError } from "../platform/errors";

/** `qwasm: message [CODE]` for a QwasmError, `qwasm: message` for anything else; with `debug`, the stack too. */
export function errorReport(error: unknown, debug: boolean): string {
  const message = error instanceof Error ? error.message : String(error);
  const line = `qwasm: ${oneLine(message)}${error instanceof QwasmError ? ` [${error.code}]` : ""}`;
  if (debug) return `${line}\n${stackOf(error)}\n`;
  return error instanceof QwasmError ? `${line}\n` : `${line} (--verbose prints the stack)\n`;
}

function oneLine(text: string): string {
  return text.split("\n").map((s) => s.trim()).filter((s) => s !== "").join(" ");
}

/** The stack, with the causes' stacks (a QwasmError wraps the error that said why). */
function stackOf(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 5; e = (e as { cause?: unknown })?.cause, depth++) {
    parts.push(`${depth > 0 ? "caused by: " : ""}${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  }
  return parts.join("\n");
}
