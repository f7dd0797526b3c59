// Chat prompts: a model's `tokenizer.chat_template` (Jinja) rendered with @huggingface/jinja, and
// the rendered prompt turned into token ids such that only the template — never a message — can
// produce special tokens.

import { Template } from "@huggingface/jinja";
import { QwasmError } from "../platform/errors";
import { TokenType, type Tokenizer } from "./tokenizer";

/**
 * Qwen2-Instruct's chat template (ChatML, with the default system message), verbatim from its
 * tokenizer_config.json; used when a model file has none.
 */
export const QWEN2_CHATML_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}" +
  "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}" +
  "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

export interface ChatTextPart {
  type: "text";
  text: string;
}

/** A message in OpenAI's shape (text only). */
export interface ChatMessage {
  role: string;
  content: string | ChatTextPart[] | null;
  name?: string;
  tool_calls?: unknown[];
  tool_call_id?: string;
}

export interface ChatTemplateOptions {
  /** The Jinja template; the model's `tokenizer.chat_template`. Default: QWEN2_CHATML_TEMPLATE. */
  template?: string;
  /** End the prompt with the opening of an assistant turn. Default: true (the prompt is for generation). */
  addGenerationPrompt?: boolean;
  /** `bos_token` / `eos_token` in the template's context. */
  bosToken?: string;
  eosToken?: string;
  /** Tool definitions (`tools` in the template's context), for templates that use them. */
  tools?: unknown[];
  /** Further template variables. */
  variables?: Record<string, unknown>;
}

const compiled = new Map<string, Template>();

function compile(source: string): Template {
  let template = compiled.get(source);
  if (template === undefined) {
    try {
      template = new Template(source);
    } catch (e) {
      throw new QwasmError("INVALID_ARGUMENT", `the chat template does not parse: ${(e as Error).message}`, { cause: e });
    }
    if (compiled.size > 16) compiled.clear();
    compiled.set(source, template);
  }
  return template;
}

/**
 * Content for the template: a string. Arrays of text parts are joined with "\n" (as llama.cpp and
 * vLLM do for templates that expect a string); null (an assistant turn with only tool calls) is "".
 */
function contentText(message: ChatMessage, index: number): string {
  const content = message.content;
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) {
    throw new QwasmError("INVALID_ARGUMENT", `messages[${index}].content must be a string or an array of text parts`);
  }
  return content.map((part, j) => {
    if (part?.type !== "text" || typeof part.text !== "string") {
      throw new QwasmError("INVALID_ARGUMENT",
        `messages[${index}].content[${j}] has type "${part?.type}"; qwasm supports text parts only ({ type: "text", text })`);
    }
    return part.text;
  }).join("\n");
}

function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages)) throw new QwasmError("INVALID_ARGUMENT", "messages must be an array");
  messages.forEach((m, i) => {
    if (typeof m?.role !== "string") throw new QwasmError("INVALID_ARGUMENT", `messages[${i}].role must be a string`);
  });
}

/** Renders the chat template over the messages: the prompt text. */
export function renderChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
  checkMessages(messages);
  return renderPrepared(messages.map((m, i) => ({ ...m, content: contentText(m, i) })), options.tools, options);
}

function renderPrepared(messages: unknown[], tools: unknown[] | undefined, options: ChatTemplateOptions): string {
  const context: Record<string, unknown> = {
    ...options.variables,
    messages,
    add_generation_prompt: options.addGenerationPrompt ?? true,
  };
  if (options.bosToken !== undefined) context.bos_token = options.bosToken;
  if (options.eosToken !== undefined) context.eos_token = options.eosToken;
  if (tools !== undefined) context.tools = tools;
  try {
    return compile(options.template ?? QWEN2_CHATML_TEMPLATE).render(context);
  } catch (e) {
    if (e instanceof QwasmError) throw e;
    throw new QwasmError("INVALID_ARGUMENT", `the chat template failed: ${(e as Error).message}`, { cause: e });
  }
}

// Stands in for each character of a control token's text inside message content (private use,
// so no control token contains it).
const DEFUSED = "\uE000";

/**
 * The prompt's token ids. Equal to `tokenizer.encode(renderChatTemplate(...), { special: true })`
 * whenever no message contains control-token text; where one does (a user typing "<|im_start|>"),
 * that text stays plain text and becomes ordinary tokens.
 *
 * How: the template is rendered twice, once with the messages as they are and once with every
 * control-token text inside them replaced by as many U+E000 characters. Both renderings have the
 * same length and differ only there, so the control tokens found in the second are exactly those
 * the template wrote; the first is cut at those positions and the pieces in between are encoded
 * without special parsing. (If the template's output depends on such text so that the two do not
 * line up, the function throws rather than guess.)
 *
 * bos_token and eos_token default to the tokenizer's, and BOS is prepended when the tokenizer says
 * so (`addBos`) and the template did not write it.
 */
export function renderChatTokens(tokenizer: Tokenizer, messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): number[] {
  checkMessages(messages);
  const opts: ChatTemplateOptions = {
    ...options,
    bosToken: options.bosToken ?? textOf(tokenizer, tokenizer.bosId),
    eosToken: options.eosToken ?? textOf(tokenizer, tokenizer.eosId),
  };
  const prepared = messages.map((m, i) => ({ ...m, content: contentText(m, i) }));
  const real = renderPrepared(prepared, options.tools, opts);

  const controls = [...tokenizer.addedTokens()]
    .filter(([text, id]) => tokenizer.tokenType(id) === TokenType.Control && text.length > 0)
    .map(([text]) => text)
    .sort((a, b) => b.length - a.length);
  const defuse = (s: string) => {
    for (const text of controls) if (s.includes(text)) s = s.split(text).join(DEFUSED.repeat(text.length));
    return s;
  };
  const defusedMessages = defuseStrings(prepared, defuse) as unknown[];
  const defusedTools = options.tools === undefined ? undefined : defuseStrings(options.tools, defuse) as unknown[];
  const defused = renderPrepared(defusedMessages, defusedTools, opts);
  if (defused.length !== real.length || !alignedExceptDefused(real, defused)) {
    throw new QwasmError("INVALID_ARGUMENT",
      "a message contains special-token text and the chat template's output depends on it; " +
      "remove the special-token text from the message");
  }

  const ids: number[] = [];
  let at = 0;
  for (const part of tokenizer.splitSpecial(defused)) {
    if (typeof part === "number") {
      ids.push(part);
      at += tokenizer.tokenText(part).length;
    } else {
      tokenizer.encodeOrdinary(real.slice(at, at + part.length), ids);
      at += part.length;
    }
  }
  if (tokenizer.addBos && tokenizer.bosId !== undefined && ids[0] !== tokenizer.bosId) ids.unshift(tokenizer.bosId);
  return ids;
}

function textOf(tokenizer: Tokenizer, id: number | undefined): string | undefined {
  return id === undefined ? undefined : tokenizer.tokenText(id);
}

/** A deep copy of plain data with `f` applied to every string (keys included). */
function defuseStrings(value: unknown, f: (s: string) => string): unknown {
  if (typeof value === "string") return f(value);
  if (Array.isArray(value)) return value.map((v) => defuseStrings(v, f));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [f(k), defuseStrings(v, f)]));
  }
  return value;
}

function alignedExceptDefused(real: string, defused: string): boolean {
  for (let i = 0; i < real.length; i++) {
    if (real.charCodeAt(i) !== defused.charCodeAt(i) && defused.charCodeAt(i) !== 0xe000) return false;
  }
  return true;
}
