// The demo page: load a Qwen2 GGUF from a URL or a file, then chat with it, streamed, on the CPU.
// Query parameters (for links and tests): ?model=URL&threads=N&ctx=N&cache=0&autoload=1
import { loadEngine } from "./qwasm.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

/** Shared with tests and the console: the engine, the conversation, the last result. */
const demo = { engine: undefined, messages: [], lastResult: undefined, error: undefined, progress: [] };
window.qwasmDemo = demo;

let generating; // the AbortController of the reply being streamed

function setState(state) {
  document.body.dataset.state = state;
  const ready = state === "ready";
  $("prompt").disabled = !ready && state !== "generating";
  $("send").disabled = !ready;
  $("stop").disabled = state !== "generating";
  $("load-url").disabled = state === "loading" || state === "generating";
  $("model-file").disabled = state === "loading" || state === "generating";
}

function showIsolation() {
  const chip = $("isolation");
  chip.textContent = crossOriginIsolated ? "cross-origin isolated" : "not cross-origin isolated";
  chip.className = `chip ${crossOriginIsolated ? "ok" : "warn"}`;
}

function megabytes(n) {
  return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)} MB`;
}

function showProgress(p) {
  demo.progress.push(p);
  const bar = $("progress");
  bar.hidden = false;
  const verb = { download: "downloading", cache: "loading from the browser cache", file: "reading the file" }[p.phase];
  if (p.totalBytes) {
    bar.max = p.totalBytes;
    bar.value = p.loadedBytes;
    $("progress-text").textContent = `${verb}: ${megabytes(p.loadedBytes)} of ${megabytes(p.totalBytes)} ` +
      `(${Math.floor((100 * p.loadedBytes) / p.totalBytes)}%)`;
  } else {
    bar.removeAttribute("value");
    $("progress-text").textContent = `${verb}: ${megabytes(p.loadedBytes)}`;
  }
}

async function load(source, label) {
  if (demo.engine) {
    await demo.engine.dispose();
    demo.engine = undefined;
  }
  demo.error = undefined;
  demo.progress = [];
  setState("loading");
  $("info").textContent = "";
  $("info").classList.remove("error");
  $("progress-text").textContent = `opening ${label}…`;
  $("model-chip").textContent = "loading…";
  const threads = $("threads").value ? Number($("threads").value) : undefined;
  const contextLength = Number($("context").value) || undefined;
  const started = performance.now();
  try {
    demo.engine = await loadEngine(source, { threads, contextLength, cache: $("cache").checked, onProgress: showProgress });
  } catch (e) {
    demo.error = e;
    $("progress").hidden = true;
    $("progress-text").textContent = "";
    $("info").textContent = `could not load ${label}: ${e.message}`;
    $("info").classList.add("error");
    $("model-chip").textContent = "no model";
    setState("error");
    return;
  }
  const info = demo.engine.info;
  const seconds = (performance.now() - started) / 1000;
  $("progress").hidden = true;
  const from = { network: "downloaded", cache: "from the browser cache", file: "from the file" }[info.source];
  $("progress-text").textContent = `loaded ${info.modelName || label} (${info.fileBytes ? megabytes(info.fileBytes) + ", " : ""}` +
    `${from}) in ${seconds.toFixed(1)} s; context ${info.contextLength} tokens` + (info.cacheError ? `; ${info.cacheError}` : "");
  $("info").textContent = info.threadsReason;
  $("threads-chip").textContent = `threads: ${info.threads}`;
  $("threads-chip").className = `chip ${info.threads > 1 ? "ok" : "warn"}`;
  $("model-chip").textContent = info.modelName || label;
  demo.messages = [];
  renderMessages();
  setState("ready");
}

function renderMessages() {
  const box = $("messages");
  box.replaceChildren();
  if (demo.messages.length === 0) {
    box.innerHTML = `<div class="empty">${demo.engine ? "Say something." : "Load a model, then say something."}</div>`;
  }
  for (const m of demo.messages) box.append(bubble(m.role, m.content));
}

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  return div;
}

async function send(text) {
  const engine = demo.engine;
  if (!engine || !text.trim()) return;
  if (demo.messages.length === 0) $("messages").replaceChildren();
  demo.messages.push({ role: "user", content: text });
  $("messages").append(bubble("user", text));
  const reply = bubble("assistant", "");
  reply.classList.add("streaming");
  reply.id = "reply";
  $("messages").querySelectorAll("#reply").forEach((e) => e.removeAttribute("id"));
  $("messages").append(reply);
  $("prompt").value = "";
  setState("generating");
  generating = new AbortController();
  const options = {
    maxTokens: Number($("max-tokens").value) || undefined,
    temperature: Number($("temperature").value) || 0,
    ignoreEos: $("ignore-eos").checked,
    signal: generating.signal,
  };
  // JSON: the reply is constrained to one JSON object (OpenAI's response_format json_object).
  if ($("json").checked) options.responseFormat = { type: "json_object" };
  let tokens = 0;
  let first;
  const started = performance.now();
  const stats = $("stats");
  delete stats.dataset.finish;
  try {
    const stream = engine.chat(demo.messages, options);
    for await (const delta of stream) {
      first ??= performance.now();
      tokens += delta.tokens.length;
      reply.textContent += delta.text;
      reply.dataset.tokens = String(tokens);
      $("messages").scrollTop = $("messages").scrollHeight;
      const seconds = (performance.now() - first) / 1000;
      if (tokens > 1 && seconds > 0) stats.textContent = `${tokens} tokens, ${((tokens - 1) / seconds).toFixed(1)} tokens/s`;
    }
    const result = await stream;
    demo.lastResult = result;
    demo.messages.push({ role: "assistant", content: result.text });
    const decodeSeconds = (performance.now() - (first ?? started)) / 1000;
    const rate = result.usage.completionTokens > 1 && decodeSeconds > 0 ? (result.usage.completionTokens - 1) / decodeSeconds : 0;
    stats.textContent = `${result.usage.completionTokens} tokens, ${rate.toFixed(1)} tokens/s; ` +
      `prompt ${result.usage.promptTokens} tokens, first token after ${result.timings.timeToFirstTokenMs.toFixed(0)} ms; ` +
      `${{ stop: "finished", length: "reached max tokens", abort: "stopped" }[result.finishReason]}`;
    stats.dataset.finish = result.finishReason;
    if (result.finishReason === "abort") reply.insertAdjacentHTML("beforeend", `<span class="note">stopped</span>`);
  } catch (e) {
    demo.error = e;
    reply.insertAdjacentHTML("beforeend", `<span class="note error"></span>`);
    reply.querySelector(".note").textContent = e.message;
    stats.dataset.finish = "error";
  } finally {
    reply.classList.remove("streaming");
    generating = undefined;
    setState("ready");
  }
}

$("load-url").addEventListener("click", () => {
  const url = $("model-url").value.trim();
  if (url) load(url, url.split("/").pop());
});
$("model-url").addEventListener("keydown", (e) => { if (e.key === "Enter") $("load-url").click(); });
$("model-file").addEventListener("change", () => {
  const file = $("model-file").files?.[0];
  if (file) load(file, file.name);
});
$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  send($("prompt").value);
});
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    if (!$("send").disabled) send($("prompt").value);
  }
});
$("stop").addEventListener("click", () => generating?.abort());
$("clear").addEventListener("click", () => {
  if (generating) return;
  demo.messages = [];
  renderMessages();
  $("stats").textContent = "";
});

showIsolation();
if (params.has("model")) $("model-url").value = params.get("model");
if (params.has("threads")) {
  const threads = params.get("threads");
  if (![...$("threads").options].some((o) => o.value === threads)) $("threads").add(new Option(threads));
  $("threads").value = threads;
}
if (params.has("ctx")) $("context").value = params.get("ctx");
if (params.get("cache") === "0") $("cache").checked = false;
setState("idle");
if (params.get("autoload") === "1" && $("model-url").value) $("load-url").click();
else suggestModels();

/** The GGUFs the demo server offers (scripts/demo-web.mjs lists them; a plain static host does not). */
async function suggestModels() {
  try {
    const response = await fetch("models/index.json");
    if (!response.ok) return;
    const urls = await response.json();
    $("known-models").replaceChildren(...urls.map((url) => new Option(url)));
    if (!$("model-url").value && urls.length > 0) $("model-url").value = urls[0];
  } catch {
    // No list: type a URL or pick a file.
  }
}
