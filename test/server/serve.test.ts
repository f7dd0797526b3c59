// `qwasm serve` with the engine loader replaced by the fake engine: options reach the engine and the
// server, the URL is printed, and SIGINT/SIGTERM stop it cleanly.
import { afterEach, describe, expect, it, vi } from "vitest";
import { FakeEngine } from "./fake-engine";

const loaded: { source: string; options: unknown; engine: FakeEngine; disposed: boolean }[] = [];
vi.mock("../../engine/engine", () => ({
  createEngine: async (source: string, options: unknown) => {
    const engine = new FakeEngine();
    const record = { source, options, engine, disposed: false };
    engine.dispose = async () => { record.disposed = true; };
    loaded.push(record);
    return engine;
  },
}));

const { main, help } = await import("../../cli/commands/serve");

afterEach(() => {
  vi.restoreAllMocks();
  loaded.length = 0;
});

/** Runs `serve` until it prints its URL; returns the URL and the pending exit code. */
async function startServe(argv: string[]) {
  let printed = "";
  vi.spyOn(process.stdout, "write").mockImplementation((chunk) => { printed += String(chunk); return true; });
  vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  const exit = main(argv);
  while (!printed.includes("\n")) {
    await Promise.race([exit, new Promise((resolve) => setTimeout(resolve, 5))]);
  }
  return { url: printed.trim(), exit };
}

describe("qwasm serve", () => {
  it("has help that names every option", () => {
    for (const option of ["--host", "--port", "--api-key", "--threads", "--context", "--max-sequences", "--cors",
      "--max-queue", "--request-timeout", "--any-model", "--drain-timeout", "--replica-id", "--access-log"]) {
      expect(help).toContain(option);
    }
  });

  it("serves until SIGINT, then closes and disposes the engine", async () => {
    const sigintListeners = process.listenerCount("SIGINT");
    const { url, exit } = await startServe(["model.gguf", "--port", "0", "--threads", "2", "--context", "512", "--api-key", "k", "--cors"]);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    expect(loaded[0]).toMatchObject({ source: "model.gguf", options: { threads: 2, contextLength: 512, maxSequences: 8 } });

    const denied = await fetch(`${url}/models`);
    expect(denied.status).toBe(401);
    expect(denied.headers.get("access-control-allow-origin")).toBe("*");
    const models = await fetch(`${url}/models`, { headers: { authorization: "Bearer k" } });
    expect((await models.json()).data[0].id).toBe("fake-qwen2");

    process.emit("SIGINT");
    expect(await exit).toBe(0);
    expect(loaded[0].disposed).toBe(true);
    await expect(fetch(`${url}/models`)).rejects.toThrow();
    expect(process.listenerCount("SIGINT")).toBe(sigintListeners);
  });

  it("stops on SIGTERM too", async () => {
    const { exit } = await startServe(["model.gguf", "--port", "0", "--max-sequences", "3"]);
    expect(loaded[0].options).toMatchObject({ maxSequences: 3 });
    process.emit("SIGTERM");
    expect(await exit).toBe(0);
  });

  it("passes --max-queue and --request-timeout to the engine; --any-model answers any model, else 404", async () => {
    const strict = await startServe(["model.gguf", "--port", "0", "--max-queue", "5", "--request-timeout", "2.5"]);
    expect(loaded[0].options).toMatchObject({ maxQueue: 5, requestTimeoutMs: 2500 });
    const ask = (url: string, model: string) => fetch(`${url}/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, messages: [{ role: "user", content: "Hi" }] }),
    });
    const refused = await ask(strict.url, "gpt-4o");
    expect(refused.status).toBe(404);
    expect((await refused.json()).error.code).toBe("model_not_found");
    expect((await ask(strict.url, "fake-qwen2")).status).toBe(200);
    process.emit("SIGINT");
    expect(await strict.exit).toBe(0);

    const any = await startServe(["model.gguf", "--port", "0", "--any-model"]);
    expect(loaded[1].options).toMatchObject({ maxQueue: undefined, requestTimeoutMs: undefined });
    expect((await ask(any.url, "gpt-4o")).status).toBe(200);
    process.emit("SIGINT");
    expect(await any.exit).toBe(0);
  });

  it("on SIGTERM drains with --drain-timeout: /ready 503 and new requests 503 at once, /health 200; then exits 0", async () => {
    let stderr = "";
    const { url, exit } = await startServe(["model.gguf", "--port", "0", "--drain-timeout", "7.5", "--replica-id", "r2", "--access-log"]);
    vi.mocked(process.stderr.write).mockImplementation((chunk) => { stderr += String(chunk); return true; });
    const root = url.replace(/\/v1$/, "");
    const engine = loaded[0].engine;
    let release!: () => void;
    engine.drainGate = new Promise((resolve) => { release = resolve; });
    const ask = () => fetch(`${url}/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json", "x-session-id": "s-1" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }] }),
    });
    const before = await ask();
    expect(before.status).toBe(200);
    expect(before.headers.get("x-qwasm-replica")).toBe("r2");
    await before.text();
    expect((await fetch(`${root}/ready`)).status).toBe(200);
    const metrics = await fetch(`${root}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain("qwasm_sessions_total{model_name=\"fake-qwen2\"} 1");

    process.emit("SIGTERM");
    await vi.waitFor(() => expect(engine.drains).toEqual([{ deadlineMs: 7500 }]));
    const ready = await fetch(`${root}/ready`);
    expect(ready.status).toBe(503);
    expect((await fetch(`${root}/health`)).status).toBe(200);
    const refused = await ask();
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(loaded[0].disposed).toBe(false);
    release();
    expect(await exit).toBe(0);
    expect(loaded[0].disposed).toBe(true);
    expect(stderr).toMatch(/POST \/v1\/chat\/completions 503 [\d.]+ms session="s-1"/);
    expect(stderr).toContain("SIGTERM: draining");
  });

  it.each([
    [["m", "--drain-timeout", "-1"], /--drain-timeout/],
    [["m", "--replica-id", "has space"], /--replica-id/],
    [["m", "--max-queue", "-1"], /--max-queue/],
    [["m", "--max-queue", "2.5"], /--max-queue/],
    [["m", "--request-timeout", "0"], /--request-timeout/],
    [["m", "--max-body-bytes", "0"], /--max-body-bytes/],
    [["m", "--port", "70000"], /--port/],
    [["m", "--port", "1.5"], /--port/],
    [["m", "--max-sequences", "0"], /--max-sequences/],
    [["a", "b"], /one MODEL/],
  ])("rejects %j", async (argv, message) => {
    await expect(main(argv)).rejects.toThrow(message);
    expect(loaded).toHaveLength(0);
  });
});
