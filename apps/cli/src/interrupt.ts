/**
 * Ctrl-C and `kill` for commands that can stop cleanly. A command that calls
 * {@link interruptSignal} takes over SIGINT/SIGTERM: the first one aborts the signal, which the
 * command passes to the sampler or calibration so they stop between steps (outputs are written
 * atomically, so nothing half-written is left); `main` then exits 130 (SIGINT) or 143 (SIGTERM)
 * with one line. A second signal exits at once. Commands that never ask keep Node's default
 * (the process ends on the signal), which is right for `serve` and quick commands.
 */
let controller: AbortController | undefined;
let received: NodeJS.Signals | undefined;

/** Aborted by the first SIGINT or SIGTERM; the first call installs the handlers. */
export function interruptSignal(): AbortSignal {
  if (controller === undefined) {
    const created = new AbortController();
    controller = created;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      process.on(signal, () => {
        if (received !== undefined) {
          // Second signal: the user insists; leave now (an atomic write's temporary file may stay).
          process.exit(interruptExitCode(received));
        }
        received = signal;
        created.abort(new Error(`interrupted by ${signal}`));
      });
    }
  }
  return controller.signal;
}

/** The signal that interrupted the run, if any. */
export function interruptedBy(): NodeJS.Signals | undefined {
  return received;
}

/** Exit status for a run stopped by `signal`: 128 + its number, as shells report it. */
export function interruptExitCode(signal: NodeJS.Signals): number {
  return signal === "SIGTERM" ? 143 : 130;
}
