// qwasm's public API: re-exports only.
export { loadQwen2, prefill, defaultThreads, Qwen2Forward } from "./model/model";
export type { LoadOptions, Qwen2Model } from "./model/model";
export type { KVType } from "./model/forward";
export { createEngine, QwasmEngine } from "./engine/engine";
export type { EngineOptions } from "./engine/engine";
export type { Engine, EngineInfo, RequestOptions, CompletionStream, CompletionResult, Delta, Usage, FinishReason } from "./engine/types";
export { renderChatTemplate, renderChatTokens, QWEN2_CHATML_TEMPLATE } from "./engine/chat-template";
export type { ChatMessage, ChatTemplateOptions } from "./engine/chat-template";
export { Tokenizer, StreamDecoder, tokenizerFromMetadata } from "./tokenizer";
export { Sampler, argmax } from "./sampler/sampler";
export type { SamplingOptions } from "./sampler/sampler";
export { QwasmError, GGUFError } from "./errors";
export type { ErrorCode } from "./errors";
export { openGGUF, parseGGUFBytes } from "../weights/gguf/reader";
export type { GGUFFile, GGUFTensorInfo } from "../weights/gguf/reader";
export { parseQwen2Config } from "../weights/qwen2";
export type { Qwen2Config } from "../weights/qwen2";
