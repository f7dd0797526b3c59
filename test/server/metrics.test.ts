// GET /metrics, /health and /ready of the OpenAI handler over the real engine on a tiny synthetic
// model: the exposition parses under a strict Prometheus text parser, and its numbers agree with
// what the responses themselves reported (usage, cached_tokens, finish reasons) and with the engine's
// page pool; each vLLM alias equals qwasm's own metric.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import { createOpenAIHandler, type AccessLogEntry } from "../../server/openai";
import { parsePrometheus, value } from "./prometheus";

let engine: QwasmEngine;

beforeAll(async () => {
  const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 3 }));
  engine = await createEngine(bytes, { threads: 1, contextLength: 256, maxSequences: 4 });
});
afterAll(async () => {
  await engine?.dispose();
});

const url = (path: string) => `http://qwasm.test${path}`;

function chat(content: string, headers: Record<string, string> = {}, extra: object = {}): Request {
  return new Request(url("/v1/chat/completions"), {
    method: "POST", headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ messages: [{ role: "user", content }], max_tokens: 4, temperature: 0, ...extra }),
  });
}

describe("GET /metrics", () => {
  it("is off by default (404), and behind the API key when one is set; /health and /ready need no key", async () => {
    const plain = createOpenAIHandler(engine);
    expect((await plain(new Request(url("/metrics")))).status).toBe(404);
    const keyed = createOpenAIHandler(engine, { metrics: true, apiKey: "k" });
    expect((await keyed(new Request(url("/metrics")))).status).toBe(401);
    const ok = await keyed(new Request(url("/metrics"), { headers: { authorization: "Bearer k" } }));
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect((await keyed(new Request(url("/health")))).status).toBe(200);
    const ready = await keyed(new Request(url("/ready")));
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: "ready" });
    expect((await keyed(new Request(url("/ready"), { method: "POST" }))).status).toBe(405);
  });

  it("counts what the responses reported: tokens, prefix hits, outcomes, failures and sessions", async () => {
    const log: AccessLogEntry[] = [];
    const handler = createOpenAIHandler(engine, { metrics: true, modelId: "tiny", replicaId: "r7", onAccess: (e) => log.push(e) });
    const before = parsePrometheus(await (await handler(new Request(url("/metrics")))).text());
    const base = {
      prompt: value(before, "qwasm_prompt_tokens_total", { model_name: "tiny" }),
      generation: value(before, "qwasm_generation_tokens_total"),
      queries: value(before, "qwasm_prefix_cache_queries_tokens_total"),
      hits: value(before, "qwasm_prefix_cache_hits_tokens_total"),
      length: value(before, "qwasm_requests_finished_total", { finished_reason: "length" }),
      stop: value(before, "qwasm_requests_finished_total", { finished_reason: "stop" }),
      ttft: value(before, "qwasm_time_to_first_token_seconds_count"),
    };

    // The same long prompt three times (turns of one conversation): the later ones reuse its full pages.
    const long = "The lighthouse keeper counted the ships that passed in the night, one by one, ".repeat(3);
    const usages: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details: { cached_tokens: number } }[] = [];
    const reasons: string[] = [];
    for (const [i, headers] of [{ "x-session-id": "alpha" }, { "x-session-id": "alpha" }, { "x-session-id": "beta" }].entries()) {
      const response = await handler(chat(long, headers, i === 2 ? { ignore_eos: true } : {}));
      expect(response.status).toBe(200);
      expect(response.headers.get("x-qwasm-replica")).toBe("r7");
      const body = await response.json();
      usages.push(body.usage);
      reasons.push(body.choices[0].finish_reason);
    }
    const viaUser = await handler(new Request(url("/v1/completions"), {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 3, temperature: 0, user: "gamma" }),
    }));
    expect(viaUser.status).toBe(200);
    const viaUserBody = await viaUser.json();
    usages.push(viaUserBody.usage);
    reasons.push(viaUserBody.choices[0].finish_reason);
    // Too long for the context: refused, counted by its code.
    const overflow = await handler(chat("word ".repeat(400)));
    expect(overflow.status).toBe(400);

    const response = await handler(new Request(url("/metrics")));
    const text = await response.text();
    const m = parsePrometheus(text);

    expect(usages).toHaveLength(4);
    const sum = (f: (u: typeof usages[number]) => number) => usages.reduce((a, u) => a + f(u), 0);
    expect(usages[1].prompt_tokens_details.cached_tokens).toBeGreaterThan(0);
    expect(value(m, "qwasm_prompt_tokens_total") - base.prompt).toBe(sum((u) => u.prompt_tokens));
    expect(value(m, "qwasm_generation_tokens_total") - base.generation).toBe(sum((u) => u.completion_tokens));
    expect(value(m, "qwasm_prefix_cache_queries_tokens_total") - base.queries).toBe(sum((u) => u.prompt_tokens));
    expect(value(m, "qwasm_prefix_cache_hits_tokens_total") - base.hits).toBe(sum((u) => u.prompt_tokens_details.cached_tokens));
    const finished = (r: string) => reasons.filter((x) => x === r).length;
    expect(value(m, "qwasm_requests_finished_total", { finished_reason: "length" }) - base.length).toBe(finished("length"));
    expect(value(m, "qwasm_requests_finished_total", { finished_reason: "stop" }) - base.stop).toBe(finished("stop"));
    expect(value(m, "qwasm_requests_failed_total", { code: "CONTEXT_OVERFLOW" })).toBeGreaterThanOrEqual(1);
    expect(value(m, "qwasm_time_to_first_token_seconds_count") - base.ttft).toBe(4);
    expect(value(m, "qwasm_sessions_total")).toBe(3);

    // Gauges: nothing running now; the pool as the engine reports it.
    const kv = engine.kvStats();
    expect(value(m, "qwasm_requests_running")).toBe(0);
    expect(value(m, "qwasm_requests_waiting")).toBe(0);
    expect(value(m, "qwasm_kv_pages_total")).toBe(kv.pages);
    expect(value(m, "qwasm_kv_pages_in_use")).toBe(kv.inUse);
    expect(value(m, "qwasm_kv_cache_usage_ratio")).toBe(kv.inUse / kv.pages);
    expect(value(m, "qwasm_draining")).toBe(0);
    expect(value(m, "vllm:cache_config_info", { block_size: String(kv.pageSize), num_gpu_blocks: String(kv.pages) })).toBe(1);

    // vLLM's names: the same numbers, labelled model_name.
    const aliases: [string, string][] = [
      ["vllm:num_requests_running", "qwasm_requests_running"],
      ["vllm:num_requests_waiting", "qwasm_requests_waiting"],
      ["vllm:kv_cache_usage_perc", "qwasm_kv_cache_usage_ratio"],
      ["vllm:prefix_cache_queries_total", "qwasm_prefix_cache_queries_tokens_total"],
      ["vllm:prefix_cache_hits_total", "qwasm_prefix_cache_hits_tokens_total"],
      ["vllm:prompt_tokens_total", "qwasm_prompt_tokens_total"],
      ["vllm:generation_tokens_total", "qwasm_generation_tokens_total"],
      ["vllm:time_to_first_token_seconds_count", "qwasm_time_to_first_token_seconds_count"],
      ["vllm:inter_token_latency_seconds_count", "qwasm_inter_token_latency_seconds_count"],
      ["vllm:e2e_request_latency_seconds_count", "qwasm_e2e_request_latency_seconds_count"],
      ["vllm:request_queue_time_seconds_count", "qwasm_request_queue_time_seconds_count"],
    ];
    for (const [vllm, qwasm] of aliases) expect(value(m, vllm, { model_name: "tiny" }), vllm).toBe(value(m, qwasm));
    expect(value(m, "vllm:request_success_total", { finished_reason: "length" })).toBe(value(m, "qwasm_requests_finished_total", { finished_reason: "length" }));
    for (const type of ["vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"]) expect(m.get(type)?.type).toBe("gauge");
    expect(m.get("vllm:prefix_cache_hits_total")?.type).toBe("counter");
    expect(m.get("vllm:time_to_first_token_seconds")?.type).toBe("histogram");
    // Inter-token gaps: completion tokens minus the first of each request.
    expect(value(m, "qwasm_inter_token_latency_seconds_count")).toBeGreaterThan(0);

    // Access log: sessions from the header, else from the body's user.
    const posts = log.filter((e) => e.method === "POST");
    expect(posts.map((e) => e.sessionId)).toEqual(["alpha", "alpha", "beta", "gamma", undefined]);
    expect(posts.map((e) => e.status)).toEqual([200, 200, 200, 200, 400]);
  });

  it("the strict parser rejects malformed exposition text", () => {
    const bad = [
      "x 1",                                            // no newline at the end
      "# TYPE x gauge\ny 1\n",                          // sample of another family
      "# TYPE x gauge\nx{a=\"1} 1\n",                   // unterminated label
      "# TYPE x gauge\nx one\n",                        // not a number
      "# TYPE x counter\nx -1\n",                       // negative counter
      "# TYPE x gauge\nx 1\nx 2\n",                     // duplicate series
      "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", // not cumulative
      "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n", // +Inf != count
    ];
    for (const text of bad) expect(() => parsePrometheus(text), text).toThrow();
    expect(bad).toHaveLength(8);
    expect(parsePrometheus("# HELP x a\n# TYPE x gauge\nx{a=\"q\\\"\\n\"} 1.5e3\n").get("x")?.samples[0]).toEqual({ name: "x", labels: { a: "q\"\n" }, value: 1500 });
  });
});
