// The request options that constrain a generation: OpenAI's response_format shape and a GBNF grammar.
import { QwasmError } from "../../platform/errors";
import { compileGrammar, type Grammar } from "./grammar";
import { jsonObjectGbnf, jsonSchemaToGbnf } from "./json-schema";
import { GrammarMatcher, tokenTrie, type TokenSource } from "./matcher";

/** OpenAI's response_format. */
export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; json_schema: { name?: string; schema?: object; strict?: boolean | null; description?: string } };

/** Compiled grammars by their GBNF text: a schema sent again (every request of a client) compiles once. */
const compiled = new Map<string, Grammar>();
const COMPILED_LIMIT = 32;

function cachedGrammar(text: string): Grammar {
  let g = compiled.get(text);
  if (g) {
    compiled.delete(text);
  } else {
    g = compileGrammar(text);
    if (compiled.size >= COMPILED_LIMIT) compiled.delete(compiled.keys().next().value!);
  }
  compiled.set(text, g);
  return g;
}

/** The GBNF text a request's responseFormat / grammar asks for; undefined when unconstrained. */
export function constraintText(options: { responseFormat?: ResponseFormat; grammar?: string }): string | undefined {
  const { responseFormat: format, grammar } = options;
  if (grammar !== undefined && format !== undefined && format.type !== "text") {
    throw new QwasmError("INVALID_ARGUMENT", "give either grammar or responseFormat, not both");
  }
  if (grammar !== undefined) {
    if (typeof grammar !== "string") throw new QwasmError("INVALID_ARGUMENT", "grammar must be GBNF text (a string)");
    return grammar;
  }
  if (format === undefined) return undefined;
  if (format === null || typeof format !== "object") {
    throw new QwasmError("INVALID_ARGUMENT", 'responseFormat must be {type: "text" | "json_object" | "json_schema"}');
  }
  switch (format.type) {
    case "text": return undefined;
    case "json_object": return jsonObjectGbnf();
    case "json_schema": {
      const spec = format.json_schema;
      if (spec === null || typeof spec !== "object") {
        throw new QwasmError("INVALID_ARGUMENT", 'responseFormat json_schema needs json_schema: {name, schema, strict}');
      }
      return jsonSchemaToGbnf(spec.schema ?? true);
    }
    default:
      throw new QwasmError("INVALID_ARGUMENT",
        `responseFormat type ${JSON.stringify((format as { type: unknown }).type)} is not supported (supported: text, json_object, json_schema)`);
  }
}

/**
 * A matcher for one request, or undefined when the options constrain nothing. Throws
 * UNSUPPORTED_SCHEMA / INVALID_GRAMMAR / INVALID_ARGUMENT at once, before anything is queued.
 */
export function constraintFor(tokenizer: TokenSource, options: { responseFormat?: ResponseFormat; grammar?: string }): GrammarMatcher | undefined {
  const text = constraintText(options);
  return text === undefined ? undefined : new GrammarMatcher(cachedGrammar(text), tokenTrie(tokenizer));
}
