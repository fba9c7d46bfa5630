import { DitcacheError, invalidArgument } from "@ditcache/core";
import type { Corrector } from "./corrector.js";
import { type GocCorrectorOptions, gocCorrector, gocCorrectorParams } from "./correctors/goc.js";
import { reuseCorrector, reuseCorrectorParams } from "./correctors/reuse.js";
import { type TaylorCorrectorOptions, taylorCorrector, taylorCorrectorParams } from "./correctors/taylor.js";
import {
  describeSchema,
  type ParamSchema,
  type ParamValues,
  parseParams,
  splitSpec,
  validateParams,
} from "./params.js";
import { type DeltaDitPolicyOptions, deltaDitPolicy, deltaDitPolicyParams } from "./policies/delta-dit.js";
import { type FbcachePolicyOptions, fbcachePolicy, fbcachePolicyParams } from "./policies/fbcache.js";
import { type ForaPolicyOptions, foraPolicy, foraPolicyParams } from "./policies/fora.js";
import { learnedPolicy, learnedPolicyParams } from "./policies/learned.js";
import { nonePolicy, nonePolicyParams } from "./policies/none.js";
import { schedulePolicy, schedulePolicyParams } from "./policies/schedule.js";
import { type TeacachePolicyOptions, teacachePolicy, teacachePolicyParams } from "./policies/teacache.js";
import type { CachePolicy } from "./policy.js";

/** Builds a policy from validated parameters. */
export type PolicyFactory = (params: ParamValues) => CachePolicy;
/** Builds a corrector from validated parameters. */
export type CorrectorFactory = (params: ParamValues) => Corrector;

/** Extra facts a registration may carry, used by the shared policy suite. */
export interface PolicyRegistrationOptions {
  /** Specs the shared suite runs (each must reuse something on the synthetic model). */
  examples?: readonly string[];
  /** A spec that caches nothing (the suite checks it is bit-identical to uncached). */
  disabled?: string;
}

/** One registered policy. */
export interface PolicyRegistration extends PolicyRegistrationOptions {
  /** Name used in specs. */
  readonly name: string;
  /** Factory. */
  readonly factory: PolicyFactory;
  /** Accepted parameters. */
  readonly params: ParamSchema;
}

/** One registered corrector. */
export interface CorrectorRegistration {
  /** Name used in specs. */
  readonly name: string;
  /** Factory. */
  readonly factory: CorrectorFactory;
  /** Accepted parameters. */
  readonly params: ParamSchema;
}

const NAME = /^[a-z][a-z0-9-]*$/;

let policies: Map<string, PolicyRegistration> | undefined;
let correctors: Map<string, CorrectorRegistration> | undefined;

function policyTable(): Map<string, PolicyRegistration> {
  policies ??= new Map<string, PolicyRegistration>(
    (
      [
        { name: "none", factory: () => nonePolicy(), params: nonePolicyParams, disabled: "none" },
        {
          name: "schedule",
          factory: (p) => schedulePolicy({ file: p.file as string }),
          params: schedulePolicyParams,
        },
        {
          name: "fora",
          factory: (p) => foraPolicy(p as ForaPolicyOptions),
          params: foraPolicyParams,
          examples: ["fora:interval=2", "fora:interval=4", "fora:reuseEvery=4", "fora:interval=3"],
          disabled: "fora:interval=1",
        },
        {
          name: "delta-dit",
          factory: (p) => deltaDitPolicy(p as DeltaDitPolicyOptions),
          params: deltaDitPolicyParams,
          examples: ["delta-dit", "delta-dit:interval=3,blocks=1,boundary=0.3"],
          disabled: "delta-dit:interval=1",
        },
        {
          name: "learned",
          factory: (p) => learnedPolicy({ file: p.file as string }),
          params: learnedPolicyParams,
        },
        {
          name: "fbcache",
          factory: (p) => fbcachePolicy(p as FbcachePolicyOptions),
          params: fbcachePolicyParams,
          examples: ["fbcache:threshold=0.5", "fbcache:threshold=0.5,perHalf=true,maxConsecutiveReuse=2"],
          disabled: "fbcache:threshold=0",
        },
        {
          name: "teacache",
          factory: (p) => teacachePolicy(p as TeacachePolicyOptions),
          params: teacachePolicyParams,
          examples: [
            "teacache:threshold=0.5",
            "teacache:threshold=0.5,coefficients=2;0,perHalf=true,warmupSteps=2",
          ],
          disabled: "teacache:threshold=0",
        },
      ] satisfies PolicyRegistration[]
    ).map((entry) => [entry.name, entry]),
  );
  return policies;
}

