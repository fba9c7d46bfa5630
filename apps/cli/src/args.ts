import { parseArgs } from "node:util";
import { DitcacheError } from "@ditcache/core";

/** Option declarations for node's parseArgs, plus a help text per option. */
export interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly help: string;
  readonly default?: string | boolean;
  readonly short?: string;
}

/** A subcommand: its options and what it does. */
export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
  run(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<void>;
}

/** Parses argv for one command; unknown options are one-line errors naming the option. */
export function parseCommandArgs(
  command: Command,
  argv: string[],
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  const options = Object.fromEntries(
    Object.entries(command.options).map(([name, spec]) => [
      name,
      {
        type: spec.type,
        ...(spec.short ? { short: spec.short } : {}),
        ...(spec.default !== undefined ? { default: spec.default } : {}),
      },
    ]),
  );
  // "--steps -3" would read as an unknown short option; join negative numbers to their option so the
  // value check can say what is wrong with it.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    const name = arg.startsWith("--") ? arg.slice(2) : "";
    if (command.options[name]?.type === "string" && next !== undefined && /^-\d/.test(next)) {
      args.push(`${arg}=${next}`);
      i++;
    } else {
      args.push(arg);
    }
  }
  try {
    const { values, positionals } = parseArgs({
      args,
      options: options as never,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Record<string, string | boolean | undefined>, positionals };
  } catch (error) {
    const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `${command.name}: ${message} (run "ditcache ${command.name} --help" for the options)`,
    );
  }
}

const INTEGER = /^\s*[+-]?\d+\s*$/;

/** Reads an integer option within bounds. */
export function intOption(values: Record<string, unknown>, name: string, min: number, max: number): number {
  const raw = values[name];
  // Plain decimal digits only: Number("") is 0 and Number("0x10") is 16, neither meant here.
  const value = typeof raw === "string" && INTEGER.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `--${name}: expected an integer in [${min}, ${max}], got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

/** Reads a number option within bounds. */
export function numberOption(
  values: Record<string, unknown>,
  name: string,
  min: number,
  max: number,
): number {
  const raw = values[name];
  const value = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : Number.NaN;
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `--${name}: expected a number in [${min}, ${max}], got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

/** Reads a comma-separated integer list, e.g. "0,1,2" or a range "0-9". */
export function intListOption(
  values: Record<string, unknown>,
  name: string,
  min: number,
  max: number,
): number[] {
  const raw = values[name];
  if (typeof raw !== "string" || raw.trim() === "") {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `--${name}: expected comma-separated integers, got ${JSON.stringify(raw)}`,
    );
  }
  const out: number[] = [];
  for (const part of raw.split(",")) {
    const range = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(part);
    const items = range
      ? span(Number(range[1]), Number(range[2]))
      : [INTEGER.test(part) ? Number(part) : Number.NaN];
    for (const item of items) {
      if (!Number.isInteger(item) || item < min || item > max) {
        throw new DitcacheError(
          "INVALID_ARGUMENT",
          `--${name}: expected integers in [${min}, ${max}], got ${JSON.stringify(part.trim())}`,
        );
      }
      out.push(item);
    }
  }
  if (out.length > 1024) throw new DitcacheError("INVALID_ARGUMENT", `--${name}: at most 1024 values`);
  return out;
}

function span(from: number, to: number): number[] {
  if (to < from || to - from > 1024) return [Number.NaN];
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** Help text of one command. */
export function commandHelp(command: Command): string {
  const lines = [`ditcache ${command.name} — ${command.summary}`, "", "Options:"];
  for (const [name, spec] of Object.entries(command.options)) {
    const flag = spec.type === "boolean" ? `--${name}` : `--${name} <value>`;
    const def = spec.default !== undefined && spec.type !== "boolean" ? ` (default ${spec.default})` : "";
    lines.push(`  ${flag.padEnd(26)} ${spec.help}${def}`);
  }
  return lines.join("\n");
}
