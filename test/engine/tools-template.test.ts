// Tools and tool messages in the chat prompt: Qwen2.5-Instruct's own template rendered by
// @huggingface/jinja on the messages as Hugging Face passes them (arguments as objects) is the
// reference; qwasm renders OpenAI-shaped messages (arguments as JSON strings). A template without a
// tools section (Qwen2-Instruct's) falls back to QWEN2_TOOLS_TEMPLATE, checked against text written
// out by hand in Qwen2.5's format.
import { Template } from "@huggingface/jinja";
import { describe, expect, it } from "vitest";
import {
  QWEN2_CHATML_TEMPLATE, QWEN2_TOOLS_TEMPLATE, renderChatTemplate, templateHasTools, type ChatMessage,
} from "../../engine/chat-template";
import { QwasmError } from "../../platform/errors";

/** Qwen2.5-7B-Instruct's tokenizer_config.json chat_template, verbatim (JSON string). */
const QWEN25_TEMPLATE: string = JSON.parse(String.raw`"{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}\n        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"`);

const tools = [
  { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" }, unit: { type: "string", enum: ["c", "f"] } }, required: ["city"] } } },
  { type: "function", function: { name: "get_time", description: "Local time, ünïcode", parameters: { type: "object", properties: {} } } },
];

/** A conversation with parallel calls, their results as role "tool", and the answer. */
const openai: ChatMessage[] = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Weather and time in Paris?" },
  {
    role: "assistant", content: null, tool_calls: [
      { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city": "Paris", "unit": "c"}' } },
      { id: "call_2", type: "function", function: { name: "get_time", arguments: "{}" } },
    ],
  },
  { role: "tool", tool_call_id: "call_1", content: '{"temp": 21}' },
  { role: "tool", tool_call_id: "call_2", content: "14:05" },
  { role: "assistant", content: "21 °C, 14:05." },
  { role: "user", content: "Thanks" },
];

/** The same conversation as Hugging Face passes it to the template: arguments are objects. */
function huggingFace(messages: ChatMessage[]): unknown[] {
  return messages.map((m) => ({
    ...m,
    content: m.content ?? "",
    ...(m.tool_calls ? {
      tool_calls: (m.tool_calls as { function: { name: string; arguments: string } }[]).map((c) => ({ ...c, function: { ...c.function, arguments: JSON.parse(c.function.arguments) } })),
    } : {}),
  }));
}

describe("tools in the chat template", () => {
  it("Qwen2.5's template: qwasm's rendering equals the template's own on Hugging Face's message shape", () => {
    for (const messages of [openai, openai.slice(1), openai.slice(0, 2)]) {
      const reference = new Template(QWEN25_TEMPLATE).render({ messages: huggingFace(messages), tools, add_generation_prompt: true });
      expect(renderChatTemplate(messages, { template: QWEN25_TEMPLATE, tools })).toBe(reference);
      expect(reference).toContain("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"");
    }
    // Without tools the tool messages still render with the model's template (it has a tools section).
    const reference = new Template(QWEN25_TEMPLATE).render({ messages: huggingFace(openai), add_generation_prompt: true });
    expect(renderChatTemplate(openai, { template: QWEN25_TEMPLATE })).toBe(reference);
    expect(reference).toContain("<tool_response>");
  });

  it("the built-in template is Qwen2.5's with Qwen2's default system message", () => {
    expect(templateHasTools(QWEN25_TEMPLATE)).toBe(true);
    expect(templateHasTools(QWEN2_CHATML_TEMPLATE)).toBe(false);
    expect(QWEN2_TOOLS_TEMPLATE).toBe(QWEN25_TEMPLATE.replaceAll("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", "You are a helpful assistant."));
    // A plain conversation renders as Qwen2's ChatML template does.
    for (const messages of [[{ role: "user", content: "Hi" }], [{ role: "system", content: "S" }, { role: "user", content: "Hi" }, { role: "assistant", content: "Yo" }, { role: "user", content: "?" }]]) {
      expect(renderChatTemplate(messages, { template: QWEN2_TOOLS_TEMPLATE })).toBe(renderChatTemplate(messages, { template: QWEN2_CHATML_TEMPLATE }));
    }
  });

  it("a template without a tools section (Qwen2's) falls back to the built-in one: Qwen2.5's format, by hand", () => {
    const messages: ChatMessage[] = [
      { role: "user", content: "Weather?" },
      { role: "assistant", content: "", tool_calls: [{ id: "a", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo"}' } }] },
      { role: "tool", tool_call_id: "a", content: "cold" },
    ];
    const oneTool = [tools[1]];
    const expected =
      "<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
      "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
      '{"type": "function", "function": {"name": "get_time", "description": "Local time, ünïcode", "parameters": {"type": "object", "properties": {}}}}' +
      "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
      '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' +
      "<|im_start|>user\nWeather?<|im_end|>\n" +
      '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>\n' +
      "<|im_start|>user\n<tool_response>\ncold\n</tool_response><|im_end|>\n" +
      "<|im_start|>assistant\n";
    expect(renderChatTemplate(messages, { template: QWEN2_CHATML_TEMPLATE, tools: oneTool })).toBe(expected);
    expect(renderChatTemplate(messages, { tools: oneTool })).toBe(expected); // no template: Qwen2's default
  });

  it("arguments that are not JSON are an INVALID_ARGUMENT naming the message", () => {
    const bad: ChatMessage[] = [{ role: "user", content: "x" }, { role: "assistant", content: null, tool_calls: [{ id: "a", type: "function", function: { name: "f", arguments: "{oops" } }] }];
    expect(() => renderChatTemplate(bad, { tools })).toThrow(QwasmError);
    expect(() => renderChatTemplate(bad, { tools })).toThrow(/messages\[1\]\.tool_calls\[0\]\.function\.arguments/);
  });
});
