import type { Backend, Executable, Ops, Tensor, Unit, WeightedTerm } from "@ditcache/core";
import type { CacheMath } from "./corrector.js";

/** Where one output row comes from: a part index and a row inside that part. */
export interface RowSource {
  readonly part: number;
  readonly row: number;
}

function abs<T>(ops: Ops<T>, x: T): T {
  // |x| = relu(x) + relu(-x): exact, and built from ops every backend has.
  return ops.add(ops.relu(x), ops.relu(ops.sub(ops.constant(0), x)));
}

function reduceAxes(rank: number): number[] {
  return Array.from({ length: rank - 1 }, (_, i) => i + 1);
}

/** Contiguous runs of row sources, so a row selection becomes few slices. */
function runsOf(sources: readonly RowSource[]): { part: number; start: number; end: number }[] {
  const runs: { part: number; start: number; end: number }[] = [];
  for (const source of sources) {
    const last = runs[runs.length - 1];
    if (last && last.part === source.part && last.end === source.row) last.end += 1;
    else runs.push({ part: source.part, start: source.row, end: source.row + 1 });
  }
  return runs;
}

/**
 * The engine's tensor arithmetic, as compiled units on one backend (one ONNX graph per unit and
 * shape on backend-onnx). Executables are looked up by unit name; the backend owns their cache.
 */
export class TensorMath implements CacheMath {
  private readonly executables = new Map<string, Executable>();

  constructor(readonly backend: Backend) {}

  private async run(unit: Unit, inputs: readonly Tensor[]): Promise<Tensor[]> {
    let executable = this.executables.get(unit.name);
    if (executable === undefined) {
      executable = this.backend.compile(unit);
      this.executables.set(unit.name, executable);
    }
    return executable.run(inputs);
  }

  private async one(unit: Unit, inputs: readonly Tensor[]): Promise<Tensor> {
    const [out] = await this.run(unit, inputs);
    return out!;
  }

  /** a + b. */
  add(a: Tensor, b: Tensor): Promise<Tensor> {
    return this.one({ name: "ditcache.cache.add", build: (ops, [x, y]) => [ops.add(x!, y!)] }, [a, b]);
  }

  /** a - b. */
  sub(a: Tensor, b: Tensor): Promise<Tensor> {
    return this.one({ name: "ditcache.cache.sub", build: (ops, [x, y]) => [ops.sub(x!, y!)] }, [a, b]);
  }

  /** A new tensor with x's values (the engine never hands out a tensor it keeps). */
  copy(x: Tensor): Promise<Tensor> {
    return this.one({ name: "ditcache.cache.copy", build: (ops, [v]) => [ops.mul(v!, ops.constant(1))] }, [
      x,
    ]);
  }

  /** Σ weight_i · tensor_i; the weights travel as scalar inputs so one graph serves all weights. */
  async combine(terms: readonly WeightedTerm[]): Promise<Tensor> {
    const count = terms.length;
    const weights = terms.map((term) => this.backend.tensor(Float32Array.of(term.weight), []));
    try {
      return await this.one(
        {
          name: `ditcache.cache.combine${count}`,
          build: (ops, inputs) => {
            let acc = ops.mul(inputs[0]!, inputs[count]!);
            for (let i = 1; i < count; i++) acc = ops.add(acc, ops.mul(inputs[i]!, inputs[count + i]!));
            return [acc];
          },
        },
        [...terms.map((term) => term.tensor), ...weights],
      );
    } finally {
      for (const weight of weights) this.backend.dispose(weight);
    }
  }

  /**
   * Builds a tensor whose row r is `parts[sources[r].part]` row `sources[r].row` (rows = axis 0):
   * gathering one CFG half, or merging halves back into a batch.
   */
  select(parts: readonly Tensor[], sources: readonly RowSource[]): Promise<Tensor> {
    const runs = runsOf(sources);
    const name = `ditcache.cache.select${parts.length}[${runs.map((run) => `${run.part}:${run.start}-${run.end}`).join(",")}]`;
    return this.one(
      {
        name,
        build: (ops, inputs) => {
          const pieces = runs.map((run) => ops.slice(inputs[run.part]!, 0, run.start, run.end));
          return [pieces.length === 1 ? pieces[0]! : ops.concat(pieces, 0)];
        },
      },
      parts,
    );
  }

  /**
   * Per-row Σ|a - b| and Σ|b| (sums over all axes but the first), read to the host: the
   * relative-L1 signals of dynamic policies, split by batch row so CFG halves never mix.
   */
  async rowAbsSums(a: Tensor, b: Tensor): Promise<{ difference: Float32Array; reference: Float32Array }> {
    const rank = a.shape.length;
    const [difference, reference] = await this.run(
      {
        name: "ditcache.cache.rowAbsSums",
        build: (ops, [x, y]) => {
          if (rank === 1) return [abs(ops, ops.sub(x!, y!)), abs(ops, y!)];
          const axes = reduceAxes(rank);
          return [ops.sum(abs(ops, ops.sub(x!, y!)), axes, false), ops.sum(abs(ops, y!), axes, false)];
        },
      },
      [a, b],
    );
    try {
      return {
        difference: await this.backend.read(difference!),
        reference: await this.backend.read(reference!),
      };
    } finally {
      this.backend.dispose(difference!);
      this.backend.dispose(reference!);
    }
  }
}
