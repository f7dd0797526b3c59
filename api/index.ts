// qwasm's public API: re-exports only.
export { loadQwen2, prefill, defaultThreads, Qwen2Forward } from "../compute/model/model";
export type { LoadOptions, Qwen2Model } from "../compute/model/model";
export type { KVType } from "../compute/model/forward";
export { kernelBuild } from "../compute/kernels/module";
export type { KernelBuild } from "../compute/kernels/module";
export { createEngine, QwasmEngine } from "../engine/engine";
export type { EngineOptions } from "../engine/engine";
export type { Engine, EngineInfo, RequestOptions, CompletionStream, CompletionResult, Delta, Usage, FinishReason } from "../engine/types";
export type { EngineStats, KVStats, Histogram } from "../engine/stats";
export { renderChatTemplate, renderChatTokens, QWEN2_CHATML_TEMPLATE } from "../engine/chat-template";
export type { ChatMessage, ChatTemplateOptions } from "../engine/chat-template";
export { Tokenizer, StreamDecoder, tokenizerFromMetadata } from "../engine/tokenizer";
export { Sampler, argmax } from "../engine/sampler/sampler";
export type { SamplingOptions } from "../engine/sampler/sampler";
export { QwasmError, GGUFError } from "../platform/errors";
export { createOpenAIHandler } from "../server/openai";
export type { OpenAIHandlerOptions, FetchHandler } from "../server/openai";
export type { ErrorCode } from "../platform/errors";
export { openGGUF, parseGGUFBytes } from "../weights/gguf/reader";
export type { GGUFFile, GGUFTensorInfo, GGUFPart } from "../weights/gguf/reader";
// A model source: one GGUF file, or the parts of a split model (paths, URLs, Blobs, in any order).
export type { GGUFSource, GGUFPartSource } from "../weights/gguf/source";
export { SplitGGUFError } from "../weights/gguf/split";
export { parseQwen2Config } from "../weights/qwen2";
export type { Qwen2Config } from "../weights/qwen2";
