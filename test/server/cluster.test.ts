// Three `qwasm serve` replicas (the built CLI, dist/cli.js, on a tiny synthetic model) behind a real
// HAProxy running deploy/haproxy.cfg, all on loopback: consistent hashing on X-Session-Id, health
// checks on GET /ready, retries on another replica for 503 and refused connections. Through the
// balancer the official `openai` client runs bounded multi-turn conversations:
//   1. every request completes; each conversation stays on one replica, whose prefix cache its later
//      turns hit (the replicas' /metrics add up to what the responses reported); all replicas serve;
//   2. SIGTERM drains one replica mid-load: no request is lost, and it exits 0;
//   3. SIGKILL ends another mid-load: only requests on it fail, each with an error (no hang), HAProxy
//      marks it DOWN, and later requests succeed on the last one.
// Skipped, with its reason, where HAProxy is not installed (.ci/run installs Debian's package).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { parsePrometheus, value } from "./prometheus";
import { loadTest } from "../../cli/commands/loadtest";

const HAPROXY = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"].find((p) => existsSync(p));
const CLI = join(import.meta.dirname, "../../dist/cli.js");
const CONFIG = join(import.meta.dirname, "../../deploy/haproxy.cfg");

interface Replica { id: string; process: ChildProcess; url: string; log: string[]; exited: Promise<number | null> }

let dir: string;
const replicas: Replica[] = [];
let haproxy: ChildProcess | undefined;
let haproxyLog = "";
let balancer = "";
let stats = "";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });
}

async function startReplica(id: string, model: string): Promise<Replica> {
  const child = spawn(process.execPath, [CLI, "serve", model, "--port", "0", "--threads", "1", "--context", "512",
    "--max-sequences", "8", "--any-model", "--replica-id", id, "--drain-timeout", "30", "--access-log"], { stdio: ["ignore", "pipe", "pipe"] });
  const log: string[] = [];
  child.stderr!.setEncoding("utf8").on("data", (text: string) => log.push(text));
  const exited = exitOf(child);
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (text: string) => {
      out += text;
      if (out.includes("\n")) resolve(out.trim().replace(/\/v1$/, ""));
    });
    void exited.then((code) => reject(new Error(`replica ${id} exited (${code}) before listening: ${log.join("")}`)));
  });
  return { id, process: child, url, log, exited };
}

