// The built package under Deno, Bun or Node 22/24, run by runtimes.test.ts (plain JavaScript: both run it as it
// is, and the project's type check, which knows neither runtime nor dist/, leaves it alone):
//
//   deno run --allow-read=<dist>,<dir> --allow-net=127.0.0.1 test/runtimes/smoke.js <dir>
//   bun test/runtimes/smoke.js <dir>
//   node22 test/runtimes/smoke.js <dir>
//
// <dir> holds model.gguf and expected.json, written by the test from what Node computed: the logits
// of a prompt (logits.f32), and the tokens and text of a batch of requests and of a chat. This script
// replays the same work with the worker pool and checks that every number and token is identical,
// then serves the OpenAI handler with the runtime's own server (Deno.serve, Bun.serve, node:http). It ends with
// one line, "SMOKE: PASS ..." or "SMOKE: FAIL ...", and must then exit by itself: a worker left
// running would keep it alive.
import * as qwasm from "../../dist/index.js";

/** What differs between the runtimes: arguments, files, the HTTP server, the exit code. */
const runtime = typeof Deno !== "undefined"
  ? {
    name: `Deno ${Deno.version.deno}`,
    arg: Deno.args[0],
    readText: (path) => Deno.readTextFile(path),
    readBytes: (path) => Deno.readFile(path),
    serve(handler) {
      const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
      return { port: server.addr.port, close: () => server.shutdown() };
    },
    fail() { Deno.exitCode = 1; },
  }
  : typeof Bun !== "undefined"
  ? {
    name: `Bun ${Bun.version}`,
    arg: Bun.argv[2],
    readText: (path) => Bun.file(path).text(),
    readBytes: async (path) => new Uint8Array(await Bun.file(path).arrayBuffer()),
    serve(handler) {
      const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: handler });
      return { port: server.port, close: async () => server.stop(true) };
    },
    fail() { process.exitCode = 1; },
  }
  : {
    // Node 22 and 24 (the lines users run): node:http in front of the fetch-style handler.
    name: `Node ${process.versions.node}`,
    arg: process.argv[2],
    readText: async (path) => (await import("node:fs/promises")).readFile(path, "utf8"),
    readBytes: async (path) => new Uint8Array(await (await import("node:fs/promises")).readFile(path)),
    async serve(handler) {
      const { createServer } = await import("node:http");
      const server = createServer(async (req, res) => {
        const chunks = [];
        for await (const c of req) chunks.push(c);
        const body = chunks.length ? Buffer.concat(chunks) : undefined;
        // A client that goes away aborts the request, as Deno.serve and Bun.serve signal it.
        const gone = new AbortController();
        res.on("close", () => { if (!res.writableFinished) gone.abort(); });
        const response = await handler(new Request(`http://127.0.0.1${req.url}`,
          { method: req.method, headers: req.headers, body, signal: gone.signal }));
        res.writeHead(response.status, Object.fromEntries(response.headers));
        try {
          if (response.body) for await (const chunk of response.body) { if (gone.signal.aborted) break; res.write(chunk); }
        } finally {
          res.end();
        }
      });
      await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
      return { port: server.address().port, close: () => new Promise((resolve) => server.close(resolve)) };
    },
    fail() { process.exitCode = 1; },
  };

const started = performance.now();
const dir = runtime.arg;
const expected = JSON.parse(await runtime.readText(`${dir}/expected.json`));
const modelPath = `${dir}/model.gguf`;

let passed = 0;
const failed = [];
function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed.push(name);
  console.log(`${ok ? "ok" : "not ok"} - ${name}${ok || !detail ? "" : `: ${detail}`}`);
}

