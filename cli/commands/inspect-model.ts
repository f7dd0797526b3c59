// qwasm inspect with the Qwen2 view: the generic GGUF report plus the parsed config and whether
// qwasm can run the file (and why not).
import type { GGUFFile } from "../../weights/gguf/reader";
import { typeInfo } from "../../weights/gguf/types";
import { mapQwen2Tensors, parseQwen2Config } from "../../weights/qwen2";
import { QwasmError } from "../../platform/errors";
import { tokenReadBytes } from "../../compute/model/moe";
import { help, main as inspect, type InspectSection } from "./inspect";

export { help };

function describeQwen2(file: GGUFFile): InspectSection {
  try {
    const config = parseQwen2Config(file.metadata, file.tensors);
    const tensors = mapQwen2Tensors(config, file.tensors);
    const text = Object.entries(config).map(([k, v]) => `  ${k.padEnd(16)} ${typeof v === "object" ? JSON.stringify(v) : v}`);
    const experts = config.moe ? expertLayout(file, config.moe, tokenReadBytes(config, tensors)) : undefined;
    return {
      title: "qwen2 config",
      text: [...text, ...(experts?.text ?? []), "  runnable         yes"],
      json: { ...config, ...(experts ? { expertLayout: experts.json } : {}), runnable: true },
    };
  } catch (e) {
    if (!(e instanceof QwasmError)) throw e;
    return { title: "qwen2 config", text: [`  runnable         no: ${e.message}`], json: { runnable: false, error: e.message, code: e.code } };
  }
}

/** qwen2moe: the experts per layer, the bytes of one expert's slabs, and what one decoded token reads. */
function expertLayout(file: GGUFFile, moe: NonNullable<ReturnType<typeof parseQwen2Config>["moe"]>,
  reads: ReturnType<typeof tokenReadBytes>): { text: string[]; json: unknown } {
  const E = moe.nExperts;
  const slab = (name: string) => {
    const t = file.tensor(name);
    return t ? { type: typeInfo(t.type)?.name ?? `type ${t.type}`, dims: t.dims, bytesPerExpert: t.nbytes / E } : undefined;
  };
  const layer0 = { gate: slab("blk.0.ffn_gate_exps.weight"), up: slab("blk.0.ffn_up_exps.weight"), down: slab("blk.0.ffn_down_exps.weight") };
  const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  const text = [
    `  experts          ${E} routed per layer, ${moe.nExpertsUsed} used per token (softmax weights, not renormalized), ` +
      `expert FFN ${moe.expertFfn}, shared expert FFN ${moe.sharedFfn} (sigmoid-gated)`,
    ...Object.entries(layer0).map(([part, s]) => s
      ? `  blk.0 ${part.padEnd(10)} ${s.type} [${s.dims.join(", ")}]: ${E} slabs of ${s.bytesPerExpert} bytes` : `  blk.0 ${part}: missing`),
    `  per token reads  ${mb(reads.total)}: attention ${mb(reads.attention)}, router ${mb(reads.router)}, ` +
      `shared expert ${mb(reads.sharedExpert)}, ${moe.nExpertsUsed} experts ${mb(reads.experts)} (of ${mb(reads.allExperts)}), LM head ${mb(reads.head)}`,
  ];
  return { text, json: { ...moe, layer0, tokenReadBytes: reads } };
}

export function main(argv: string[]): Promise<number> {
  return inspect(argv, { describeConfig: describeQwen2 });
}
