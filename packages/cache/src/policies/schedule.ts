import { readFileSync } from "node:fs";
import {
  contentDigest,
  DitcacheError,
  invalidArgument,
  type SiteId,
  type SiteKind,
  siteId,
} from "@ditcache/core";
import { type ParamSchema, validateParams } from "../params.js";
import type { BlockRange, CachePolicy } from "../policy.js";

/**
 * A static caching schedule: for every step and site, reuse or not. JSON in and out
 * ({@link scheduleToJson}, {@link parseSchedule}).
 */
export interface ScheduleTable {
  /** Format version. */
  readonly version: 1;
  /** Steps of the run it was made for. */
  readonly steps: number;
  /** Model depth; when omitted, 1 + the largest block a site key names. */
  readonly depth?: number;
  /** Site keys of the columns, e.g. "block3.attn", "block3", "blocks0-13". */
  readonly sites: readonly string[];
  /** `reuse[step][column]`: true where the site is reused. Step 0 reuses nothing. */
  readonly reuse: readonly (readonly boolean[])[];
}

/** Parameters of {@link schedulePolicy} through the registry. */
export const schedulePolicyParams: ParamSchema = {
  file: { type: "string", description: "path of a schedule JSON file" },
};

/** Options of {@link schedulePolicy}: a table, or a JSON file holding one. */
export interface SchedulePolicyOptions {
  /** The schedule. */
  table?: ScheduleTable;
  /** Path of a schedule JSON file (Node only). */
  file?: string;
}

/** The {@link SiteId} a site key names ("block3.attn", "block3", "blocks0-13"). */
export function parseSiteKey(key: string): SiteId {
  const match = /^block(\d+)\.(attn|mlp)$/.exec(key) ?? /^block(\d+)()$/.exec(key);
  if (match) return siteId(match[2] === "" ? "block" : (match[2] as SiteKind), Number(match[1]));
  const range = /^blocks(\d+)-(\d+)$/.exec(key);
  if (range && Number(range[2]) >= Number(range[1]))
    return siteId("blocks", Number(range[1]), Number(range[2]));
  return invalidArgument("site key", key, 'a key like "block3.attn", "block3.mlp", "block3" or "blocks0-13"');
}

/** Checks a parsed JSON value is a valid {@link ScheduleTable}. */
export function validateSchedule(value: unknown): ScheduleTable {
  const table = value as ScheduleTable;
  if (table === null || typeof table !== "object" || table.version !== 1) {
    invalidArgument("schedule", value, "a schedule object with version 1");
  }
  if (!Number.isInteger(table.steps) || table.steps < 1)
    invalidArgument("schedule.steps", table.steps, "an integer >= 1");
  if (!Array.isArray(table.sites)) invalidArgument("schedule.sites", table.sites, "a list of site keys");
  const ids = table.sites.map(parseSiteKey);
  if (new Set(table.sites).size !== table.sites.length)
    invalidArgument("schedule.sites", table.sites, "distinct site keys");
  const maxBlock = ids.reduce((largest, id) => Math.max(largest, id.end), -1);
  if (table.depth !== undefined && (!Number.isInteger(table.depth) || table.depth <= maxBlock)) {
    invalidArgument(
      "schedule.depth",
      table.depth,
      `an integer > ${maxBlock} (the largest block a site names)`,
    );
  }
  if (!Array.isArray(table.reuse) || table.reuse.length !== table.steps) {
    invalidArgument("schedule.reuse", table.reuse, `${table.steps} rows (one per step)`);
  }
  table.reuse.forEach((row, step) => {
    if (
      !Array.isArray(row) ||
      row.length !== table.sites.length ||
      row.some((cell) => typeof cell !== "boolean")
    ) {
      invalidArgument(`schedule.reuse[${step}]`, row, `${table.sites.length} booleans (one per site)`);
    }
  });
  if (table.reuse[0]!.some(Boolean))
    invalidArgument("schedule.reuse[0]", table.reuse[0], "no reuse at step 0 (nothing is cached yet)");
  return table;
}

