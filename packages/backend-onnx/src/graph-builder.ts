import { DitcacheError } from "@ditcache/core";
import type { OnnxAttribute, OnnxInitializer, OnnxModel, OnnxNode, OnnxValueInfo } from "./onnx-proto.js";

/** Standard ONNX opset the traced graphs import: 20 has Gelu(approximate) and axes-as-input reductions. */
export const ONNX_OPSET = 20;
/** ORT contrib domain (FastGelu, FusedMatMul, ...). */
export const MICROSOFT_DOMAIN = "com.microsoft";

/**
 * A symbolic value of a graph being traced: a name in the graph and a static shape. Constants
 * (params, `ops.constant`) also carry their data so lowering can specialise on them (e.g.
 * pre-transposed weights), and are written as initializers only when a node uses them.
 */
export class Sym {
  /** @internal */
  constructor(
    /** Value name inside the graph. */
    readonly name: string,
    /** Static shape. */
    readonly shape: readonly number[],
    /** The graph that owns the value. */
    readonly graph: GraphBuilder,
    /** Host data when the value is a constant. */
    readonly data?: Float32Array,
  ) {}
}

/**
 * Collects nodes, initializers, inputs and outputs while a unit is traced, then produces an
 * {@link OnnxModel}. Names are generated, so a unit's own names never clash.
 */
export class GraphBuilder {
  private readonly nodes: OnnxNode[] = [];
  private readonly initializers: OnnxInitializer[] = [];
  private readonly emitted = new Set<string>();
  private readonly inputs: OnnxValueInfo[] = [];
  private readonly int64Cache = new Map<string, string>();
  private readonly domains = new Set<string>();
  private counter = 0;

  constructor(readonly name: string) {}

  /** A new graph input. */
  input(shape: readonly number[]): Sym {
    const sym = new Sym(`input${this.inputs.length}`, [...shape], this);
    this.inputs.push({ name: sym.name, dims: sym.shape });
    return sym;
  }

  /** A float32 constant; written as an initializer the first time a node reads it. */
  constant(data: Float32Array, shape: readonly number[], hint = "const"): Sym {
    return new Sym(this.fresh(hint), [...shape], this, data);
  }

  /** The name of an int64 initializer with these values (shared between nodes). */
  int64s(values: readonly number[]): string {
    const key = values.join(",");
    let name = this.int64Cache.get(key);
    if (name === undefined) {
      name = this.fresh("i64");
      this.int64Cache.set(key, name);
      this.initializers.push({ name, dims: [values.length], data: BigInt64Array.from(values, BigInt) });
    }
    return name;
  }

  /**
   * Adds a node with one output of the given shape. Inputs are values of this graph, raw
   * names (int64 initializers) or "" for an omitted optional input.
   */
  node(
    opType: string,
    inputs: readonly (Sym | string)[],
    shape: readonly number[],
    attributes?: Readonly<Record<string, OnnxAttribute>>,
    domain?: string,
  ): Sym {
    const names = inputs.map((input) => (typeof input === "string" ? input : this.use(input)));
    const output = this.fresh(opType.toLowerCase());
    this.nodes.push({ opType, domain, inputs: names, outputs: [output], attributes });
    if (domain) this.domains.add(domain);
    return new Sym(output, [...shape], this);
  }

  /** Finishes the graph with these outputs. */
  build(outputs: readonly Sym[]): OnnxModel {
    const produced = new Set(this.nodes.flatMap((node) => node.outputs));
    const seen = new Set<string>();
    const outputInfos = outputs.map((output, index) => {
      let name = this.use(output);
      // A graph output must be produced by a node, and each output needs its own name.
      if (!produced.has(name) || seen.has(name)) {
        const copy = `output${index}`;
        this.nodes.push({ opType: "Identity", inputs: [name], outputs: [copy] });
        name = copy;
      }
      seen.add(name);
      return { name, dims: output.shape };
    });
    const opsets: Record<string, number> = { "": ONNX_OPSET };
    for (const domain of this.domains) opsets[domain] = 1;
    return {
      name: this.name,
      nodes: this.nodes,
      initializers: this.initializers,
      inputs: this.inputs,
      outputs: outputInfos,
      opsets,
    };
  }

  /** Checks a value belongs to this graph and emits it as an initializer if it is a constant. */
  use(sym: Sym): string {
    if (!(sym instanceof Sym) || sym.graph !== this) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `unit "${this.name}": an op got a value that is not from this unit's trace (expected a value built by the ops passed to build)`,
      );
    }
    if (sym.data !== undefined && !this.emitted.has(sym.name)) {
      this.emitted.add(sym.name);
      this.initializers.push({ name: sym.name, dims: sym.shape, data: sym.data });
    }
    return sym.name;
  }

  private fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }
}
