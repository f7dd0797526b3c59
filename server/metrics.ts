// GET /metrics: the engine's state and counters in the Prometheus text exposition format 0.0.4.
// Every metric has qwasm's own name (qwasm_...), and where vLLM exposes an equivalent, vLLM's name
// too (vllm:...), since the gateways in front of OpenAI-compatible servers (the Gateway API
// Inference Extension's endpoint picker, vLLM's production-stack router, ...) read those: the queue
// (vllm:num_requests_waiting), the running requests and the KV cache use (vllm:kv_cache_usage_perc, a
// 0-1 fraction). Counters carry the suffix _total as Prometheus clients write them; every sample
// has the label model_name, as vLLM's do.
import type { Engine } from "../engine/types";
import type { Histogram } from "../engine/stats";

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Distinct session ids seen (X-Session-Id or the body's `user`), kept in a bounded set. */
export class SessionCounter {
  private readonly seen = new Set<string>();
  /** Distinct sessions counted so far (a counter: never decreases). */
  total = 0;

  /** At most this many ids are remembered; past it the set starts again (an id seen before may count twice). */
  constructor(private readonly capacity = 100_000) {}

  add(id: string): void {
    if (this.seen.has(id)) return;
    if (this.seen.size >= this.capacity) this.seen.clear();
    this.seen.add(id);
    this.total++;
  }
}

type Labels = Record<string, string>;

class Exposition {
  private readonly lines: string[] = [];

  constructor(private readonly base: Labels) {}

  /** A gauge or counter family: one line of HELP and TYPE, then its samples. */
  family(names: string[], type: "gauge" | "counter", help: string, samples: [Labels, number][]): void {
    for (const name of names) {
      this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of samples) this.lines.push(`${name}${labelText({ ...this.base, ...labels })} ${number(value)}`);
    }
  }

  histogram(names: string[], help: string, h: Histogram): void {
    for (const name of names) {
      this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} histogram`);
      let cumulative = 0;
      h.bounds.forEach((bound, i) => {
        cumulative += h.counts[i];
        this.lines.push(`${name}_bucket${labelText({ ...this.base, le: number(bound) })} ${cumulative}`);
      });
      this.lines.push(`${name}_bucket${labelText({ ...this.base, le: "+Inf" })} ${h.count}`);
      this.lines.push(`${name}_sum${labelText(this.base)} ${number(h.sum)}`);
      this.lines.push(`${name}_count${labelText(this.base)} ${h.count}`);
    }
  }

  text(): string {
    return this.lines.join("\n") + "\n";
  }
}

function number(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function escapeHelp(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

function labelText(labels: Labels): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"')}"`);
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}

/**
 * The metrics of one engine as Prometheus text. Engines without stats or kvStats (other Engine
 * implementations) show what they have: the draining flag and the session count.
 */
export function renderMetrics(engine: Engine, modelName: string, sessions: SessionCounter): string {
  const out = new Exposition({ model_name: modelName });
  const kv = engine.kvStats?.();
  if (kv) {
    out.family(["qwasm_requests_running", "vllm:num_requests_running"], "gauge", "Requests being computed (holding a slot).", [[{}, kv.running]]);
    out.family(["qwasm_requests_waiting", "vllm:num_requests_waiting"], "gauge", "Requests waiting for a slot or KV pages.", [[{}, kv.waiting]]);
    out.family(["qwasm_kv_pages_total"], "gauge", "KV cache pages in the pool.", [[{}, kv.pages]]);
    out.family(["qwasm_kv_pages_in_use"], "gauge", "KV cache pages held by requests.", [[{}, kv.inUse]]);
    out.family(["qwasm_kv_pages_reserved"], "gauge", "KV cache pages promised to running requests, not allocated yet.", [[{}, kv.reserved]]);
    out.family(["qwasm_kv_pages_cached"], "gauge", "Idle KV cache pages kept for prefix reuse (free to take).", [[{}, kv.cached]]);
    const usage = kv.pages > 0 ? Math.min(1, (kv.inUse + kv.reserved) / kv.pages) : 0;
    out.family(["qwasm_kv_cache_usage_ratio", "vllm:kv_cache_usage_perc"], "gauge",
      "KV cache usage, 0 to 1: pages held or promised by requests over the pool (idle cached pages count as free).", [[{}, usage]]);
    // What the Gateway API Inference Extension's prefix-cache scorer reads for the block size and count.
    out.family(["vllm:cache_config_info"], "gauge", "KV cache configuration (labels); the value is always 1.",
      [[{ block_size: String(kv.pageSize), num_gpu_blocks: String(kv.pages) }, 1]]);
  }
  out.family(["qwasm_draining"], "gauge", "1 while the server drains (refuses new requests), else 0.", [[{}, engine.draining ? 1 : 0]]);
  const s = engine.stats;
  if (s) {
    out.family(["qwasm_prefix_cache_queries_tokens_total", "vllm:prefix_cache_queries_total"], "counter",
      "Prompt tokens looked up in the prefix cache.", [[{}, s.prefixQueryTokens]]);
    out.family(["qwasm_prefix_cache_hits_tokens_total", "vllm:prefix_cache_hits_total"], "counter",
      "Prompt tokens whose KV was reused from the prefix cache.", [[{}, s.prefixHitTokens]]);
    out.family(["qwasm_prompt_tokens_total", "vllm:prompt_tokens_total"], "counter", "Prompt tokens of finished requests.", [[{}, s.promptTokens]]);
    out.family(["qwasm_generation_tokens_total", "vllm:generation_tokens_total"], "counter", "Tokens generated.", [[{}, s.generationTokens]]);
    const reasons = (["stop", "length", "abort"] as const).map((r): [Labels, number] => [{ finished_reason: r }, s.finished[r] ?? 0]);
    out.family(["qwasm_requests_finished_total", "vllm:request_success_total"], "counter",
      "Requests that ended with a result, by finish reason.", reasons);
    out.family(["qwasm_requests_failed_total"], "counter", "Requests refused or failed, by error code.",
      Object.entries(s.failed).sort().map(([code, n]): [Labels, number] => [{ code }, n]));
    out.histogram(["qwasm_time_to_first_token_seconds", "vllm:time_to_first_token_seconds"],
      "Time from the request to its first generated token, in seconds.", s.timeToFirstToken);
    out.histogram(["qwasm_inter_token_latency_seconds", "vllm:inter_token_latency_seconds"],
      "Time between successive generated tokens of a request, in seconds.", s.interTokenLatency);
    out.histogram(["qwasm_e2e_request_latency_seconds", "vllm:e2e_request_latency_seconds"],
      "Time from the request to its end, in seconds (requests that ended with a result).", s.e2eLatency);
    out.histogram(["qwasm_request_queue_time_seconds", "vllm:request_queue_time_seconds"],
      "Time a request waited before it was admitted (slot and KV pages), in seconds.", s.queueTime);
  }
  out.family(["qwasm_sessions_total"], "counter", "Distinct session ids seen (X-Session-Id header or the body's user field).", [[{}, sessions.total]]);
  return out.text();
}