/** HAProxy's view of the backend's servers: name → status (UP, DOWN, ...). */
async function serverStatus(): Promise<Record<string, string>> {
  const csv = await (await fetch(`${stats}/stats;csv`)).text();
  const rows = csv.split("\n").map((line) => line.split(","));
  const header = rows[0][0].replace(/^# /, "") === "pxname" ? rows[0].map((h) => h.replace(/^# /, "")) : [];
  const status: Record<string, string> = {};
  for (const row of rows.slice(1)) {
    if (row[header.indexOf("pxname")] === "qwasm_replicas" && !["BACKEND", "FRONTEND"].includes(row[1])) status[row[1]] = row[header.indexOf("status")];
  }
  return status;
}

/** Polls until HAProxy reports these statuses (bounded: the test's own timeout ends it otherwise). */
async function waitForStatus(expected: Record<string, string>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const status = await serverStatus().catch(() => ({} as Record<string, string>));
    if (Object.entries(expected).every(([name, s]) => status[name] === s)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`HAProxy never reported ${JSON.stringify(expected)}; it says ${JSON.stringify(await serverStatus())}\n${haproxyLog}`);
}

interface Turn { session: string; turn: number; ok: boolean; replica?: string; cached?: number; error?: unknown; endedAt: number }

/**
 * One conversation of `turns` turns through the balancer, with its own X-Session-Id. A failed turn
 * ends it. onTurn is called after each turn.
 */
async function converse(session: string, turns: number, options: { maxTokens: number; stream: boolean },
  onTurn: (t: Turn) => void): Promise<Turn[]> {
  const client = new OpenAI({ baseURL: `${balancer}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000, defaultHeaders: { "X-Session-Id": session } });
  const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "system", content: `You are the assistant of conversation ${session}. Answer briefly.` }];
  const record: Turn[] = [];
  for (let turn = 1; turn <= turns; turn++) {
    messages.push({ role: "user", content: `Turn ${turn} of ${session}: tell me one thing about the number ${turn * 7}, please.` });
    const request = { model: "qwen2-tiny", messages, max_tokens: options.maxTokens, temperature: 0, ignore_eos: true };
    let t: Turn;
    let replica: string | undefined;
    try {
      if (options.stream) {
        const { data, response } = await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } } as OpenAI.ChatCompletionCreateParamsStreaming).withResponse();
        replica = response.headers.get("x-qwasm-replica") ?? undefined;
        let text = "";
        let usage: OpenAI.CompletionUsage | undefined;
        for await (const chunk of data) {
          text += chunk.choices[0]?.delta.content ?? "";
          if (chunk.usage) usage = chunk.usage;
        }
        if (usage === undefined) throw new Error("the stream ended without its usage chunk");
        messages.push({ role: "assistant", content: text });
        t = { session, turn, ok: true, replica, cached: usage.prompt_tokens_details?.cached_tokens ?? 0, endedAt: performance.now() };
      } else {
        const { data, response } = await client.chat.completions.create(request as OpenAI.ChatCompletionCreateParamsNonStreaming).withResponse();
        replica = response.headers.get("x-qwasm-replica") ?? undefined;
        messages.push({ role: "assistant", content: data.choices[0].message.content ?? "" });
        t = { session, turn, ok: true, replica, cached: data.usage?.prompt_tokens_details?.cached_tokens ?? 0, endedAt: performance.now() };
      }
    } catch (error) {
      t = { session, turn, ok: false, replica, error, endedAt: performance.now() };
    }
    record.push(t);
    onTurn(t);
    if (!t.ok) break;
  }
  return record;
}

/** Runs conversations concurrently; `at` is called once after `after` turns have ended. */
async function load(sessions: string[], turns: number, options: { maxTokens: number; stream: boolean },
  trigger?: { after: number; at: () => void }): Promise<Turn[]> {
  let ended = 0;
  const all = await Promise.all(sessions.map((s) => converse(s, turns, options, () => {
    if (++ended === trigger?.after) trigger.at();
  })));
  return all.flat();
}

async function replicaMetrics(r: Replica) {
  return parsePrometheus(await (await fetch(`${r.url}/metrics`)).text());
}

const sessionsOf = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(2, "0")}`);

beforeAll(async () => {
  if (!HAPROXY) return;
  dir = mkdtempSync(join(tmpdir(), "qwasm-cluster-"));
  const model = join(dir, "tiny.gguf");
  writeFileSync(model, await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 5 })));
  replicas.push(...await Promise.all(["r1", "r2", "r3"].map((id) => startReplica(id, model))));
  const [bind, statsPort] = [await freePort(), await freePort()];
  balancer = `http://127.0.0.1:${bind}`;
  stats = `http://127.0.0.1:${statsPort}`;
  const env = {
    ...process.env, QWASM_BIND: `127.0.0.1:${bind}`, QWASM_STATS: `127.0.0.1:${statsPort}`,
    ...Object.fromEntries(replicas.map((r, i) => [`QWASM_R${i + 1}`, r.url.replace("http://", "")])),
  };
  haproxy = spawn(HAPROXY, ["-db", "-f", CONFIG], { env, stdio: ["ignore", "pipe", "pipe"] });
  haproxy.stdout!.setEncoding("utf8").on("data", (t: string) => { haproxyLog += t; });
  haproxy.stderr!.setEncoding("utf8").on("data", (t: string) => { haproxyLog += t; });
  await waitForStatus({ r1: "UP", r2: "UP", r3: "UP" });
});