function correctorTable(): Map<string, CorrectorRegistration> {
  correctors ??= new Map<string, CorrectorRegistration>(
    (
      [
        { name: "reuse", factory: () => reuseCorrector(), params: reuseCorrectorParams },
        {
          name: "taylor",
          factory: (p) => taylorCorrector(p as TaylorCorrectorOptions),
          params: taylorCorrectorParams,
        },
        { name: "goc", factory: (p) => gocCorrector(p as GocCorrectorOptions), params: gocCorrectorParams },
      ] satisfies CorrectorRegistration[]
    ).map((entry) => [entry.name, entry]),
  );
  return correctors;
}

function checkRegistration(
  kind: string,
  name: string,
  factory: unknown,
  params: unknown,
  taken: boolean,
): void {
  if (typeof name !== "string" || !NAME.test(name))
    invalidArgument(`${kind} name`, name, "lower-case letters, digits and '-', starting with a letter");
  if (typeof factory !== "function")
    invalidArgument(`${kind} factory`, factory, "a function (params) => object");
  if (params === null || typeof params !== "object")
    invalidArgument(`${kind} paramSchema`, params, "an object of parameter specs");
  if (taken)
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `${kind} name: "${name}" is already registered (choose another name)`,
    );
}

/**
 * Registers a cache policy under a name so `parsePolicy("name:key=value")` builds it; the
 * registry validates parameters against `paramSchema` before calling the factory.
 */
export function registerPolicy(
  name: string,
  factory: PolicyFactory,
  paramSchema: ParamSchema,
  options: PolicyRegistrationOptions = {},
): void {
  checkRegistration("policy", name, factory, paramSchema, policyTable().has(name));
  policyTable().set(name, { name, factory, params: paramSchema, ...options });
}

/** Registers a corrector under a name for `parseCorrector`. */
export function registerCorrector(name: string, factory: CorrectorFactory, paramSchema: ParamSchema): void {
  checkRegistration("corrector", name, factory, paramSchema, correctorTable().has(name));
  correctorTable().set(name, { name, factory, params: paramSchema });
}

/** Every registered policy, built-ins first. */
export function listPolicies(): PolicyRegistration[] {
  return [...policyTable().values()];
}

/** Every registered corrector, built-ins first. */
export function listCorrectors(): CorrectorRegistration[] {
  return [...correctorTable().values()];
}

function lookup<T extends { params: ParamSchema }>(kind: string, table: Map<string, T>, name: string): T {
  const entry = table.get(name);
  if (entry === undefined) {
    const valid = [...table.entries()]
      .map(([key, value]) => `${key} (${describeSchema(value.params)})`)
      .join("; ");
    throw new DitcacheError("INVALID_ARGUMENT", `unknown cache ${kind} "${name}": expected one of ${valid}`);
  }
  return entry;
}

/**
 * Builds a policy from a spec string `name[:key=value,...]`, e.g. "fora:interval=2" or
 * "teacache:threshold=0.1,coefficients=1;0,stepMask=-1" (lists separated by ';').
 * @throws DitcacheError INVALID_ARGUMENT naming the valid policies / parameters and their types.
 */
export function parsePolicy(spec: string): CachePolicy {
  const { name, params } = splitSpec("policy", spec);
  const entry = lookup("policy", policyTable(), name);
  return entry.factory(parseParams(name, entry.params, params));
}

/** Builds a registered policy from typed parameters (validated like {@link parsePolicy}). */
export function createPolicy(name: string, params: Readonly<Record<string, unknown>> = {}): CachePolicy {
  const entry = lookup("policy", policyTable(), name);
  return entry.factory(validateParams(name, entry.params, params));
}

/** Builds a corrector from a spec string, e.g. "taylor:order=1" or "goc:k=0.5". */
export function parseCorrector(spec: string): Corrector {
  const { name, params } = splitSpec("corrector", spec);
  const entry = lookup("corrector", correctorTable(), name);
  return entry.factory(parseParams(name, entry.params, params));
}

/** Builds a registered corrector from typed parameters. */
export function createCorrector(name: string, params: Readonly<Record<string, unknown>> = {}): Corrector {
  const entry = lookup("corrector", correctorTable(), name);
  return entry.factory(validateParams(name, entry.params, params));
}
