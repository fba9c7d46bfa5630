/**
 * The q-quantile (0..1) of a non-empty list, interpolating linearly between the two nearest
 * ranks (q = 0.5 of an even count is the mean of the two middle values).
 */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const position = q * (sorted.length - 1);
  const below = Math.floor(position);
  const above = Math.min(sorted.length - 1, below + 1);
  return sorted[below]! + (position - below) * (sorted[above]! - sorted[below]!);
}