afterAll(async () => {
  for (const child of [haproxy, ...replicas.map((r) => r.process)]) {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exitOf(child);
    }
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const TITLE = "three qwasm serve replicas behind HAProxy";
describe.skipIf(!HAPROXY)(HAPROXY ? TITLE : `${TITLE} (skipped: HAProxy is not installed; apt-get install haproxy, as .ci/run does)`, () => {
  it("sticky sessions reuse their replica's prefix cache; a drained replica loses no request; a killed one fails only its own", async () => {
    // 1. 24 conversations of 3 turns.
    const first = await load(sessionsOf("chat", 24), 3, { maxTokens: 4, stream: false });
    expect(first.filter((t) => !t.ok).map((t) => `${t.session} ${t.turn} ${t.replica}: ${String(t.error)}`)).toEqual([]);
    expect(first).toHaveLength(72);
    const bySession = new Map<string, Set<string | undefined>>();
    for (const t of first) bySession.set(t.session, (bySession.get(t.session) ?? new Set()).add(t.replica));
    expect(bySession.size).toBe(24);
    for (const [session, set] of bySession) expect([...set], session).toHaveLength(1);
    const served = new Map<string, number>();
    for (const t of first) served.set(t.replica!, (served.get(t.replica!) ?? 0) + 1);
    expect([...served.keys()].sort()).toEqual(["r1", "r2", "r3"]);
    // Later turns start with the earlier turn's prompt (its system message names the conversation, so
    // no other conversation shares its first page): their cached tokens come from their own replica.
    const later = first.filter((t) => t.turn > 1);
    expect(later).toHaveLength(48);
    expect(later.filter((t) => t.cached! > 0).length).toBe(48);
    const metrics = await Promise.all(replicas.map(replicaMetrics));
    const hits = metrics.reduce((a, m) => a + value(m, "vllm:prefix_cache_hits_total"), 0);
    expect(hits).toBe(first.reduce((a, t) => a + t.cached!, 0));
    for (const [i, m] of metrics.entries()) {
      expect(value(m, "qwasm_sessions_total"), replicas[i].id).toBe([...bySession.values()].filter((s) => s.has(replicas[i].id)).length);
    }

    // qwasm loadtest through the balancer reports what it reports against one replica; with a session
    // header per client ({client}), each client's session lands on one replica.
    const sessionsBefore = (await Promise.all(replicas.map(replicaMetrics))).reduce((a, m) => a + value(m, "qwasm_sessions_total"), 0);
    const through = await loadTest({ url: `${balancer}/v1`, clients: 3, seconds: 1, maxTokens: 4, headers: { "X-Session-Id": "load-{client}" } });
    const direct = await loadTest({ url: replicas[0].url, clients: 3, seconds: 1, maxTokens: 4 });
    for (const report of [through, direct]) {
      expect(Object.keys(report)).toEqual(Object.keys(through));
      expect(report.errors, JSON.stringify(report.errorKinds)).toBe(0);
      expect(report.completed).toBeGreaterThan(0);
      expect(report.started).toBe(report.completed);
      // (A request whose first token ends it streams no content: no time to first token.)
      expect(report.timeToFirstTokenMs.count).toBeGreaterThan(0);
      expect(report.timeToFirstTokenMs.count).toBeLessThanOrEqual(report.completed);
      expect(report.tokens).toBeGreaterThanOrEqual(report.completed);
      expect(report.tokens).toBeLessThanOrEqual(4 * report.completed);
    }
    const sessionsAfter = (await Promise.all(replicas.map(replicaMetrics))).reduce((a, m) => a + value(m, "qwasm_sessions_total"), 0);
    expect(sessionsAfter - sessionsBefore).toBe(3);

    // 2. Drain the busiest replica mid-load: every request still completes.
    const drained = replicas.find((r) => r.id === [...served.entries()].sort((a, b) => b[1] - a[1])[0][0])!;
    let termAt = 0;
    const second = await load(sessionsOf("drain", 24), 3, { maxTokens: 12, stream: false }, {
      after: 12, at: () => { termAt = performance.now(); drained.process.kill("SIGTERM"); },
    });
    expect(termAt).toBeGreaterThan(0);
    expect(second.filter((t) => !t.ok).map((t) => `${t.session} ${t.turn} ${t.replica}: ${String(t.error)}`)).toEqual([]);
    expect(second).toHaveLength(72);
    expect(await drained.exited).toBe(0);
    expect(drained.log.join("")).toContain("SIGTERM: draining");
    await waitForStatus({ [drained.id]: "DOWN" });

    // 3. SIGKILL one of the other two mid-load (streaming): only its requests may fail, each with an error.
    const [killed, last] = replicas.filter((r) => r !== drained);
    let killAt = 0;
    const third = await load(sessionsOf("kill", 12), 3, { maxTokens: 12, stream: true }, {
      after: 8, at: () => { killAt = performance.now(); killed.process.kill("SIGKILL"); },
    });
    expect(killAt).toBeGreaterThan(0);
    await killed.exited;
    const failed = third.filter((t) => !t.ok);
    for (const t of failed) {
      expect(t.error).toBeInstanceOf(Error);
      // Headers came from the killed replica, or none came at all (its connection went mid-request).
      expect([killed.id, undefined]).toContain(t.replica);
      expect(t.endedAt).toBeGreaterThanOrEqual(killAt);
    }
    expect(third.filter((t) => t.ok).length).toBeGreaterThanOrEqual(8);
    await waitForStatus({ [killed.id]: "DOWN", [last.id]: "UP" });
    const after = await load(sessionsOf("after", 6), 1, { maxTokens: 4, stream: true });
    expect(after.map((t) => [t.ok, t.replica])).toEqual(Array(6).fill([true, last.id]));
  });
});
