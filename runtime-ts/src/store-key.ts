/**
 * Key templates (PROTOCOL §12.1): a request's fields rendered into a
 * key-value key or an object name, the same way in every runtime. Generated
 * code states the template (literal text and placeholders with their field
 * paths and kinds); everything else lives here.
 */

import { create, type DescField, type DescMessage, isFieldSet, type Message, type MessageInitShape } from "@bufbuild/protobuf";
import { NatsMicroError } from "./errors.js";

/** How a placeholder's field renders: strings as they are, integers in decimal, `true`/`false`, an enum by its value's name. */
export type KeyKind = "string" | "integer" | "bool" | "enum";

/** A `{path}` placeholder of a key template. */
export interface KeyFieldSpec {
  /** The path as written (`tenant.id`): what errors and field violations name. */
  readonly placeholder: string;
  /** Proto field names from the request down; all but the last are singular message fields. */
  readonly path: readonly string[];
  readonly kind: KeyKind;
  /** The last field tracks presence (proto3 `optional`, proto2, a oneof member): unset is missing. */
  readonly presence?: boolean;
  /** An enum's declared values by number in decimal (the first name of each). */
  readonly names?: Readonly<Record<string, string>>;
}

/** Literal text, or a placeholder. */
export type KeySegmentSpec = string | KeyFieldSpec;

/** A parsed `key_template`. */
export interface KeyTemplateSpec {
  /** The template as written in the proto (`user.{id}`). */
  readonly text: string;
  readonly segments: readonly KeySegmentSpec[];
}

/** A placeholder's value: `undefined` when missing (an unset message on the path, an unset field with presence). */
export type KeyValue = string | number | bigint | boolean | undefined;

/** The values for a template's placeholders, by placeholder (`{ "tenant.id": 7n }`). */
export type KeyParts = Readonly<Record<string, string | number | bigint | boolean>>;

/** What a rendered key is for: a key-value key (whole key checked against the key charset) or an object name. */
export type KeyTarget = "kv" | "object";

const KEY_CHARS = /^[-/_=.A-Za-z0-9]*$/;

/** The placeholders of a template, in order. */
export function keyFields(template: KeyTemplateSpec): KeyFieldSpec[] {
  return template.segments.filter((s): s is KeyFieldSpec => typeof s !== "string");
}

/** The INVALID_ARGUMENT of a value that gives no key, with a `BadRequest` naming the placeholder (PROTOCOL §12.1). */
function keyError(method: string, template: KeyTemplateSpec, field: string, why: string): NatsMicroError {
  const description = `key template ${JSON.stringify(template.text)}: {${field}} ${why}`;
  return new NatsMicroError("INVALID_ARGUMENT", method, description).withBadRequest({ field, description });
}

/** One placeholder's text, or `undefined` when its value is missing. */
function renderValue(field: KeyFieldSpec, value: KeyValue): string | undefined {
  if (value === undefined) {
    return undefined;
  }
  switch (field.kind) {
    case "string":
      return value === "" ? undefined : String(value);
    case "enum":
      return typeof value === "number" ? (field.names?.[String(value)] ?? String(value)) : String(value);
    default:
      return String(value);
  }
}

/**
 * Renders a key from a template and its placeholders' values, in order
 * (PROTOCOL §12.1). A missing value (`undefined`, an empty string) throws
 * INVALID_ARGUMENT with a `BadRequest` field violation for the placeholder,
 * never giving a key like `user.`; so does, for a key-value key
 * (`target: "kv"`), a value that makes the whole key invalid (a character
 * outside `A-Z a-z 0-9 - _ / = .`, or an empty token).
 *
 * ```ts
 * const template = { text: "user.{id}", segments: ["user.", { placeholder: "id", path: ["id"], kind: "string" }] } as const;
 * renderKey(template, ["42"], "kv", "SaveProfile"); // "user.42"
 * renderKey(template, [""], "kv", "SaveProfile"); // throws INVALID_ARGUMENT (field violation "id")
 * ```
 */
export function renderKey(template: KeyTemplateSpec, values: readonly KeyValue[], target: KeyTarget, method = ""): string {
  let key = "";
  let index = 0;
  /** Where each placeholder's text lies in the key. */
  const spans: { field: KeyFieldSpec; start: number; end: number }[] = [];
  for (const segment of template.segments) {
    if (typeof segment === "string") {
      key += segment;
      continue;
    }
    const text = renderValue(segment, values[index]);
    index += 1;
    if (text === undefined) {
      throw keyError(method, template, segment.placeholder, segment.kind === "string" ? "is missing or empty" : "is missing");
    }
    if (target === "kv" && !KEY_CHARS.test(text)) {
      const bad = [...text].find((c) => !KEY_CHARS.test(c)) ?? "";
      throw keyError(method, template, segment.placeholder, `holds ${JSON.stringify(bad)}, which a key-value key cannot hold (only A-Z a-z 0-9 - _ / = .)`);
    }
    spans.push({ field: segment, start: key.length, end: key.length + text.length });
    key += text;
  }
  if (target === "kv") {
    const empty = emptyToken(key);
    if (empty !== undefined) {
      // The placeholder whose text holds or borders the empty token.
      const culprit = spans.find((s) => s.start <= empty + 1 && s.end >= empty) ?? spans[0];
      throw keyError(method, template, culprit?.field.placeholder ?? "", `makes the key ${JSON.stringify(key)} have an empty token`);
    }
  }
  return key;
}

