// What the host has for a model's memories: free and total RAM, the virtual address space limit
// (`ulimit -v`: every WebAssembly memory reserves about 10 GiB of address space in V8), and in a
// browser what the page may use. Asked once before a model is planned; tests inject their own.
import { runtimeName } from "./index";

export interface HostMemory {
  /** Bytes of RAM the host can still give (MemAvailable), if known. */
  available?: number;
  /** Bytes of RAM in all, if known. */
  total?: number;
  /** The process's virtual address space limit in bytes (`ulimit -v`), if there is one. */
  addressSpace?: number;
  /** Most bytes one page's memories may take (a browser tab's renderer), if there is a limit. */
  perPage?: number;
  /** Where the numbers come from, for messages ("os.freemem", "navigator.deviceMemory", ...). */
  source: string;
}

const GiB = 2 ** 30;
/** Chrome's renderer limit on desktop (about 16 GB of wasm memory per tab); phones give far less. */
export const BROWSER_PAGE_LIMIT = 16 * GiB;
export const MOBILE_PAGE_LIMIT = 4 * GiB;

/** The soft "Max address space" limit of a /proc/self/limits text, in bytes (undefined: unlimited). */
export function parseAddressSpaceLimit(text: string | undefined): number | undefined {
  const line = text?.split("\n").find((l) => l.startsWith("Max address space"));
  const soft = line?.slice("Max address space".length).trim().split(/\s+/)[0];
  return soft === undefined || !/^\d+$/.test(soft) ? undefined : Number(soft);
}

interface BrowserHints {
  deviceMemory?: number;                       // GB, rounded down to a power of two, at most 8
  userAgentData?: { mobile?: boolean };
  userAgent?: string;
}

/** What a page may assume: navigator.deviceMemory (a lower bound: browsers cap it at 8 GB) as the
 *  RAM, and the per-tab limit (16 GiB desktop, 4 GiB mobile). */
export function browserHostMemory(nav: BrowserHints | undefined, heapLimit?: number): HostMemory {
  const mobile = nav?.userAgentData?.mobile ?? /Android|iPhone|iPad|Mobile/i.test(nav?.userAgent ?? "");
  const device = typeof nav?.deviceMemory === "number" && nav.deviceMemory > 0 ? nav.deviceMemory * GiB : undefined;
  // deviceMemory says 8 for anything with 8 GB or more: only a smaller figure is a real bound.
  const total = device !== undefined && device < 8 * GiB ? device : undefined;
  const parts = [total !== undefined ? `navigator.deviceMemory ${nav!.deviceMemory} GB` : undefined,
    `the ${mobile ? "mobile" : "desktop"} per-tab limit`, heapLimit ? "performance.memory" : undefined].filter(Boolean);
  return { total, perPage: mobile ? MOBILE_PAGE_LIMIT : BROWSER_PAGE_LIMIT, source: parts.join(", ") };
}

/** The host's memory as this runtime reports it (Node/Bun: os.freemem/totalmem and /proc/self/limits;
 *  Deno: Deno.systemMemoryInfo; a browser or worker: navigator.deviceMemory and the per-tab limit). */
export async function hostMemory(): Promise<HostMemory> {
  switch (runtimeName()) {
    case "node": {
      const m = await (await import("./node")).hostMemoryNode();
      return { available: m.available, total: m.total, addressSpace: parseAddressSpaceLimit(m.limits), source: "os.freemem/os.totalmem" };
    }
    case "deno": {
      const m = await (await import("./deno")).hostMemoryDeno();
      return { available: m.available, total: m.total, addressSpace: parseAddressSpaceLimit(m.limits), source: "Deno.systemMemoryInfo" };
    }
    default: {
      const g = globalThis as { navigator?: BrowserHints; performance?: { memory?: { jsHeapSizeLimit?: number } } };
      return browserHostMemory(g.navigator, g.performance?.memory?.jsHeapSizeLimit);
    }
  }
}
