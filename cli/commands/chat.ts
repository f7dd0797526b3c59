// qwasm chat: an interactive conversation in the terminal. Earlier turns stay in the KV cache's
// prefix pages, so each reply only computes the new turn. Ctrl-C stops the current reply; Ctrl-C at
// the prompt, or Ctrl-D at any time, quits. What is typed during a reply is dropped.
import { createEngine } from "../../engine/engine";
import type { ChatMessage } from "../../engine/types";
import { createLineReader } from "../../platform/terminal";
import { numberOption, parseArgs, stringOption, kvTypeOption } from "../args";
import { resolveModelPath } from "../default-model";
import { progressBar } from "../load";

export const help = `qwasm chat [MODEL] [--system T] [--max-tokens 512] [--temperature 0.7] [--top-p 0.9] [--seed S]
           [--context N] [--kv-type f32|f16|q8_0] [--threads N] [--oversubscribe]

An interactive chat in the terminal, with line history. Ctrl-C stops the current reply without
quitting; Ctrl-C at the prompt, or Ctrl-D at any time, quits; /reset starts a new conversation.
Text typed while a reply is written is dropped. MODEL defaults to
the built-in synthetic model.`;

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["oversubscribe"], help);
  const modelPath = await resolveModelPath(args.positionals[0]);
  const engine = await createEngine(modelPath, {
    maxSequences: 1, contextLength: numberOption(args, "context"), kvType: kvTypeOption(args), threads: numberOption(args, "threads"), oversubscribe: args.options.has("oversubscribe"),
    onProgress: progressBar(),
  });
  const system = stringOption(args, "system");
  const fresh = (): ChatMessage[] => (system ? [{ role: "system", content: system }] : []);
  let messages = fresh();
  const reader = createLineReader();
  process.stderr.write(`${engine.info.modelName}: ${engine.info.threads} thread(s), context ${engine.info.contextLength}. ` +
    "Ctrl-C stops a reply, Ctrl-D quits, /reset starts over.\n");
  let quit = false;
  try {
    while (!quit) {
      reader.onInterrupt(() => reader.close());
      const line = await reader.question("> ");
      if (line === null) break;
      if (line.trim() === "") continue;
      if (line.trim() === "/reset") { messages = fresh(); continue; }
      messages.push({ role: "user", content: line });
      const abort = new AbortController();
      reader.onInterrupt(() => abort.abort());
      reader.onEnd(() => { quit = true; abort.abort(); });
      reader.replying(true);
      let reply = "";
      try {
        const stream = engine.chat(messages, {
          maxTokens: numberOption(args, "max-tokens", 512),
          temperature: numberOption(args, "temperature", 0.7),
          topP: numberOption(args, "top-p", 0.9),
          seed: numberOption(args, "seed"),
          signal: abort.signal,
        });
        for await (const delta of stream) { process.stdout.write(delta.text); reply += delta.text; }
        const result = await stream;
        const secs = result.timings.totalMs / 1000;
        process.stdout.write("\n");
        process.stderr.write(`[${result.usage.completionTokens} tokens, ${(result.usage.completionTokens / secs).toFixed(1)} tokens/s` +
          `${result.finishReason === "abort" ? ", stopped" : ""}]\n`);
      } catch (e) {
        process.stderr.write(`\n${e instanceof Error ? e.message : String(e)}\n`);
        messages.pop();
        continue;
      } finally {
        reader.replying(false);
      }
      messages.push({ role: "assistant", content: reply });
    }
  } finally {
    reader.close();
    await engine.dispose();
  }
  return 0;
}