/** Where two float arrays first differ bit for bit, named by row and vocabulary id; "" when identical. */
function firstDifference(got, want, vocab) {
  if (got.length !== want.length) return `${got.length} logits, expected ${want.length}`;
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return `row ${Math.floor(i / vocab)}, token ${i % vocab}: ${got[i]}, expected ${want[i]}`;
  }
  return "";
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/** The text of an SSE chat completion stream, checking that it ends with [DONE]. */
async function readChatStream(response) {
  const body = await response.text();
  const events = body.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice("data: ".length));
  const done = events.at(-1) === "[DONE]";
  const chunks = events.filter((e) => e !== "[DONE]").map((e) => JSON.parse(e));
  return {
    done,
    text: chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""),
    finishReason: chunks.map((c) => c.choices[0]?.finish_reason).find((r) => r),
  };
}

const toDispose = [];
let server;
try {
  check("navigator.hardwareConcurrency and Atomics.waitAsync exist",
    navigator.hardwareConcurrency >= 1 && typeof Atomics.waitAsync === "function");

  // Bit-identical results need the same kernel build as Node's (the runtimes choose it themselves).
  const kernels = await qwasm.kernelBuild();
  check(`the kernel build Node used (${expected.kernels})`, kernels === expected.kernels, `this runtime chose ${kernels}`);

  // With no thread count given, a model runs one thread per core.
  const cores = Math.min(16, navigator.hardwareConcurrency);
  check(`defaultThreads() is the cores (${cores})`, (await qwasm.defaultThreads()) === cores, `it is ${await qwasm.defaultThreads()}`);
  {
    const model = await qwasm.loadQwen2(modelPath, expected.loadOptions);
    check(`loadQwen2 without threads runs ${cores} thread(s)`, model.forward.threads === cores, `it runs ${model.forward.threads}`);
    await model.dispose();
  }

  // Logits of one prompt, in chunks over several KV pages, with 1, 2 and 3 compute threads.
  const want = new Float32Array((await runtime.readBytes(`${dir}/logits.f32`)).slice().buffer);
  for (const threads of [1, 2, 3]) {
    const model = await qwasm.loadQwen2(modelPath, { ...expected.loadOptions, threads, oversubscribe: true });
    toDispose.push(model);
    check(`loadQwen2 with ${threads} thread(s) runs ${threads} thread(s)`, model.forward.threads === threads,
      `it runs ${model.forward.threads}`);
    const logits = await qwasm.prefill(model.forward, expected.promptIds, 0, true);
    const difference = firstDifference(logits, want, model.config.vocabSize);
    check(`logits with ${threads} thread(s) are bit-identical to Node's`, difference === "", difference);
    await model.dispose();
    toDispose.pop();
  }

  // The same for a qwen2moe model.
  const wantMoE = new Float32Array((await runtime.readBytes(`${dir}/moe-logits.f32`)).slice().buffer);
  for (const threads of [1, 2, 3]) {
    const model = await qwasm.loadQwen2(`${dir}/moe.gguf`, { ...expected.loadOptions, threads, oversubscribe: true });
    toDispose.push(model);
    const logits = await qwasm.prefill(model.forward, expected.promptIds, 0, true);
    const difference = firstDifference(logits, wantMoE, model.config.vocabSize);
    check(`qwen2moe logits with ${threads} thread(s) are bit-identical to Node's`, difference === "", difference);
    await model.dispose();
    toDispose.pop();
  }

  // A batch of requests on the pool, submitted together as Node did (continuous batching).
  const engine = await qwasm.createEngine(modelPath, { ...expected.engineOptions, threads: 3, oversubscribe: true });
  toDispose.push(engine);
  check("the engine runs 3 threads", engine.info.threads === 3, `it runs ${engine.info.threads}`);
  const streams = expected.requests.map((r) => engine.generate(r.prompt, r.options));
  const results = await Promise.all(streams);
  results.forEach((result, i) => {
    const w = expected.requests[i];
    check(`request ${i}: the tokens Node generated`, same(result.tokens, w.tokens),
      `got ${JSON.stringify(result.tokens)}, expected ${JSON.stringify(w.tokens)}`);
    check(`request ${i}: the text Node generated`, result.text === w.text,
      `got ${JSON.stringify(result.text)}, expected ${JSON.stringify(w.text)}`);
  });
  const chat = await engine.chat(expected.chat.messages, expected.chat.options);
  check("chat: the text Node generated", chat.text === expected.chat.text,
    `got ${JSON.stringify(chat.text)}, expected ${JSON.stringify(expected.chat.text)}`);

  // The OpenAI handler on the runtime's server, over a wrapper of the engine that records how each chat ended.
  const chatResults = [];
  const observed = new Proxy(engine, {
    get(target, key) {
      if (key === "chat") {
        return (messages, options) => {
          const stream = target.chat(messages, options);
          stream.result.then((r) => chatResults.push(r), (e) => chatResults.push({ error: e }));
          return stream;
        };
      }
      const value = Reflect.get(target, key);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  server = await runtime.serve(qwasm.createOpenAIHandler(observed, { modelId: "qwen2-tiny" }));
  const url = `http://127.0.0.1:${server.port}/v1/chat/completions`;
  const o = expected.chat.options;
  const body = { model: "qwen2-tiny", messages: expected.chat.messages, max_tokens: o.maxTokens,
    temperature: o.temperature, ignore_eos: o.ignoreEos };
  const post = (extra) => fetch(url, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...body, ...extra }),
  });

  const whole = await post({ stream: false });
  const json = await whole.json();
  check("POST /v1/chat/completions: 200", whole.status === 200, `${whole.status} ${JSON.stringify(json)}`);
  check("POST /v1/chat/completions: the text Node generated", json.choices?.[0]?.message?.content === expected.chat.text,
    `got ${JSON.stringify(json.choices?.[0]?.message?.content)}`);
  check("POST /v1/chat/completions: usage", json.usage?.completion_tokens === o.maxTokens, JSON.stringify(json.usage));

  const streamed = await post({ stream: true });
  check("POST /v1/chat/completions stream: 200 text/event-stream", streamed.status === 200 &&
    (streamed.headers.get("content-type") ?? "").startsWith("text/event-stream"),
    `${streamed.status} ${streamed.headers.get("content-type")}`);
  const events = await readChatStream(streamed);
  check("POST /v1/chat/completions stream: the text Node generated", events.text === expected.chat.text,
    `got ${JSON.stringify(events.text)}`);
  check("POST /v1/chat/completions stream: finish_reason length and [DONE]",
    events.finishReason === "length" && events.done, `${events.finishReason}, done: ${events.done}`);

  // The server aborts request.signal when the client goes away: the generation stops (long before
  // its max_tokens) and frees its pages.
  const client = new AbortController();
  const maxTokens = engine.info.contextLength - 64;
  const before = chatResults.length;
  const long = await fetch(url, {
    method: "POST", headers: { "content-type": "application/json" }, signal: client.signal,
    body: JSON.stringify({ ...body, max_tokens: maxTokens, stream: true }),
  });
  const reader = long.body.getReader();
  await reader.read();
  client.abort();
  await reader.cancel().catch(() => {});
  for (let i = 0; i < 1000 && chatResults.length === before; i++) await new Promise((r) => setTimeout(r, 10));
  const last = chatResults.at(-1);
  check("a client that disconnects mid-stream aborts its generation", chatResults.length > before &&
    last.finishReason === "abort" && last.usage.completionTokens < maxTokens,
    chatResults.length > before ? `finish ${last.finishReason ?? last.error}, ${last.usage?.completionTokens} tokens` : "it did not end");
  const stats = engine.kvStats();
  check("... and frees its KV pages", stats.running === 0 && stats.inUse === 0 && stats.reserved === 0, JSON.stringify(stats));
} catch (error) {
  check("no exception", false, error?.stack ?? String(error));
} finally {
  await server?.close();
  for (const d of toDispose.reverse()) await d.dispose();
}

const seconds = ((performance.now() - started) / 1000).toFixed(1);
if (failed.length === 0) {
  console.log(`SMOKE: PASS (${passed} checks, ${runtime.name}, ${seconds} s)`);
} else {
  console.log(`SMOKE: FAIL (${failed.length} of ${passed + failed.length} checks failed: ${failed.join("; ")})`);
  runtime.fail();
}
