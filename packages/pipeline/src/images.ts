import { invalidArgument, type PngImage } from "@ditcache/core";

/** Options of {@link imageGrid}. */
export interface GridOptions {
  /** Images per row. @defaultValue ceil(sqrt(N)) */
  columns?: number;
  /** Value range mapped to 0..255. @defaultValue [-1, 1] */
  range?: readonly [number, number];
  /** Pixels between images. @defaultValue 2 */
  gap?: number;
  /** Integer upscaling factor (nearest), so small digits are visible. @defaultValue 1 */
  scale?: number;
}

/**
 * Lays images (N, C, H, W) out as one grid picture (gray for C = 1, RGB for C = 3), row-major:
 * image i goes to row floor(i / columns).
 */
export function imageGrid(
  images: Float32Array,
  shape: readonly number[],
  options: GridOptions = {},
): PngImage {
  const [n, c, h, w] = shape as [number, number, number, number];
  if (shape.length !== 4 || (c !== 1 && c !== 3) || images.length !== n * c * h * w) {
    invalidArgument("shape", shape, "[N, 1 or 3, H, W] matching the image data");
  }
  const columns = options.columns ?? Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / columns);
  const [low, high] = options.range ?? [-1, 1];
  const gap = options.gap ?? 2;
  const scale = options.scale ?? 1;
  const cellW = w * scale;
  const cellH = h * scale;
  const width = columns * cellW + (columns + 1) * gap;
  const height = rows * cellH + (rows + 1) * gap;
  const data = new Uint8Array(width * height * c).fill(255);
  for (let i = 0; i < n; i++) {
    const x0 = gap + (i % columns) * (cellW + gap);
    const y0 = gap + Math.floor(i / columns) * (cellH + gap);
    for (let y = 0; y < cellH; y++) {
      for (let x = 0; x < cellW; x++) {
        for (let k = 0; k < c; k++) {
          const value = images[((i * c + k) * h + Math.floor(y / scale)) * w + Math.floor(x / scale)]!;
          const byte = Math.round(((value - low) / (high - low)) * 255);
          data[((y0 + y) * width + x0 + x) * c + k] = Math.min(255, Math.max(0, byte));
        }
      }
    }
  }
  return { width, height, channels: c as 1 | 3, data };
}

/** Places pictures of equal height side by side with a white gap. */
export function sideBySide(pictures: readonly PngImage[], gap = 8): PngImage {
  const first = pictures[0];
  if (!first || pictures.some((p) => p.height !== first.height || p.channels !== first.channels)) {
    invalidArgument("pictures", pictures.length, "one or more pictures of equal height and channel count");
  }
  const { height, channels } = first;
  const width = pictures.reduce((sum, p) => sum + p.width, 0) + gap * (pictures.length - 1);
  const data = new Uint8Array(width * height * channels).fill(255);
  let offset = 0;
  for (const picture of pictures) {
    for (let y = 0; y < height; y++) {
      const row = picture.data.subarray(y * picture.width * channels, (y + 1) * picture.width * channels);
      data.set(row, (y * width + offset) * channels);
    }
    offset += picture.width + gap;
  }
  return { width, height, channels, data };
}
