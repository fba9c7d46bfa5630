import type { PngImage } from "@ditcache/core";

/** One coloured series of a scatter plot. */
export interface PlotSeries {
  readonly name: string;
  readonly color: readonly [number, number, number];
  readonly points: readonly { readonly x: number; readonly y: number }[];
}

/** A scatter plot with lines through each series' points (sorted by x). */
export interface ScatterPlot {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly PlotSeries[];
}

// 3x5 bitmap font: five rows of three bits each (4 = left column), upper-case only.
const GLYPHS: Readonly<Record<string, readonly number[]>> = {
  "0": [7, 5, 5, 5, 7],
  "1": [2, 6, 2, 2, 7],
  "2": [7, 1, 7, 4, 7],
  "3": [7, 1, 3, 1, 7],
  "4": [5, 5, 7, 1, 1],
  "5": [7, 4, 7, 1, 7],
  "6": [7, 4, 7, 5, 7],
  "7": [7, 1, 1, 2, 2],
  "8": [7, 5, 7, 5, 7],
  "9": [7, 5, 7, 1, 7],
  A: [2, 5, 7, 5, 5],
  B: [6, 5, 6, 5, 6],
  C: [3, 4, 4, 4, 3],
  D: [6, 5, 5, 5, 6],
  E: [7, 4, 6, 4, 7],
  F: [7, 4, 6, 4, 4],
  G: [3, 4, 5, 5, 3],
  H: [5, 5, 7, 5, 5],
  I: [7, 2, 2, 2, 7],
  J: [1, 1, 1, 5, 2],
  K: [5, 5, 6, 5, 5],
  L: [4, 4, 4, 4, 7],
  M: [5, 7, 7, 5, 5],
  N: [6, 5, 5, 5, 5],
  O: [2, 5, 5, 5, 2],
  P: [6, 5, 6, 4, 4],
  Q: [2, 5, 5, 6, 3],
  R: [6, 5, 6, 5, 5],
  S: [3, 4, 2, 1, 6],
  T: [7, 2, 2, 2, 2],
  U: [5, 5, 5, 5, 7],
  V: [5, 5, 5, 5, 2],
  W: [5, 5, 7, 7, 5],
  X: [5, 5, 2, 5, 5],
  Y: [5, 5, 2, 2, 2],
  Z: [7, 1, 2, 4, 7],
  ".": [0, 0, 0, 0, 2],
  "-": [0, 0, 7, 0, 0],
  "+": [0, 2, 7, 2, 0],
  "%": [5, 1, 2, 4, 5],
  "(": [1, 2, 2, 2, 1],
  ")": [4, 2, 2, 2, 4],
  ":": [0, 2, 0, 2, 0],
  "/": [1, 1, 2, 4, 4],
  " ": [0, 0, 0, 0, 0],
};

const WIDTH = 720;
const HEIGHT = 480;
const LEFT = 70;
const RIGHT = 200;
const TOP = 40;
const BOTTOM = 60;
const FONT = 2; // font pixel size