/** Parses a schedule from JSON text. */
export function parseSchedule(json: string): ScheduleTable {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new DitcacheError(
      "BAD_FILE",
      `schedule: expected JSON, got a parse error: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return validateSchedule(value);
}

/** Serialises a schedule to JSON text. */
export function scheduleToJson(table: ScheduleTable): string {
  return JSON.stringify(validateSchedule(table));
}

/** Model depth a schedule implies. */
export function scheduleDepth(table: ScheduleTable): number {
  return (
    table.depth ?? 1 + table.sites.reduce((largest, key) => Math.max(largest, parseSiteKey(key).end), -1)
  );
}

/**
 * Caching level of a schedule: the fraction of (step x block) computations reused, attention and
 * MLP each counting half a block, a reused block or range counting all its blocks (each unit
 * once per step even when several reused sites cover it).
 */
export function scheduleCachingLevel(table: ScheduleTable, depth: number = scheduleDepth(table)): number {
  const ids = table.sites.map(parseSiteKey);
  let reused = 0;
  for (const row of table.reuse) {
    const units = new Set<string>();
    row.forEach((cell, column) => {
      if (!cell) return;
      const id = ids[column]!;
      if (id.kind === "attn" || id.kind === "mlp") units.add(`${id.block}.${id.kind}`);
      else
        for (let block = id.block; block <= id.end; block++) units.add(`${block}.attn`).add(`${block}.mlp`);
    });
    reused += units.size;
  }
  return reused / (2 * depth * table.steps);
}

/**
 * A digest of what a validated schedule decides (steps, depth, sites, cells), independent of the
 * file's key order and whitespace and of whether the depth is written out.
 */
function scheduleDigest(table: ScheduleTable): string {
  const { steps, sites, reuse } = table;
  const canonical = JSON.stringify({ version: 1, steps, depth: scheduleDepth(table), sites, reuse });
  return contentDigest(new TextEncoder().encode(canonical));
}

/** The policy for a validated table under a given name (shared by `schedule` and `learned`). */
export function tablePolicy(name: string, spec: string, table: ScheduleTable): CachePolicy {
  const ids = table.sites.map(parseSiteKey);
  const columns = new Map(table.sites.map((key, column) => [key, column]));
  const kinds = [...new Set(ids.map((id) => id.kind))];
  const ranges: BlockRange[] = ids
    .filter((id) => id.kind === "blocks")
    .map((id) => ({ start: id.block, end: id.end }));
  return {
    name,
    spec,
    // Same table, same decisions, whichever name or path brought it.
    identity: `table:${scheduleDigest(table)}`,
    dynamic: false,
    sites: kinds,
    ranges: () => ranges,
    decide(query) {
      if (query.step.count !== table.steps) {
        throw new DitcacheError(
          "INVALID_ARGUMENT",
          `${name}: the schedule was made for ${table.steps} steps, got a run of ${query.step.count}`,
        );
      }
      const column = columns.get(query.site.key);
      return column !== undefined && table.reuse[query.step.index]![column] ? "reuse" : "compute";
    },
    cachingLevel: (steps, depth) => (steps === table.steps ? scheduleCachingLevel(table, depth) : 0),
  };
}

/**
 * A static schedule table (steps x sites): the general form of every static policy, and the
 * output of calibration (`learnSchedule`, `convertL2CRouter`).
 */
export function schedulePolicy(options: SchedulePolicyOptions): CachePolicy {
  const { table, file } = options ?? {};
  validateParams("schedule", schedulePolicyParams, { file });
  if ((table === undefined) === (file === undefined)) {
    invalidArgument("schedule options", options, "exactly one of table or file");
  }
  if (file !== undefined) return tablePolicy("schedule", `schedule:file=${file}`, readScheduleFile(file));
  return tablePolicy("schedule", "schedule", validateSchedule(table));
}

/** Reads and validates a schedule JSON file. */
export function readScheduleFile(file: string): ScheduleTable {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new DitcacheError(
      "NOT_FOUND",
      `schedule file ${file}: cannot be read (${(error as Error).message})`,
      { cause: error },
    );
  }
  return parseSchedule(text);
}