/** The position of a key's first empty token (a leading, trailing or doubled `.`), if any. */
function emptyToken(key: string): number | undefined {
  if (key === "" || key.startsWith(".")) {
    return 0;
  }
  const doubled = key.indexOf("..");
  if (doubled >= 0) {
    return doubled + 1;
  }
  return key.endsWith(".") ? key.length - 1 : undefined;
}

/** A placeholder's field path resolved against a message schema. */
type ResolvedPath = readonly DescField[];

const resolvedPaths = new WeakMap<KeyFieldSpec, { schema: DescMessage; path: ResolvedPath }>();

/** The fields of a placeholder's path, checked against the schema (once per placeholder and schema). */
function resolvePath(schema: DescMessage, field: KeyFieldSpec): ResolvedPath {
  const known = resolvedPaths.get(field);
  if (known !== undefined && known.schema === schema) {
    return known.path;
  }
  const path: DescField[] = [];
  let message: DescMessage | undefined = schema;
  for (const name of field.path) {
    const found: DescField | undefined = message?.fields.find((f) => f.name === name);
    if (found === undefined) {
      throw new NatsMicroError("INTERNAL", "", `key placeholder {${field.placeholder}}: ${message?.typeName ?? "?"} has no field ${name}`);
    }
    path.push(found);
    message = found.fieldKind === "message" ? found.message : undefined;
  }
  resolvedPaths.set(field, { schema, path });
  return path;
}

/** A field's value on a message (a oneof member through its oneof). */
function readField(message: Message, field: DescField): unknown {
  const record = message as unknown as Record<string, unknown>;
  if (field.oneof !== undefined) {
    const oneof = record[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
    return oneof?.case === field.localName ? oneof.value : undefined;
  }
  return record[field.localName];
}

/**
 * The values of a template's placeholders on a request (`undefined` for a
 * missing one), read through the request's schema: an unset message on
 * the path, or an unset field that tracks presence, is missing.
 */
export function keyValues(schema: DescMessage, template: KeyTemplateSpec, request: Message): KeyValue[] {
  return keyFields(template).map((field) => {
    const path = resolvePath(schema, field);
    let message: Message = request;
    for (const [i, step] of path.entries()) {
      const last = i === path.length - 1;
      if (!last || field.presence === true) {
        if (!isFieldSet(message, step)) {
          return undefined;
        }
      }
      const value = readField(message, step);
      if (last) {
        return value as KeyValue;
      }
      if (value === undefined || value === null) {
        return undefined;
      }
      message = value as Message;
    }
    return undefined;
  });
}

/**
 * The key (or object name) of a request, rendered exactly as a service
 * renders it before persisting the response (PROTOCOL §12.1). `request`
 * may be a message or its init shape.
 */
export function requestKey<Desc extends DescMessage>(
  schema: Desc,
  template: KeyTemplateSpec,
  request: MessageInitShape<Desc>,
  target: KeyTarget,
  method = "",
): string {
  const message = create(schema, request) as Message;
  return renderKey(template, keyValues(schema, template, message), target, method);
}

/** The key of a template from its parts by placeholder: every placeholder must be given. */
export function keyFromParts(template: KeyTemplateSpec, parts: KeyParts, target: KeyTarget, method = ""): string {
  return renderKey(
    template,
    keyFields(template).map((f) => parts[f.placeholder]),
    target,
    method,
  );
}

/**
 * The filter of the keys matching a template with some parts given: every
 * token holding a placeholder that is not given becomes `*` (a part left out
 * matches one token), and a matcher that checks the given parts and the
 * literal text of the tokens the wildcards cover.
 */
export function keyFilter(template: KeyTemplateSpec, parts: KeyParts, method = ""): { filter: string; matches: (key: string) => boolean } {
  const fields = keyFields(template);
  let pattern = "";
  const tokens: string[] = [""];
  const wild = [false];
  let index = 0;
  for (const segment of template.segments) {
    if (typeof segment === "string") {
      pattern += escapeRegExp(segment);
      const pieces = segment.split(".");
      tokens[tokens.length - 1] += pieces[0] ?? "";
      for (const piece of pieces.slice(1)) {
        tokens.push(piece);
        wild.push(false);
      }
      continue;
    }
    const field = fields[index] as KeyFieldSpec;
    index += 1;
    const given = parts[field.placeholder];
    if (given === undefined) {
      pattern += "[^.]+";
      wild[wild.length - 1] = true;
      continue;
    }
    const text = renderKey({ text: template.text, segments: [field] }, [given], "kv", method);
    pattern += escapeRegExp(text);
    const pieces = text.split(".");
    tokens[tokens.length - 1] += pieces[0] ?? "";
    for (const piece of pieces.slice(1)) {
      tokens.push(piece);
      wild.push(false);
    }
  }
  const filter = tokens.map((token, i) => (wild[i] === true ? "*" : token)).join(".");
  const regex = new RegExp(`^${pattern}$`);
  return { filter, matches: (key) => regex.test(key) };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
