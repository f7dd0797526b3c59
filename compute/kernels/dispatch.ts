// The kernel side of the weight-type table (weights/gguf/types.ts WEIGHT_TYPES): the exports that
// serve a weight type, derived from its row (suffix = the lower-case name: Q4_K → matmul_q4_k,
// dequantize_q4_k), and the export that converts f32 activations to each activation format.
import {
  type ActivationFormat, activationRowBytes, typeName, weightTypeInfo, type WeightTypeInfo, type WeightTypeName,
} from "../../weights/gguf/types";
import { QwasmError } from "../../platform/errors";
import type { KernelName, Kernels } from "./exports";

export type { ActivationFormat };
export { activationRowBytes };

/** A weight type's kernel export suffix: its name in lower case. */
export type KernelSuffix = Lowercase<WeightTypeName>;

export function kernelSuffix(name: WeightTypeName): KernelSuffix {
  return name.toLowerCase() as KernelSuffix;
}

/** The export that converts f32 activations to each format: (src, dst, n); f32 needs none. */
const CONVERTERS = {
  f16: "convert_f32_f16",
  bf16: "convert_f32_bf16",
  q8_0: "quantize_q8_0",
  q8_1: "quantize_q8_1",
  q8_K: "quantize_q8_K",
} as const satisfies Record<Exclude<ActivationFormat, "f32">, string>;

/** The export that converts f32 activations to `format` (not f32, which is used as it is). */
export function activationConverter(format: Exclude<ActivationFormat, "f32">): (typeof CONVERTERS)[keyof typeof CONVERTERS] {
  return CONVERTERS[format];
}

/** Every weight type's matmul: (w, x, out, k, rowStart, rowEnd, nTok, xStride, outStride, scratch). A
 *  type of the table without `matmul_${suffix}` and `matmul_${suffix}_ref` exports fails tsc here.
 *  `scratch`: matmulScratchBytes(k) bytes of the calling thread's own, or 0 (slower tiles for some
 *  types in the relaxed build; see DEVELOPERS.md, Kernel ABI). */
export type MatmulKernel = Kernels[`matmul_${KernelSuffix}` | `matmul_${KernelSuffix}_ref`];
/** Bytes of the scratch a matmul over k inputs may use: 288 per block of 32, what packed Q8_0 takes
 *  (Q8_0P_SCRATCH_PER_BLOCK in assembly/quants/q8_0p.ts; the x4 tiles take 256, X8_BLOCK in
 *  assembly/quants/b32x4.ts; the others MATMUL_SCRATCH_PER_BLOCK of assembly/quants/common.ts, 64). */
export function matmulScratchBytes(k: number): number {
  return 288 * Math.ceil(k / 32);
}

/** Every weight type's dequantize: (src, dst, n). */
export type DequantizeKernel = Kernels[`dequantize_${KernelSuffix}`];

export interface WeightKernels {
  format: ActivationFormat;
  blockSize: number;
  typeSize: number;
  matmul: MatmulKernel;
  /** n weights of the file's layout from src to f32 at dst. */
  dequantize: DequantizeKernel;
  /** Row `row` (k weights) of the matrix at w, in its layout (the file's or the packed one), to f32
   *  at dst: get_rows of an embedding. Undefined for a layout without a row reader (x4, packed Q3_K
   *  and Q5_K). */
  getRow?: (w: number, row: number, k: number, dst: number) => void;
}

type PagedSuffix<N> = N extends `attention_paged_${infer S}` ? S : never;
/** The KV cache formats the paged attention kernels serve ("f32" | "f16" | "q8_0"), from the exports. */
export type PagedAttentionType = PagedSuffix<KernelName>;

/** The paged attention kernel for a KV cache of `kvType`. */
export function pagedAttention(kernels: Kernels, kvType: PagedAttentionType): Kernels[`attention_paged_${PagedAttentionType}`] {
  return kernels[`attention_paged_${kvType}`];
}

/** The flash attention kernel (prefill: a tile of queries per K/V walk) for a KV cache of `kvType`. */
export function flashAttention(kernels: Kernels, kvType: PagedAttentionType): Kernels[`flash_attention_paged_${PagedAttentionType}`] {
  return kernels[`flash_attention_paged_${kvType}`];
}

function supported(type: number): WeightTypeInfo {
  const info = weightTypeInfo(type);
  if (!info) throw new QwasmError("GGUF_UNSUPPORTED", `no kernels for weights of ${typeName(type)}`);
  return info;
}

/** The format a weight type's activations are converted to before the dot product. */
export function activationFormat(type: number): ActivationFormat {
  return supported(type).activation;
}

/** The types with a matmul over rows interleaved by four (assembly/quants/b32x4.ts), by name. */
export const X4_MATMULS = {
  Q4_0: ["matmul_q4_0x4", "matmul_q4_0x4_ref"],
  Q4_1: ["matmul_q4_1x4", "matmul_q4_1x4_ref"],
  Q5_0: ["matmul_q5_0x4", "matmul_q5_0x4_ref"],
  Q5_1: ["matmul_q5_1x4", "matmul_q5_1x4_ref"],
  IQ4_NL: ["matmul_iq4_nlx4", "matmul_iq4_nlx4_ref"],
} as const satisfies Partial<Record<WeightTypeName, readonly [KernelName, KernelName]>>;

