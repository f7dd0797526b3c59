// qwasm inspect with the Qwen2 view: the generic GGUF report plus the parsed config and whether
// qwasm can run the file (and why not).
import type { GGUFFile } from "../../../weights/gguf/reader";
import { mapQwen2Tensors, parseQwen2Config } from "../../../weights/qwen2";
import { QwasmError } from "../../errors";
import { help, main as inspect, type InspectSection } from "./inspect";

export { help };

function describeQwen2(file: GGUFFile): InspectSection {
  try {
    const config = parseQwen2Config(file.metadata, file.tensors);
    mapQwen2Tensors(config, file.tensors);
    const text = Object.entries(config).map(([k, v]) => `  ${k.padEnd(16)} ${typeof v === "object" ? JSON.stringify(v) : v}`);
    return { title: "qwen2 config", text: [...text, "  runnable         yes"], json: { ...config, runnable: true } };
  } catch (e) {
    if (!(e instanceof QwasmError)) throw e;
    return { title: "qwen2 config", text: [`  runnable         no: ${e.message}`], json: { runnable: false, error: e.message, code: e.code } };
  }
}

export function main(argv: string[]): Promise<number> {
  return inspect(argv, { describeConfig: describeQwen2 });
}
