import type { OP_NAMES, Ops } from "../ops.js";
import { type RefTensor, reference as r } from "./reference.js";

/** How the values of a random conformance input are drawn. */
export type InputKind = "normal" | "positive" | "wide";

/** One random input of a conformance case. */
export interface InputSpec {
  /** Shape of the input. */
  readonly shape: readonly number[];
  /** normal: N(0, 1); positive: uniform in [0.5, 2.5); wide: N(0, 3) shifted by 2. @defaultValue "normal" */
  readonly kind?: InputKind;
}

/** One conformance case: a unit over random inputs and its float64 reference. */
export interface OpCase {
  /** The op under test (the case may use other ops too). */
  readonly op: (typeof OP_NAMES)[number];
  /** What the case covers. */
  readonly label: string;
  /** Random inputs. */
  readonly inputs: readonly InputSpec[];
  /** The unit's body. */
  build<T>(ops: Ops<T>, inputs: readonly T[]): T[];
  /** The expected outputs. */
  reference(inputs: readonly RefTensor[]): RefTensor[];
}

const n = (...shape: number[]): InputSpec => ({ shape });
const positive = (...shape: number[]): InputSpec => ({ shape, kind: "positive" });
const wide = (...shape: number[]): InputSpec => ({ shape, kind: "wide" });

type Binary = "add" | "sub" | "mul" | "div";
const binaryFormulas: Record<Binary, (x: number, y: number) => number> = {
  add: (x, y) => x + y,
  sub: (x, y) => x - y,
  mul: (x, y) => x * y,
  div: (x, y) => x / y,
};

function binaryCases(op: Binary): OpCase[] {
  const f = binaryFormulas[op];
  const second = (...shape: number[]) => (op === "div" ? positive(...shape) : n(...shape));
  const pairs: [string, InputSpec, InputSpec][] = [
    ["same shape", n(3, 5), second(3, 5)],
    ["broadcast trailing vector", n(2, 3, 4), second(4)],
    ["broadcast both sides", n(2, 1, 4), second(3, 1)],
    ["broadcast leading vector", second(5), n(2, 3, 5)],
    ["rank 0 scalar tensor", n(4, 3), second()],
  ];
  const cases: OpCase[] = pairs.map(([label, a, b]) => ({
    op,
    label,
    inputs: op === "div" && label === "broadcast leading vector" ? [positive(5), positive(2, 3, 5)] : [a, b],
    build: (ops, [x, y]) => [ops[op](x!, y!)],
    reference: ([x, y]) => [r.binary(x!, y!, f)],
  }));
  cases.push({
    op,
    label: "with a scalar constant",
    inputs: [n(2, 7)],
    build: (ops, [x]) => [ops[op](x!, ops.constant(1.5))],
    reference: ([x]) => [r.unary(x!, (v) => f(v, 1.5))],
  });
  return cases;
}

function unaryCase(
  op: "exp" | "sqrt" | "sin" | "cos" | "relu" | "silu",
  f: (v: number) => number,
  input: InputSpec,
): OpCase {
  return {
    op,
    label: `shape [${input.shape.join(", ")}]`,
    inputs: [input],
    build: (ops, [x]) => [ops[op](x!)],
    reference: ([x]) => [r.unary(x!, f)],
  };
}

function poolCases(op: "maxPool2d" | "avgPool2d"): OpCase[] {
  const kind = op === "maxPool2d" ? "max" : "avg";
  const settings: [number[], number, number | undefined, number | undefined][] = [
    [[2, 3, 8, 8], 2, undefined, undefined],
    [[1, 2, 7, 5], 3, 2, 1],
    [[2, 1, 6, 9], 3, 1, 1],
    [[1, 2, 5, 5], 2, 1, 0],
  ];
  return settings.map(([shape, kernel, stride, padding]) => ({
    op,
    label: `x [${shape.join(", ")}] kernel ${kernel} stride ${stride ?? "default"} padding ${padding ?? "default"}`,
    inputs: [n(...shape)],
    build: (ops, [x]) => [
      ops[op](x!, {
        kernel,
        ...(stride === undefined ? {} : { stride }),
        ...(padding === undefined ? {} : { padding }),
      }),
    ],
    reference: ([x]) => [r.pool(x!, kind, kernel, stride ?? kernel, padding ?? 0)],
  }));
}

