// Analytic size of an EOC priors file (float16), e.g. for DiT-XL/2 at 256x256, 20 steps.
// Usage: node packages/eoc/scripts/priors-size.mjs [depth=28] [tokens=256] [hidden=1152] [steps=20]
const [depth = 28, tokens = 256, hidden = 1152, steps = 20] = process.argv.slice(2).map(Number);
const sites = 2 * depth;
const bytesPerValue = 2; // F16
const levels = [
  ["FORA 25% (reuseEvery=4)", (s) => s % 4 === 1],
  ["FORA 50% (interval=2)", (s) => s % 2 !== 0],
  ["FORA 75% (interval=4)", (s) => s % 4 !== 0],
];
const mb = (bytes) => (bytes / 1e6).toFixed(2);
console.log(`depth ${depth}, tokens ${tokens}, hidden ${hidden}, steps ${steps}; MB = 10^6 bytes`);
console.log("| base policy | granularity | D + coefficients | + mean P | header |");
console.log("|---|---|---|---|---|");
for (const [name, reused] of levels) {
  let reusedSteps = 0;
  for (let s = 0; s < steps; s++) if (reused(s)) reusedSteps++;
  const cells = sites * reusedSteps;
  const header = 2000 + cells * 12; // JSON: fixed fields + one "[s,step,src]," per cell
  for (const [granularity, row] of [
    ["token-channel", tokens * hidden],
    ["channel", hidden],
  ]) {
    const difference = cells * row * bytesPerValue + cells * 5 * bytesPerValue;
    const mean = sites * steps * row * bytesPerValue;
    console.log(
      `| ${name} | ${granularity} | ${mb(difference)} | ${mb(difference + mean)} | ${(header / 1e3).toFixed(1)} kB |`,
    );
  }
}
