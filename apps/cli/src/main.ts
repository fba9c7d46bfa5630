#!/usr/bin/env node
import { DitcacheError } from "@ditcache/core";
import { type Command, commandHelp, parseCommandArgs } from "./args.js";
import { benchCommand } from "./commands/bench.js";
import { calibrateCommand } from "./commands/calibrate.js";
import { demoCommand } from "./commands/demo.js";
import { evalCommand } from "./commands/eval.js";
import { infoCommand } from "./commands/info.js";
import { sampleCommand } from "./commands/sample.js";
import { serveCommand } from "./commands/serve.js";
import { interruptExitCode, interruptedBy } from "./interrupt.js";

const COMMANDS: readonly Command[] = [
  demoCommand,
  sampleCommand,
  calibrateCommand,
  evalCommand,
  infoCommand,
  serveCommand,
  benchCommand,
];

function usage(): string {
  return [
    "ditcache — feature caching for Diffusion Transformers",
    "",
    "Usage: ditcache <command> [options]",
    "",
    ...COMMANDS.map((command) => `  ${command.name.padEnd(10)} ${command.summary}`),
    "",
    'Run "ditcache <command> --help" for a command\'s options.',
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 1 : 0;
  }
  const command = COMMANDS.find((candidate) => candidate.name === name);
  if (command === undefined) {
    console.error(
      `ditcache: unknown command ${JSON.stringify(name)}; expected one of ${COMMANDS.map((c) => c.name).join(", ")}`,
    );
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(commandHelp(command));
    return 0;
  }
  const { values, positionals } = parseCommandArgs(command, rest);
  await command.run(values, positionals);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const signal = interruptedBy();
    if (signal !== undefined) {
      // The abort surfaces as whatever the command was doing; the user only needs to know why.
      console.error(`ditcache: interrupted by ${signal}; no partial output was written`);
      process.exit(interruptExitCode(signal));
    }
    // One line for the user; the stack only when asked for (DITCACHE_DEBUG=1).
    const message =
      DitcacheError.isInstance(error) || error instanceof Error
        ? error.message.split("\n")[0]
        : String(error);
    console.error(`ditcache: error: ${message}`);
    if (process.env.DITCACHE_DEBUG) console.error(error);
    process.exitCode = 2;
  },
);
