/**
 * How some ops are lowered to ONNX nodes. The defaults are the fastest measured on ORT's CPU
 * provider (see bench/mlp.ts); the alternatives exist so the benchmark can compare them.
 */
export interface OnnxLowering {
  /**
   * 'gemm': Gemm(transB=1) on the input flattened to 2-D; the weight is stored as it is.
   * 'matmul': MatMul against a weight transposed in JS at compile time, then Add.
   * ORT fuses either into a Gemm with a pre-packed weight; 'gemm' skips the JS transpose.
   * @defaultValue 'gemm'
   */
  linear?: "matmul" | "gemm";
  /**
   * 'onnx': the standard Gelu (opset 20). 'contrib': com.microsoft FastGelu / Gelu.
   * @defaultValue 'onnx'
   */
  gelu?: "onnx" | "contrib";
}

/** The defaults of {@link OnnxLowering}. */
export const DEFAULT_LOWERING: Required<OnnxLowering> = { linear: "gemm", gelu: "onnx" };
