import { DitcacheError } from "@ditcache/core";

/** One parameter of a policy or corrector, as the registry validates it. */
export type ParamSpec =
  | {
      readonly type: "integer" | "number";
      readonly min?: number;
      readonly max?: number;
      readonly description: string;
    }
  | { readonly type: "boolean"; readonly description: string }
  | { readonly type: "string"; readonly choices?: readonly string[]; readonly description: string }
  | { readonly type: "integer[]" | "number[]"; readonly description: string };

/** Parameters a policy or corrector accepts, by name. */
export type ParamSchema = Readonly<Record<string, ParamSpec>>;

/** Parameter values after parsing: numbers, booleans, strings or number lists. */
export type ParamValues = Readonly<Record<string, number | boolean | string | readonly number[] | undefined>>;

/** Prints what a parameter expects, e.g. "integer >= 1" or "one of 'a', 'b'". */
export function describeParam(spec: ParamSpec): string {
  switch (spec.type) {
    case "integer":
    case "number": {
      const bounds: string[] = [];
      if (spec.min !== undefined) bounds.push(`>= ${spec.min}`);
      if (spec.max !== undefined) bounds.push(`<= ${spec.max}`);
      return bounds.length > 0
        ? `${spec.type === "integer" ? "an integer" : "a number"} ${bounds.join(" and ")}`
        : spec.type === "integer"
          ? "an integer"
          : "a number";
    }
    case "boolean":
      return "true or false";
    case "string":
      return spec.choices ? `one of ${spec.choices.map((c) => `"${c}"`).join(", ")}` : "a string";
    case "integer[]":
      return "a list of integers separated by ';'";
    case "number[]":
      return "a list of numbers separated by ';'";
  }
}

/** Lists a schema's parameters with their expected values, for error messages. */
export function describeSchema(schema: ParamSchema): string {
  const names = Object.keys(schema);
  if (names.length === 0) return "no parameters";
  return names.map((name) => `${name} (${describeParam(schema[name]!)})`).join(", ");
}

function fail(owner: string, name: string, spec: ParamSpec, got: unknown): never {
  const shown =
    typeof got === "string" ? JSON.stringify(got) : Array.isArray(got) ? `[${got.join(", ")}]` : String(got);
  throw new DitcacheError(
    "INVALID_ARGUMENT",
    `${owner}: parameter ${name}: expected ${describeParam(spec)}, got ${shown}`,
  );
}

function checkNumber(
  owner: string,
  name: string,
  spec: ParamSpec & { type: "integer" | "number" },
  value: unknown,
): number {
  if (typeof value !== "number" || Number.isNaN(value)) fail(owner, name, spec, value);
  if (spec.type === "integer" && !Number.isInteger(value) && value !== Number.POSITIVE_INFINITY)
    fail(owner, name, spec, value);
  if ((spec.min !== undefined && value < spec.min) || (spec.max !== undefined && value > spec.max))
    fail(owner, name, spec, value);
  return value;
}

function parseNumber(text: string): number {
  const trimmed = text.trim();
  if (trimmed === "inf" || trimmed === "Infinity") return Number.POSITIVE_INFINITY;
  return trimmed === "" ? Number.NaN : Number(trimmed);
}

/**
 * Validates parameter values (already typed, e.g. from code) against a schema: unknown names and
 * values of the wrong type or out of range throw a DitcacheError that lists what is accepted.
 */
export function validateParams(
  owner: string,
  schema: ParamSchema,
  values: Readonly<Record<string, unknown>>,
): ParamValues {
  const out: Record<string, number | boolean | string | readonly number[]> = {};
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined) continue;
    const spec = schema[name];
    if (spec === undefined) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `${owner}: unknown parameter "${name}": expected one of ${describeSchema(schema)}`,
      );
    }
    switch (spec.type) {
      case "integer":
      case "number":
        out[name] = checkNumber(owner, name, spec, value);
        break;
      case "boolean":
        if (typeof value !== "boolean") fail(owner, name, spec, value);
        out[name] = value;
        break;
      case "string":
        if (typeof value !== "string" || (spec.choices && !spec.choices.includes(value)))
          fail(owner, name, spec, value);
        out[name] = value;
        break;
      case "integer[]":
      case "number[]":
        if (!Array.isArray(value)) fail(owner, name, spec, value);
        for (const item of value) {
          if (
            typeof item !== "number" ||
            !Number.isFinite(item) ||
            (spec.type === "integer[]" && !Number.isInteger(item))
          ) {
            fail(owner, name, spec, value);
          }
        }
        out[name] = [...(value as number[])];
        break;
    }
  }
  return out;
}

/** Parses `key=value` texts (from a spec string) into typed values, then validates them. */
export function parseParams(
  owner: string,
  schema: ParamSchema,
  texts: Readonly<Record<string, string>>,
): ParamValues {
  const typed: Record<string, unknown> = {};
  for (const [name, text] of Object.entries(texts)) {
    const spec = schema[name];
    if (spec === undefined) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `${owner}: unknown parameter "${name}": expected one of ${describeSchema(schema)}`,
      );
    }
    switch (spec.type) {
      case "integer":
      case "number": {
        const value = parseNumber(text);
        if (Number.isNaN(value)) fail(owner, name, spec, text);
        typed[name] = value;
        break;
      }
      case "boolean":
        if (text !== "true" && text !== "false") fail(owner, name, spec, text);
        typed[name] = text === "true";
        break;
      case "string":
        typed[name] = text;
        break;
      case "integer[]":
      case "number[]": {
        const items = text.trim() === "" ? [] : text.split(";").map(parseNumber);
        if (items.some((item) => !Number.isFinite(item))) fail(owner, name, spec, text);
        typed[name] = items;
        break;
      }
    }
  }
  return validateParams(owner, schema, typed);
}

/**
 * Splits a spec string `name:key=value,key=value` into its name and raw parameter texts.
 * Lists inside a value are separated by `;`.
 */
export function splitSpec(kind: string, spec: string): { name: string; params: Record<string, string> } {
  if (typeof spec !== "string" || spec.trim() === "") {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `${kind}: expected a spec like "name:key=value,key=value", got ${JSON.stringify(spec)}`,
    );
  }
  const colon = spec.indexOf(":");
  const name = (colon < 0 ? spec : spec.slice(0, colon)).trim();
  const rest = colon < 0 ? "" : spec.slice(colon + 1);
  const params: Record<string, string> = {};
  for (const part of rest.split(",")) {
    if (part.trim() === "") continue;
    const eq = part.indexOf("=");
    if (eq <= 0) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `${kind} "${spec}": expected key=value, got ${JSON.stringify(part)}`,
      );
    }
    const key = part.slice(0, eq).trim();
    if (key in params)
      throw new DitcacheError("INVALID_ARGUMENT", `${kind} "${spec}": parameter ${key} is given twice`);
    params[key] = part.slice(eq + 1).trim();
  }
  return { name, params };
}

/** Formats a name and parameters back into a spec string (parameters in schema order). */
export function formatSpec(name: string, schema: ParamSchema, values: ParamValues): string {
  const parts: string[] = [];
  for (const key of Object.keys(schema)) {
    const value = values[key];
    if (value === undefined) continue;
    parts.push(`${key}=${Array.isArray(value) ? value.join(";") : String(value)}`);
  }
  return parts.length > 0 ? `${name}:${parts.join(",")}` : name;
}
