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

/**
 * The built-in template for tools: Qwen2.5-Instruct's chat template (its tokenizer_config.json),
 * with Qwen2-Instruct's default system message ("You are a helpful assistant.") in place of
 * Qwen2.5's. Used for a request with tools or tool messages when the model's template has no tools
 * section (Qwen2-Instruct's has none): tools are listed in the system turn inside <tools></tools>,
 * the model calls them as <tool_call>{"name": ..., "arguments": ...}</tool_call> blocks, an assistant
 * turn's tool_calls are written back the same way, and role "tool" messages become
 * <tool_response> blocks in a user turn (consecutive ones in one turn). Without tools it renders
 * plain conversations exactly as QWEN2_CHATML_TEMPLATE does.
 */
export const QWEN2_TOOLS_TEMPLATE =
  "{%- if tools %}\n" +
  "    {{- '<|im_start|>system\\n' }}\n" +
  "    {%- if messages[0]['role'] == 'system' %}\n" +
  "        {{- messages[0]['content'] }}\n" +
  "    {%- else %}\n" +
  "        {{- 'You are a helpful assistant.' }}\n" +
  "    {%- endif %}\n" +
  "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n" +
  "    {%- for tool in tools %}\n" +
  "        {{- \"\\n\" }}\n" +
  "        {{- tool | tojson }}\n" +
  "    {%- endfor %}\n" +
  "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n" +
  "{%- else %}\n" +
  "    {%- if messages[0]['role'] == 'system' %}\n" +
  "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n" +
  "    {%- else %}\n" +
  "        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n" +
  "    {%- endif %}\n" +
  "{%- endif %}\n" +
  "{%- for message in messages %}\n" +
  "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n" +
  "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n" +
  "    {%- elif message.role == \"assistant\" %}\n" +
  "        {{- '<|im_start|>' + message.role }}\n" +
  "        {%- if message.content %}\n" +
  "            {{- '\\n' + message.content }}\n" +
  "        {%- endif %}\n" +
  "        {%- for tool_call in message.tool_calls %}\n" +
  "            {%- if tool_call.function is defined %}\n" +
  "                {%- set tool_call = tool_call.function %}\n" +
  "            {%- endif %}\n" +
  "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n" +
  "            {{- tool_call.name }}\n" +
  "            {{- '\", \"arguments\": ' }}\n" +
  "            {{- tool_call.arguments | tojson }}\n" +
  "            {{- '}\\n</tool_call>' }}\n" +
  "        {%- endfor %}\n" +
  "        {{- '<|im_end|>\\n' }}\n" +
  "    {%- elif message.role == \"tool\" %}\n" +
  "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n" +
  "            {{- '<|im_start|>user' }}\n" +
  "        {%- endif %}\n" +
  "        {{- '\\n<tool_response>\\n' }}\n" +
  "        {{- message.content }}\n" +
  "        {{- '\\n</tool_response>' }}\n" +
  "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n" +
  "            {{- '<|im_end|>\\n' }}\n" +
  "        {%- endif %}\n" +
  "    {%- endif %}\n" +
  "{%- endfor %}\n" +
  "{%- if add_generation_prompt %}\n" +
  "    {{- '<|im_start|>assistant\\n' }}\n" +
  "{%- endif %}\n";

/** Whether a chat template renders tools (mentions the `tools` variable), as Qwen2.5's does. */
export function templateHasTools(template: string): boolean {
  return /\btools\b/.test(template);
}

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
  /**
   * Tool definitions (`tools` in the template's context, OpenAI's shape). With tools, or with tool
   * messages / assistant tool_calls, a template without a tools section is replaced by
   * QWEN2_TOOLS_TEMPLATE.
   */
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
  return renderPrepared(prepare(messages), options.tools, options);
}

/**
 * Messages for the template: content as a string, and each tool call's arguments (a JSON string in
 * OpenAI's shape) as the object Hugging Face templates expect (they write `arguments | tojson`).
 */
function prepare(messages: readonly ChatMessage[]): unknown[] {
  return messages.map((m, i) => {
    const message: Record<string, unknown> = { ...m, content: contentText(m, i) };
    if (m.tool_calls === undefined || m.tool_calls === null) return message;
    if (!Array.isArray(m.tool_calls)) throw new QwasmError("INVALID_ARGUMENT", `messages[${i}].tool_calls must be an array`);
    message.tool_calls = m.tool_calls.map((call, j) => {
      const where = `messages[${i}].tool_calls[${j}]`;
      const c = call as { function?: { name?: unknown; arguments?: unknown } } | null;
      if (c === null || typeof c !== "object" || c.function === null || typeof c.function !== "object" || typeof c.function.name !== "string") {
        throw new QwasmError("INVALID_ARGUMENT", `${where} must be {id, type: "function", function: {name, arguments}}`);
      }
      let args = c.function.arguments ?? {};
      if (typeof args === "string") {
        try {
          args = JSON.parse(args);
        } catch {
          throw new QwasmError("INVALID_ARGUMENT", `${where}.function.arguments must be a JSON string (as the model returned it); got ${JSON.stringify(args).slice(0, 80)}`);
        }
      }
      return { ...c, function: { ...c.function, arguments: args } };
    });
    return message;
  });
}

/** Whether the messages or the tools need a template with a tools section. */
function usesTools(messages: unknown[], tools: unknown[] | undefined): boolean {
  if (tools !== undefined && tools.length > 0) return true;
  return messages.some((m) => {
    const message = m as { role?: string; tool_calls?: unknown[] };
    return message.role === "tool" || (Array.isArray(message.tool_calls) && message.tool_calls.length > 0);
  });
}

function renderPrepared(messages: unknown[], tools: unknown[] | undefined, options: ChatTemplateOptions): string {
  const context: Record<string, unknown> = {
    ...options.variables,
    messages,
    add_generation_prompt: options.addGenerationPrompt ?? true,
  };
  if (options.bosToken !== undefined) context.bos_token = options.bosToken;
  if (options.eosToken !== undefined) context.eos_token = options.eosToken;
  if (tools !== undefined && tools.length > 0) context.tools = tools;
  let template = options.template ?? QWEN2_CHATML_TEMPLATE;
  if (usesTools(messages, tools) && !templateHasTools(template)) template = QWEN2_TOOLS_TEMPLATE;
  try {
    return compile(template).render(context);
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
  const prepared = prepare(messages);
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
