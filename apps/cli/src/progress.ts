/** A one-line progress bar on stderr: redrawn in place on a terminal, a line every 10% otherwise. */
export class ProgressBar {
  readonly #label: string;
  readonly #total: number;
  readonly #tty = Boolean(process.stderr.isTTY);
  readonly #started = performance.now();
  #lastDecile = -1;

  constructor(label: string, total: number) {
    this.#label = label;
    this.#total = Math.max(1, total);
  }

  /** Shows `done` of `total` finished. */
  update(done: number, note = ""): void {
    const fraction = Math.min(1, done / this.#total);
    const seconds = (performance.now() - this.#started) / 1000;
    const eta = fraction > 0 ? (seconds / fraction) * (1 - fraction) : 0;
    const text = `${this.#label} ${bar(fraction)} ${done}/${this.#total} ${seconds.toFixed(1)}s${
      done < this.#total && fraction > 0 ? ` eta ${eta.toFixed(0)}s` : ""
    }${note ? ` ${note}` : ""}`;
    if (this.#tty) {
      process.stderr.write(`\r\x1b[2K${text}${done >= this.#total ? "\n" : ""}`);
    } else {
      const decile = Math.floor(fraction * 10);
      if (decile !== this.#lastDecile) {
        this.#lastDecile = decile;
        process.stderr.write(`${text}\n`);
      }
    }
  }
}

function bar(fraction: number, width = 24): string {
  const filled = Math.round(fraction * width);
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
}
