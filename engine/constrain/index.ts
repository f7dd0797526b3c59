// Constrained decoding: JSON Schema and GBNF grammars, matched token by token. Re-exports, and the
// request option that the engine reads (responseFormat / grammar → a matcher for one request).
export { compileGrammar, Grammar } from "./grammar";
export { compileJsonSchema, jsonSchemaToGbnf, jsonObjectGbnf, formatJson, gbnfLiteral, SUPPORTED_FORMATS } from "./json-schema";
export { GrammarMatcher, TokenTrie, tokenTrie } from "./matcher";
export type { TokenSource } from "./matcher";
export { constraintFor } from "./request";
export type { ResponseFormat } from "./request";