/** Draws the plot into an RGB image (white background, axes with ticks, legend on the right). */
export function renderScatterPlot(plot: ScatterPlot): PngImage {
  const data = new Uint8Array(WIDTH * HEIGHT * 3).fill(255);
  const set = (x: number, y: number, color: readonly number[]) => {
    const px = Math.round(x);
    const py = Math.round(y);
    if (px < 0 || py < 0 || px >= WIDTH || py >= HEIGHT) return;
    data.set(color, (py * WIDTH + px) * 3);
  };
  const text = (value: string, x: number, y: number, color: readonly number[] = [0, 0, 0]) => {
    [...value.toUpperCase()].forEach((char, i) => {
      const glyph = GLYPHS[char] ?? GLYPHS[" "]!;
      glyph.forEach((bits, row) => {
        for (let col = 0; col < 3; col++) {
          if (!(bits & (4 >> col))) continue;
          for (let dy = 0; dy < FONT; dy++)
            for (let dx = 0; dx < FONT; dx++) set(x + (i * 4 + col) * FONT + dx, y + row * FONT + dy, color);
        }
      });
    });
  };
  const textWidth = (value: string) => value.length * 4 * FONT;
  const line = (x0: number, y0: number, x1: number, y1: number, color: readonly number[]) => {
    const n = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    for (let i = 0; i <= n; i++) set(x0 + ((x1 - x0) * i) / n, y0 + ((y1 - y0) * i) / n, color);
  };

  const points = plot.series
    .flatMap((s) => s.points)
    .filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const xTicks = ticks(points.map((p) => p.x));
  const yTicks = ticks(points.map((p) => p.y));
  const [x0, x1] = [xTicks[0]!, xTicks[xTicks.length - 1]!];
  const [y0, y1] = [yTicks[0]!, yTicks[yTicks.length - 1]!];
  const px = (x: number) => LEFT + ((x - x0) / (x1 - x0)) * (WIDTH - LEFT - RIGHT);
  const py = (y: number) => HEIGHT - BOTTOM - ((y - y0) / (y1 - y0)) * (HEIGHT - TOP - BOTTOM);

  const grey = [220, 220, 220];
  for (const t of xTicks) {
    line(px(t), TOP, px(t), HEIGHT - BOTTOM, grey);
    const label = tickLabel(t, xTicks);
    text(label, px(t) - textWidth(label) / 2, HEIGHT - BOTTOM + 8);
  }
  for (const t of yTicks) {
    line(LEFT, py(t), WIDTH - RIGHT, py(t), grey);
    const label = tickLabel(t, yTicks);
    text(label, LEFT - 6 - textWidth(label), py(t) - FONT * 2.5);
  }
  line(LEFT, TOP, LEFT, HEIGHT - BOTTOM, [0, 0, 0]);
  line(LEFT, HEIGHT - BOTTOM, WIDTH - RIGHT, HEIGHT - BOTTOM, [0, 0, 0]);
  text(plot.title, (WIDTH - textWidth(plot.title)) / 2, 12);
  text(plot.xLabel, LEFT + (WIDTH - LEFT - RIGHT - textWidth(plot.xLabel)) / 2, HEIGHT - BOTTOM + 30);
  text(plot.yLabel, 8, TOP - 20);

  plot.series.forEach((series, index) => {
    const sorted = series.points
      .filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y))
      .sort((a, b) => a.x - b.x);
    for (let i = 1; i < sorted.length; i++)
      line(px(sorted[i - 1]!.x), py(sorted[i - 1]!.y), px(sorted[i]!.x), py(sorted[i]!.y), series.color);
    for (const p of sorted)
      for (let dy = -3; dy <= 3; dy++)
        for (let dx = -3; dx <= 3; dx++) set(px(p.x) + dx, py(p.y) + dy, series.color);
    const ly = TOP + 10 + index * 22;
    for (let dy = -4; dy <= 4; dy++)
      for (let dx = -4; dx <= 4; dx++) set(WIDTH - RIGHT + 20 + dx, ly + 5 + dy, series.color);
    text(series.name, WIDTH - RIGHT + 32, ly);
  });
  return { width: WIDTH, height: HEIGHT, channels: 3, data };
}

/** Round tick values covering the data (at least two). */
export function ticks(values: readonly number[]): number[] {
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (!Number.isFinite(low) || !Number.isFinite(high)) [low, high] = [0, 1];
  if (high - low < 1e-9 * Math.max(1, Math.abs(high)))
    [low, high] = [low - 0.5 * Math.max(1e-3, Math.abs(low)), high + 0.5 * Math.max(1e-3, Math.abs(high))];
  const raw = (high - low) / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw)!;
  const first = Math.floor(low / step);
  const last = Math.max(first + 1, Math.ceil(high / step - 1e-9));
  // Multiples of the step, rounded so that 3 x 0.1 prints as 0.3.
  return Array.from({ length: last - first + 1 }, (_, i) => Number(((first + i) * step).toPrecision(12)));
}

function tickLabel(value: number, all: readonly number[]): string {
  const step = all.length > 1 ? Math.abs(all[1]! - all[0]!) : 1;
  const digits = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
  return value.toFixed(digits);
}