function reduceCases(op: "sum" | "mean"): OpCase[] {
  const settings: [number[], number[], boolean][] = [
    [[3, 4, 5], [1], false],
    [[3, 4, 5], [0, 2], true],
    [[2, 3, 7], [-1], false],
    [[2, 3, 4], [0, 1, 2], false],
    [[5, 6], [-2], true],
  ];
  return settings.map(([shape, axes, keepDims]) => ({
    op,
    label: `x [${shape.join(", ")}] axes [${axes.join(", ")}] keepDims ${keepDims}`,
    inputs: [n(...shape)],
    build: (ops, [x]) => [ops[op](x!, axes, keepDims)],
    reference: ([x]) => [r.reduce(x!, axes, keepDims, op === "mean")],
  }));
}

/** Every conformance case, grouped by op; each op of {@link OP_NAMES} has at least one. */
export const OP_CASES: readonly OpCase[] = [
  {
    op: "shape",
    label: "static shape of an input and of an op result",
    inputs: [n(2, 3, 5)],
    build: (ops, [x]) => {
      const y = ops.sum(x!, [1], true);
      return [ops.constant(Float32Array.from([...ops.shape(x!), ...ops.shape(y)]), [6])];
    },
    reference: () => [{ shape: [6], data: Float64Array.from([2, 3, 5, 2, 1, 5]) }],
  },
  {
    op: "constant",
    label: "scalar, filled shape and array constants",
    inputs: [n(2, 3)],
    build: (ops, [x]) => [
      ops.add(x!, ops.constant(0.25)),
      ops.mul(x!, ops.constant(-2, [2, 3])),
      ops.add(x!, ops.constant(Float32Array.from([1, 2, 3]), [3])),
      ops.add(ops.constant(Float32Array.from([0.5, -1.5, 4])), x!),
    ],
    reference: ([x]) => [
      r.unary(x!, (v) => v + 0.25),
      r.unary(x!, (v) => v * -2),
      r.binary(x!, { shape: [3], data: Float64Array.from([1, 2, 3]) }, (a, b) => a + b),
      r.binary(x!, { shape: [3], data: Float64Array.from([0.5, -1.5, 4]) }, (a, b) => a + b),
    ],
  },
  ...binaryCases("add"),
  ...binaryCases("sub"),
  ...binaryCases("mul"),
  ...binaryCases("div"),
  unaryCase("exp", Math.exp, n(3, 7)),
  unaryCase("exp", Math.exp, n(2, 2, 5)),
  unaryCase("sqrt", Math.sqrt, positive(4, 9)),
  unaryCase("sin", Math.sin, wide(5, 6)),
  unaryCase("cos", Math.cos, wide(5, 6)),
  unaryCase("relu", (v) => Math.max(0, v), n(4, 9)),
  unaryCase("silu", (v) => v / (1 + Math.exp(-v)), wide(3, 11)),
  {
    op: "gelu",
    label: "tanh approximation",
    inputs: [wide(4, 13)],
    build: (ops, [x]) => [ops.gelu(x!, "tanh")],
    reference: ([x]) => [r.gelu(x!, "tanh")],
  },
  {
    op: "gelu",
    label: "exact erf form",
    inputs: [wide(4, 13)],
    build: (ops, [x]) => [ops.gelu(x!, "none")],
    reference: ([x]) => [r.gelu(x!, "none")],
  },
  ...(
    [
      ["2-D", [5, 7], [7, 3]],
      ["odd sizes", [1, 17], [17, 9]],
      ["batched", [2, 3, 4, 5], [2, 3, 5, 6]],
      ["broadcast batch", [2, 1, 4, 5], [3, 5, 6]],
      ["broadcast 2-D right operand", [3, 6, 8], [8, 5]],
      ["larger, odd sizes", [2, 33, 130], [130, 67]],
    ] as const
  ).map(
    ([label, a, b]): OpCase => ({
      op: "matmul",
      label,
      inputs: [n(...a), n(...b)],
      build: (ops, [x, y]) => [ops.matmul(x!, y!)],
      reference: ([x, y]) => [r.matmul(x!, y!)],
    }),
  ),
  {
    op: "linear",
    label: "rank-3 input with bias",
    inputs: [n(2, 5, 7), n(6, 7), n(6)],
    build: (ops, [x, w, b]) => [ops.linear(x!, w!, b)],
    reference: ([x, w, b]) => [r.linear(x!, w!, b)],
  },
  {
    op: "linear",
    label: "without bias, odd sizes",
    inputs: [n(3, 33), n(17, 33)],
    build: (ops, [x, w]) => [ops.linear(x!, w!)],
    reference: ([x, w]) => [r.linear(x!, w!)],
  },
  {
    op: "linear",
    label: "larger, odd sizes",
    inputs: [n(41, 96), n(75, 96), n(75)],
    build: (ops, [x, w, b]) => [ops.linear(x!, w!, b)],
    reference: ([x, w, b]) => [r.linear(x!, w!, b)],
  },
  {
    op: "linear",
    label: "one row",
    inputs: [n(1, 8), n(5, 8), n(5)],
    build: (ops, [x, w, b]) => [ops.linear(x!, w!, b)],
    reference: ([x, w, b]) => [r.linear(x!, w!, b)],
  },
  ...(
    [
      [1, 1, 7, 4],
      [2, 3, 5, 8],
      [2, 4, 9, 16],
      [1, 2, 33, 24],
    ] as const
  ).map(
    (shape): OpCase => ({
      op: "attention",
      label: `(B, H, L, Dh) = (${shape.join(", ")})`,
      inputs: [wide(...shape), n(...shape), n(...shape)],
      build: (ops, [q, k, v]) => [ops.attention(q!, k!, v!, 1 / Math.sqrt(shape[3]))],
      reference: ([q, k, v]) => [r.attention(q!, k!, v!, 1 / Math.sqrt(shape[3]))],
    }),
  ),
  {
    op: "layerNorm",
    label: "with weight and bias, shifted input",
    inputs: [wide(2, 3, 8), n(8), n(8)],
    build: (ops, [x, w, b]) => [ops.layerNorm(x!, 1e-5, w, b)],
    reference: ([x, w, b]) => [r.layerNorm(x!, 1e-5, w, b)],
  },
  {
    op: "layerNorm",
    label: "without affine, eps 1e-6",
    inputs: [n(5, 31)],
    build: (ops, [x]) => [ops.layerNorm(x!, 1e-6)],
    reference: ([x]) => [r.layerNorm(x!, 1e-6)],
  },
  {
    op: "groupNorm",
    label: "(N, C, H, W) 3 groups with weight and bias",
    inputs: [wide(2, 6, 4, 5), n(6), n(6)],
    build: (ops, [x, w, b]) => [ops.groupNorm(x!, 3, 1e-5, w, b)],
    reference: ([x, w, b]) => [r.groupNorm(x!, 3, 1e-5, w, b)],
  },
  {
    op: "groupNorm",
    label: "one group, no affine",
    inputs: [n(1, 4, 3, 3)],
    build: (ops, [x]) => [ops.groupNorm(x!, 1, 1e-6)],
    reference: ([x]) => [r.groupNorm(x!, 1, 1e-6)],
  },
  {
    op: "groupNorm",
    label: "(N, C, L) one channel per group",
    inputs: [n(2, 6, 7), n(6), n(6)],
    build: (ops, [x, w, b]) => [ops.groupNorm(x!, 6, 1e-5, w, b)],
    reference: ([x, w, b]) => [r.groupNorm(x!, 6, 1e-5, w, b)],
  },
  ...(
    [
      [[3, 7], -1],
      [[2, 5, 3], 1],
      [[4, 3], 0],
      [[2, 3, 4], -3],
    ] as const
  ).map(
    ([shape, axis]): OpCase => ({
      op: "softmax",
      label: `x [${shape.join(", ")}] axis ${axis}`,
      inputs: [wide(...shape)],
      build: (ops, [x]) => [ops.softmax(x!, axis)],
      reference: ([x]) => [r.softmax(x!, axis)],
    }),
  ),
  ...(
    [
      ["3x3 stride 1 padding 1 with bias", [2, 3, 7, 6], [4, 3, 3, 3], true, 1, 1],
      ["3x3 stride 2 no padding, no bias", [1, 2, 9, 8], [3, 2, 3, 3], false, 2, 0],
      ["1x1", [2, 5, 4, 4], [3, 5, 1, 1], true, 1, 0],
      ["patchify 2x2 stride 2", [2, 4, 8, 8], [6, 4, 2, 2], true, 2, 0],
      ["non-square kernel, stride 2 padding 2", [1, 3, 6, 7], [2, 3, 3, 2], true, 2, 2],
    ] as const
  ).map(
    ([label, xShape, wShape, withBias, stride, padding]): OpCase => ({
      op: "conv2d",
      label,
      inputs: withBias ? [n(...xShape), n(...wShape), n(wShape[0])] : [n(...xShape), n(...wShape)],
      build: (ops, [x, w, b]) => [ops.conv2d(x!, w!, b, { stride, padding })],
      reference: ([x, w, b]) => [r.conv2d(x!, w!, b, stride, padding)],
    }),
  ),
  {
    op: "conv2d",
    label: "default options",
    inputs: [n(1, 2, 5, 5), n(3, 2, 3, 3)],
    build: (ops, [x, w]) => [ops.conv2d(x!, w!, undefined, {})],
    reference: ([x, w]) => [r.conv2d(x!, w!, undefined, 1, 0)],
  },
  ...poolCases("maxPool2d"),
  ...poolCases("avgPool2d"),
  ...([2, 3] as const).map(
    (factor): OpCase => ({
      op: "upsampleNearest2d",
      label: `factor ${factor}`,
      inputs: [n(2, 3, 3, 5)],
      build: (ops, [x]) => [ops.upsampleNearest2d(x!, factor)],
      reference: ([x]) => [r.upsampleNearest2d(x!, factor)],
    }),
  ),
  ...(
    [
      [
        [2, 3, 4],
        [6, 4],
      ],
      [
        [2, 3, 4],
        [-1, 3, 2],
      ],
      [[2, 3, 4], [24]],
      [[6], [1, 6, 1]],
    ] as const
  ).map(
    ([shape, target]): OpCase => ({
      op: "reshape",
      label: `[${shape.join(", ")}] -> [${target.join(", ")}]`,
      inputs: [n(...shape)],
      // add after reshape so a backend's view of the input is consumed by another op too
      build: (ops, [x]) => [ops.reshape(x!, target), ops.add(ops.reshape(x!, target), ops.constant(1))],
      reference: ([x]) => [r.reshape(x!, target), r.unary(r.reshape(x!, target), (v) => v + 1)],
    }),
  ),
  ...(
    [
      [
        [2, 3, 4],
        [2, 0, 1],
      ],
      [
        [2, 3, 4, 5],
        [0, 2, 1, 3],
      ],
      [
        [3, 5],
        [1, 0],
      ],
      [
        [2, 3, 4],
        [0, 1, 2],
      ],
    ] as const
  ).map(
    ([shape, perm]): OpCase => ({
      op: "transpose",
      label: `[${shape.join(", ")}] perm [${perm.join(", ")}]`,
      inputs: [n(...shape)],
      build: (ops, [x]) => [ops.transpose(x!, perm)],
      reference: ([x]) => [r.transpose(x!, perm)],
    }),
  ),
  {
    op: "concat",
    label: "axis 0",
    inputs: [n(2, 3), n(4, 3)],
    build: (ops, [a, b]) => [ops.concat([a!, b!], 0)],
    reference: ([a, b]) => [r.concat([a!, b!], 0)],
  },
  {
    op: "concat",
    label: "three inputs on axis 1",
    inputs: [n(2, 1, 4), n(2, 3, 4), n(2, 2, 4)],
    build: (ops, [a, b, c]) => [ops.concat([a!, b!, c!], 1)],
    reference: ([a, b, c]) => [r.concat([a!, b!, c!], 1)],
  },
  {
    op: "concat",
    label: "negative axis",
    inputs: [n(2, 3, 2), n(2, 3, 5)],
    build: (ops, [a, b]) => [ops.concat([a!, b!], -1)],
    reference: ([a, b]) => [r.concat([a!, b!], -1)],
  },
  ...(
    [
      [[2, 5, 3], 1, 1, 3],
      [[4, 6], -1, 2, 6],
      [[3, 4], 0, 0, 3],
      [[2, 3, 4], 2, 0, 4],
    ] as const
  ).map(
    ([shape, axis, start, end]): OpCase => ({
      op: "slice",
      label: `[${shape.join(", ")}] axis ${axis} [${start}:${end}]`,
      inputs: [n(...shape)],
      build: (ops, [x]) => [ops.slice(x!, axis, start, end)],
      reference: ([x]) => [r.slice(x!, axis, start, end)],
    }),
  ),
  ...reduceCases("sum"),
  ...reduceCases("mean"),
];
