import assert from "node:assert/strict";
import { sampleToy, TOY_DATASETS } from "../../lib/data/toy2d.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose, meanStd } from "../helpers.ts";

const xs = (p: Float32Array) => p.filter((_, i) => i % 2 === 0);
const ys = (p: Float32Array) => p.filter((_, i) => i % 2 === 1);

Deno.test("toys: same seed gives the same points, another seed different ones", () => {
  for (const name of TOY_DATASETS) {
    const a = sampleToy(name, 500, new Rng(7));
    const b = sampleToy(name, 500, new Rng(7));
    const c = sampleToy(name, 500, new Rng(8));
    assert.equal(a.length, 1000);
    assert.deepEqual(a, b, name);
    assert.notDeepEqual(a, c, name);
    assert.ok(a.every(Number.isFinite), name);
  }
});

Deno.test("toys: roughly unit scale, centred, within [-4.5, 4.5]²", () => {
  for (const name of TOY_DATASETS) {
    const p = sampleToy(name, 20000, new Rng(1));
    for (const v of [xs(p), ys(p)]) {
      const { mean, std } = meanStd(v);
      assert.ok(Math.abs(mean) < 0.6, `${name}: mean ${mean}`);
      assert.ok(std > 0.5 && std < 2.5, `${name}: std ${std}`);
      assert.ok(v.every((x) => Math.abs(x) < 4.5), name);
    }
  }
});

Deno.test("8gaussians: every point near one of the 8 centres, modes balanced, spread 0.354", () => {
  const n = 16000;
  const p = sampleToy("8gaussians", n, new Rng(3));
  const r = 4 / 1.414;
  const counts = new Array(8).fill(0);
  const dx: number[] = [];
  for (let i = 0; i < n; i++) {
    const [x, y] = [p[2 * i], p[2 * i + 1]];
    let best = 0;
    let bestD = Infinity;
    for (let k = 0; k < 8; k++) {
      const d = Math.hypot(x - r * Math.cos(k * Math.PI / 4), y - r * Math.sin(k * Math.PI / 4));
      if (d < bestD) [best, bestD] = [k, d];
    }
    assert.ok(bestD < 2, `point ${i} is ${bestD} from the nearest centre`);
    counts[best]++;
    dx.push(x - r * Math.cos(best * Math.PI / 4));
  }
  for (const c of counts) assert.ok(Math.abs(c - n / 8) < 0.1 * n / 8, `mode count ${c}`);
  assertClose(meanStd(dx).std, 0.5 / 1.414, 0.02, 0, "per-mode std");
  const radius = meanStd(Array.from({ length: n }, (_, i) => Math.hypot(p[2 * i], p[2 * i + 1])));
  assertClose(radius.mean, r, 0.05, 0, "mean radius");
});

Deno.test("25gaussians: points on the 5×5 grid of spacing 2/2.828", () => {
  const p = sampleToy("25gaussians", 10000, new Rng(4));
  const step = 2 / 2.828;
  const cells = new Set<string>();
  for (let i = 0; i < 10000; i++) {
    const gx = Math.round(p[2 * i] / step);
    const gy = Math.round(p[2 * i + 1] / step);
    assert.ok(Math.abs(gx) <= 2 && Math.abs(gy) <= 2);
    assert.ok(Math.hypot(p[2 * i] - gx * step, p[2 * i + 1] - gy * step) < 0.15);
    cells.add(`${gx},${gy}`);
  }
  assert.equal(cells.size, 25);
});

Deno.test("checkerboard: only the squares with an even sum of ⌊x/2⌋ + ⌊y/2⌋, all 8 used", () => {
  const p = sampleToy("checkerboard", 8000, new Rng(5));
  const cells = new Map<string, number>();
  for (let i = 0; i < 8000; i++) {
    const cx = Math.floor(p[2 * i] / 2);
    const cy = Math.floor(p[2 * i + 1] / 2);
    assert.ok(cx >= -2 && cx <= 1 && cy >= -2 && cy <= 1, `${p[2 * i]}, ${p[2 * i + 1]}`);
    assert.equal(((cx + cy) % 2 + 2) % 2, 0, `square ${cx},${cy}`);
    cells.set(`${cx},${cy}`, (cells.get(`${cx},${cy}`) ?? 0) + 1);
  }
  assert.equal(cells.size, 8);
  for (const c of cells.values()) assert.ok(Math.abs(c - 1000) < 150, `square count ${c}`);
});

Deno.test("swissroll radii and moons' two halves follow their definitions", () => {
  const s = sampleToy("swissroll", 5000, new Rng(6));
  const radii = Array.from({ length: 5000 }, (_, i) => Math.hypot(s[2 * i], s[2 * i + 1]));
  assert.ok(Math.min(...radii) > 0.94 - 0.8 && Math.max(...radii) < 2.83 + 0.8);
  assertClose(meanStd(radii).mean, (3 * Math.PI) / 5, 0.05, 0, "mean radius 3π/5");
  const m = sampleToy("moons", 5000, new Rng(6));
  // Outer moon: centre (-1, -0.2), radius 2; inner: centre (1, 0.8), radius 2.
  let outer = 0;
  for (let i = 0; i < 5000; i++) {
    const dOuter = Math.abs(Math.hypot(m[2 * i] + 1, m[2 * i + 1] + 0.2) - 2);
    const dInner = Math.abs(Math.hypot(m[2 * i] - 1, m[2 * i + 1] - 0.8) - 2);
    assert.ok(Math.min(dOuter, dInner) < 1, `moons point ${i}`);
    if (dOuter < dInner) outer++;
  }
  assert.ok(Math.abs(outer - 2500) < 250, `outer moon ${outer}`);
});

Deno.test("toys: unknown names list the valid ones and suggest the nearest", () => {
  assert.throws(() => sampleToy("8gaussian", 10, new Rng(0)), (e: Error) => {
    assert.match(e.message, /did you mean "8gaussians"/);
    for (const n of TOY_DATASETS) assert.ok(e.message.includes(n));
    return true;
  });
  assert.throws(() => sampleToy("moons", -1, new Rng(0)), /n must be a count/);
  assert.equal(sampleToy("moons", 0, new Rng(0)).length, 0);
});
