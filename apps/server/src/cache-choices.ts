import {
  createCorrector,
  createPolicy,
  listCorrectors,
  listPolicies,
  type ParamSchema,
  type ParamSpec,
  parseCorrector,
  parsePolicy,
} from "@ditcache/cache";
import { DitcacheError } from "@ditcache/core";

/** Policies or correctors. */
export type SpecKind = "policy" | "corrector";

/**
 * Parameter values the server fills in itself, per kind and registered name, e.g. the priors
 * file of a corrector: clients can neither see nor set them.
 */
export type ServerParams = Readonly<
  Partial<Record<SpecKind, Readonly<Record<string, Readonly<Record<string, string>>>>>>
>;

/** One policy or corrector a client may choose, with the parameters it may set. */
export interface SpecChoice {
  /** Registered name, the part of a spec before ':'. */
  readonly name: string;
  /** Parameters the client may give, as the registry validates them. */
  readonly params: Readonly<Record<string, ParamSpec>>;
  /** Example specs, when the registration has them. */
  readonly examples: readonly string[];
}

/** What the registry offers clients right now. */
export interface CacheChoices {
  /** Usable cache policies. */
  readonly policies: readonly SpecChoice[];
  /** Usable correctors. */
  readonly correctors: readonly SpecChoice[];
}

/** Free-form string parameters are file paths or similar: only the server may set them. */
function isServerOnly(spec: ParamSpec): boolean {
  return spec.type === "string" && spec.choices === undefined;
}

function clientParams(schema: ParamSchema): Record<string, ParamSpec> {
  return Object.fromEntries(Object.entries(schema).filter(([, spec]) => !isServerOnly(spec)));
}

function buildable(kind: SpecKind, name: string, params: Readonly<Record<string, string>>): boolean {
  try {
    const suffix = formatParams(params);
    if (kind === "policy") {
      if (suffix === "") createPolicy(name);
      else parsePolicy(`${name}:${suffix}`);
    } else if (suffix === "") createCorrector(name);
    else parseCorrector(`${name}:${suffix}`);
    return true;
  } catch {
    return false;
  }
}

function formatParams(params: Readonly<Record<string, string>>): string {
  return Object.entries(params)
    .map(([key, value]) => `${key}=${value}`)
    .join(",");
}

/**
 * Lists the registered policies and correctors a client can use: those that build with no
 * client parameters beyond the server's own (so "schedule" and "learned", which need a file,
 * are left out unless the server supplies one). Read at call time, so a corrector registered
 * later (EOC) appears.
 */
export function cacheChoices(serverParams: ServerParams = {}): CacheChoices {
  const choose = (
    kind: SpecKind,
    entries: readonly { name: string; params: ParamSchema; examples?: readonly string[] }[],
  ): SpecChoice[] =>
    entries
      .filter((entry) => buildable(kind, entry.name, serverParams[kind]?.[entry.name] ?? {}))
      .map((entry) => ({
        name: entry.name,
        params: clientParams(entry.params),
        examples: entry.examples ?? [],
      }));
  return { policies: choose("policy", listPolicies()), correctors: choose("corrector", listCorrectors()) };
}

/**
 * Checks a client's spec against the choices and builds it once (so every parameter error is
 * reported now, not in the worker); returns the spec to run, server parameters appended.
 *
 * @throws DitcacheError INVALID_ARGUMENT naming the field and listing what is valid.
 */
export function resolveSpec(
  kind: SpecKind,
  spec: string,
  choices: CacheChoices,
  serverParams: ServerParams = {},
): string {
  const field = kind === "policy" ? "policy" : "corrector";
  const offered = kind === "policy" ? choices.policies : choices.correctors;
  const colon = spec.indexOf(":");
  const name = (colon < 0 ? spec : spec.slice(0, colon)).trim();
  const choice = offered.find((entry) => entry.name === name);
  if (choice === undefined) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `${field}: unknown ${kind} ${JSON.stringify(name)}; expected one of ${offered.map((entry) => entry.name).join(", ")}`,
    );
  }
  const rest = colon < 0 ? "" : spec.slice(colon + 1);
  for (const part of rest.split(",")) {
    const key = part.split("=", 1)[0]!.trim();
    if (key !== "" && !(key in choice.params)) {
      const valid = Object.keys(choice.params);
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `${field}: ${name} has no parameter ${JSON.stringify(key)}; expected ${valid.length > 0 ? `one of ${valid.join(", ")}` : "no parameters"}`,
      );
    }
  }
  const extra = formatParams(serverParams[kind]?.[name] ?? {});
  const full = extra === "" ? spec : rest.trim() === "" ? `${name}:${extra}` : `${spec},${extra}`;
  try {
    if (kind === "policy") parsePolicy(full);
    else parseCorrector(full);
  } catch (error) {
    if (DitcacheError.isInstance(error)) {
      throw new DitcacheError("INVALID_ARGUMENT", `${field}: ${error.message}`, { cause: error });
    }
    throw error;
  }
  return full;
}

/**
 * Removes the server's own parameters from a spec before a client sees it (a corrector's
 * normalised spec repeats its priors path, which clients have no business knowing).
 */
export function redactSpec(kind: SpecKind, spec: string, serverParams: ServerParams = {}): string {
  const colon = spec.indexOf(":");
  if (colon < 0) return spec;
  const name = spec.slice(0, colon);
  const hidden = Object.keys(serverParams[kind]?.[name] ?? {});
  if (hidden.length === 0) return spec;
  const kept = spec
    .slice(colon + 1)
    .split(",")
    .filter((part) => !hidden.includes(part.split("=", 1)[0]!.trim()));
  return kept.length > 0 ? `${name}:${kept.join(",")}` : name;
}