/** The types with a matmul over blocks in a packed layout (assembly/quants/q3_k.ts, q5_k.ts,
 *  q6_k.ts, q8_0p.ts), by name. */
export const PACKED_MATMULS = {
  Q8_0: ["matmul_q8_0p", "matmul_q8_0p_ref"],
  Q3_K: ["matmul_q3_kp", "matmul_q3_kp_ref"],
  Q5_K: ["matmul_q5_kp", "matmul_q5_kp_ref"],
  Q6_K: ["matmul_q6_kp", "matmul_q6_kp_ref"],
} as const satisfies Partial<Record<WeightTypeName, readonly [KernelName, KernelName]>>;

type RowReader = NonNullable<WeightKernels["getRow"]>;

/** The packed layouts that have a row reader, by name (an LM head tied to token_embd may then be
 *  packed with it): (kernels, bytes of a row of k weights) -> getRow. */
const PACKED_ROW_READERS: Partial<Record<WeightTypeName, (kernels: Kernels, rowBytes: (k: number) => number) => RowReader>> = {
  Q8_0: (K) => (w, row, k, dst) => K.get_row_q8_0p(w, row, k, dst),
  Q6_K: (K, rowBytes) => (w, row, k, dst) => K.dequantize_q6_kp(w + row * rowBytes(k), dst, k),
};

/** Whether the packed layout of ggml type `type` has a row reader (PACKED_ROW_READERS). */
export function packedRowReader(type: number): boolean {
  const name = weightTypeInfo(type)?.name;
  return name !== undefined && PACKED_ROW_READERS[name] !== undefined;
}

/** The kernels' packers of the packed layouts (every type of PACKED_MATMULS), in place, by name:
 *  (kernels, w, rows, cols, scratch); the Q8_0 packer rearranges groups of four rows through
 *  `scratch` (4 rows' bytes, at most matmulScratchBytes(cols)). compute/model/interleave.ts
 *  packBlocks writes the same bytes in JavaScript: the reference every packer's test holds them to. */
type Packer = (K: Kernels, w: number, rows: number, cols: number, scratch: number) => void;
const WASM_PACKERS: Partial<Record<WeightTypeName, Packer>> = {
  Q8_0: (K, w, rows, cols, scratch) => K.pack_q8_0(w, rows, cols, scratch),
  Q3_K: (K, w, rows, cols) => K.pack_q3_k(w, rows * (cols / 256)),
  Q5_K: (K, w, rows, cols) => K.pack_q5_k(w, rows * (cols / 256)),
  Q6_K: (K, w, rows, cols) => K.pack_q6_k(w, rows * (cols / 256)),
};

/** The kernels' packer for the packed layout of ggml type `type`, if it has one: (w, rows, cols,
 *  scratch), see WASM_PACKERS. */
export function wasmPacker(kernels: Kernels, type: number): ((w: number, rows: number, cols: number, scratch: number) => void) | undefined {
  const pack = WASM_PACKERS[weightTypeInfo(type)?.name as WeightTypeName];
  return pack && ((w, rows, cols, scratch) => pack(kernels, w, rows, cols, scratch));
}

/** The kernels for weights of ggml type `type`; `reference` picks the scalar matmul; `x4`: the
 *  matrix's rows are interleaved by four (compute/model/interleave.ts), for the matmul; `packed`:
 *  its blocks are in the packed layout (the same file). */
export function weightKernels(kernels: Kernels, type: number, reference = false, x4 = false, packed = false): WeightKernels {
  const info = supported(type);
  const suffix = kernelSuffix(info.name);
  let matmul: MatmulKernel = reference ? kernels[`matmul_${suffix}_ref`] : kernels[`matmul_${suffix}`];
  if (x4) {
    const names = (X4_MATMULS as Partial<Record<WeightTypeName, readonly [KernelName, KernelName]>>)[info.name];
    if (!names) throw new QwasmError("INVALID_ARGUMENT", `no interleaved (x4) matmul for ${typeName(type)}`);
    matmul = kernels[names[reference ? 1 : 0]] as MatmulKernel;
  }
  if (packed) {
    const names = (PACKED_MATMULS as Partial<Record<WeightTypeName, readonly [KernelName, KernelName]>>)[info.name];
    if (!names || x4) throw new QwasmError("INVALID_ARGUMENT", `no packed matmul for ${typeName(type)}${x4 ? " with x4" : ""}`);
    matmul = kernels[names[reference ? 1 : 0]] as MatmulKernel;
  }
  const dequantize: DequantizeKernel = kernels[`dequantize_${suffix}`];
  if (!matmul || !dequantize) {
    throw new QwasmError("GGUF_UNSUPPORTED", `the kernel module lacks matmul/dequantize for ${typeName(type)}`);
  }
  const rowBytes = (k: number) => (k / info.blockSize) * info.typeSize;
  const getRow: RowReader | undefined = packed ? PACKED_ROW_READERS[info.name]?.(kernels, rowBytes)
    : x4 ? undefined : (w, row, k, dst) => dequantize(w + row * rowBytes(k), dst, k);
  return { format: info.activation, blockSize: info.blockSize, typeSize: info.typeSize, matmul, dequantize, getRow };
}
