import { createOnnxBackend } from "../src/index.js";
import type { Unit } from "@ditcache/core";
const H = 1152, F = 4608, T = 512;
const r = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * s);
async function go(provider: "cpu" | "webgpu") {
  let b;
  try { b = await createOnnxBackend({ executionProvider: provider, intraOpNumThreads: 2 }); } catch (e) { console.log(provider, "->", (e as Error).message); return undefined; }
  const unit: Unit = { name: "mlp", params: { w1: b.tensor(r(F * H, 0.03), [F, H]), b1: b.tensor(r(F, 0.01), [F]), w2: b.tensor(r(H * F, 0.015), [H, F]), b2: b.tensor(r(H, 0.01), [H]) },
    build: (ops, [x], p) => [ops.attention(ops.reshape(ops.linear(ops.gelu(ops.linear(ops.layerNorm(x!, 1e-6), p.w1!, p.b1!), "tanh"), p.w2!, p.b2!), [2, 16, 256, 72]), ops.reshape(x!, [2, 16, 256, 72]), ops.reshape(x!, [2, 16, 256, 72]), 0.1)] };
  const e = b.compile(unit); const x = b.tensor(r(T * H, 1), [2, 256, H]);
  let out = await e.run([x]); const t0 = performance.now();
  for (let i = 0; i < 5; i++) out = await e.run([x]);
  console.log(provider, "ms/run", ((performance.now() - t0) / 5).toFixed(1));
  const d = await b.read(out[0]!); await b.close(); return d;
}
const c = await go("cpu"); const g = await go("webgpu");
if (c && g) { let m = 0; for (let i = 0; i < c.length; i++) m = Math.max(m, Math.abs(c[i]! - g[i]!)); console.log("max |cpu - webgpu|", m); }
