// Running the built CLI (dist/cli.js) as a user does, and a local HTTP server that misbehaves on
// purpose (an error status, a download cut mid-body).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { projectRoot } from "../fixtures";

export const CLI = join(projectRoot, "dist", "cli.js");
export const cliBuilt = existsSync(CLI);

export interface CliResult { code: number | null; stdout: string; stderr: string }

/** Runs `node dist/cli.js ...argv` (asynchronously: a server in this process keeps answering). */
export function runCli(argv: string[], options: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...argv], {
      cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
    // A guard against a hang (the test then fails on the exit code), not a timing assertion.
    const guard = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.on("error", reject);
    child.on("close", (code) => { clearTimeout(guard); resolve({ code, stdout, stderr }); });
  });
}

/**
 * Serves `body` on 127.0.0.1: /model.gguf whole, /missing.gguf as a 404, /cut-N.gguf with the
 * full Content-Length but only the first N bytes before the connection is destroyed.
 */
export async function startModelServer(body: Uint8Array): Promise<{ base: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const url = req.url ?? "";
    const cut = /^\/cut-(\d+)\.gguf$/.exec(url);
    if (url === "/model.gguf" || cut) {
      res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": String(body.length) });
      if (!cut) { res.end(Buffer.from(body)); return; }
      res.write(Buffer.from(body.subarray(0, Number(cut[1]))), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** A port on 127.0.0.1 where nothing listens (connections are refused). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
