// The tokenizer: Qwen2's byte-level BPE, its streaming decoder, and building it from a model file.
export { Tokenizer, TokenType, toWellFormed } from "./tokenizer";
export type { TokenizerSpec, TokenizerJSON, TokenizerConfigJSON, EncodeOptions, DecodeOptions } from "./tokenizer";
export { StreamDecoder } from "./stream";
export { preTokenize, QWEN2_SPLIT_PATTERN, SUPPORTED_PRE_TYPES } from "./pretokenize";
export { tokenizerFromMetadata, chatTemplateFromMetadata, loadTokenizerFromModel } from "./from-model";
export type { MetadataSource } from "./from-model";
export { benchTokenizer, benchText } from "./bench";
export type { TokenizerBenchResult, TokenizerBenchOptions } from "./bench";
