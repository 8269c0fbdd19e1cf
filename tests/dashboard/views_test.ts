import assert from "node:assert/strict";
import { plain, width } from "../../lib/dashboard/charts.ts";
import { Controller } from "../../lib/dashboard/controller.ts";
import { type Snapshot, SweepReader } from "../../lib/dashboard/model.ts";
import {
  handleKey,
  initialUi,
  pinColour,
  renderFrame,
  type UiState,
  VIEWS,
} from "../../lib/dashboard/views.ts";
import { openStore } from "../../lib/store/store.ts";
import { buildFixture } from "./fixture.ts";

async function snapshot(
  status = "running",
): Promise<{ snap: Snapshot; reader: SweepReader; close: () => Promise<void> }> {
  const f = await buildFixture(undefined, { status });
  const store = await openStore(f.storePath, { readOnly: true });
  const reader = new SweepReader(store);
  return { snap: (await reader.refresh())!, reader, close: () => store.close() };
}

function press(ui: UiState, keys: string[], snap: Snapshot) {
  let action;
  for (const k of keys) ({ ui, action } = handleKey(ui, k, snap));
  return { ui, action };
}

Deno.test("keys: select, open, back, tab, sort, log, help, quit", async () => {
  const { snap, close } = await snapshot();
  try {
    let { ui } = press(initialUi(), ["j", "j", "down", "k"], snap);
    assert.equal(ui.selected, 2);
    ({ ui } = press(ui, ["up", "up", "up"], snap));
    assert.equal(ui.selected, 0);
    ({ ui } = press(ui, ["G"], snap));
    assert.equal(ui.selected, 23);
    ({ ui } = press(ui, ["g", "enter"], snap));
    assert.equal(ui.view, "detail");
    ({ ui } = press(ui, ["l"], snap));
    assert.equal(ui.log, false);
    ({ ui } = press(ui, ["escape"], snap));
    assert.equal(ui.view, "overview");
    const seen = [];
    for (const _ of VIEWS) {
      ({ ui } = press(ui, ["tab"], snap));
      seen.push(ui.view);
    }
    assert.deepEqual(seen, ["detail", "compare", "machine", "overview"]);
    ({ ui } = press(ui, ["s"], snap));
    assert.equal(ui.sort, "metric");
    assert.match(ui.message!, /sorted by mmd/);
    ({ ui } = press(ui, ["?"], snap));
    assert.ok(ui.help);
    ({ ui } = press(ui, ["j", "escape"], snap));
    assert.ok(!ui.help);
    // The selection follows its row (0, the worst mmd) into the sorted order.
    assert.equal(ui.selected, 9);
    assert.deepEqual(press(ui, ["q"], snap).action, { type: "quit" });
  } finally {
    await close();
  }
});

Deno.test("keys: c asks first; y cancels, any other key does not; r restarts a failed job", async () => {
  const { snap, close } = await snapshot();
  try {
    const down = (n: number) => Array(n).fill("j");
    let { ui, action } = press(initialUi(), [...down(12), "c"], snap);
    assert.equal(action, undefined);
    assert.match(
      ui.confirm!.text,
      /^cancel running training job .* \(used by 12 configurations\)\? y\/n$/,
    );
    ({ ui, action } = press(ui, ["n"], snap));
    assert.equal(action, undefined);
    assert.equal(ui.message, "not cancelled");
    ({ ui, action } = press(ui, ["c", "y"], snap));
    assert.deepEqual(action, { type: "cancel", jobId: snap.rows[12].train!.id });
    ({ ui, action } = press({ ...ui, selected: 1 }, ["r"], snap));
    assert.deepEqual(action, { type: "restart", jobId: snap.rows[1].eval!.id });
    ({ ui, action } = press({ ...ui, selected: 0 }, ["c"], snap));
    assert.equal(action, undefined);
    assert.match(ui.message!, /^c: evaluation job .* is done: nothing to cancel$/);
  } finally {
    await close();
  }
});

Deno.test("compare keys cycle the row and column parameters", async () => {
  const { snap, close } = await snapshot();
  try {
    let { ui } = press(initialUi(), ["tab", "tab", "x"], snap);
    assert.equal(ui.rowParam, "sampler");
    ({ ui } = press(ui, ["y"], snap));
    assert.equal(ui.colParam, "ema_eval");
  } finally {
    await close();
  }
});

Deno.test("/ filters the runs by parameter: typing, backspace, Enter, a bad term, Esc", async () => {
  const { snap, reader, close } = await snapshot();
  try {
    let { ui } = press(initialUi(), ["j", "/", ..."sampler=ddimm", "backspace"], snap);
    assert.equal(ui.editing, "sampler=ddim");
    assert.equal(ui.filter, undefined, "nothing applies before Enter");
    assert.equal(ui.view, "overview", "keys while typing are text, not commands");
    ({ ui } = press(ui, [..." schedule=linear", "enter"], snap));
    assert.equal(ui.filter, "sampler=ddim schedule=linear");
    assert.equal(ui.editing, undefined);
    assert.equal(ui.selected, 0);
    // By hand: the fixture's 24 runs are schedule × steps × sampler × EMA; linear and DDIM
    // leave 3 steps × 2 EMA settings.
    assert.match(ui.message!, /filter sampler=ddim schedule=linear: 6 of 24 runs/);
    const frame = renderFrame(snap, ui, { cols: 80, rows: 24, series: (id) => reader.series(id) });
    const text = frame.lines.map(plain);
    assert.match(text[2], /filter 6\/24: s/, "the count first: long filters are cut");
    // By hand: of linear DDIM, 100 steps with EMA 0.999 (0.012) is the best.
    assert.match(text[20], /best mmd 0\.012: #11 schedule=linear sample_steps=100 sampler=ddim/);
    ({ ui } = press(ui, ["/", ..." ema_eval=raw", "enter"], snap));
    const raw = renderFrame(snap, ui, { cols: 80, rows: 24, series: (id) => reader.series(id) })
      .lines.map(plain);
    // …and with raw weights only, 100 steps again: 0.01 + 0.2/100 + 0.003 = 0.015.
    assert.match(
      raw[20],
      /best mmd 0\.015: #10 schedule=linear sample_steps=100 sampler=ddim ema_eval=raw/,
    );
    ({ ui } = press(ui, ["/", ...Array(13).fill("backspace"), "enter"], snap));
    assert.equal(ui.filter, "sampler=ddim schedule=linear");
    const shown = text.slice(4, 10);
    assert.ok(shown.every((l) => / linear .* ddim /.test(l)), shown.join("\n"));
    assert.doesNotMatch(text[10], /linear|cosine/);
    // Two values of one key: either matches.
    ({ ui } = press(ui, ["/", ..." sampler=ddpm", "enter"], snap));
    assert.match(ui.message!, /: 12 of 24 runs/);

    ({ ui } = press(ui, [
      "/",
      ...[..."sampler=ddim sampler=ddpm schedule=linear"].map(() => "backspace"),
      ..."sampler=ddpm schedule=linear ema_eval=raw",
      "enter",
      "tab",
      "tab",
    ], snap));
    assert.equal(ui.view, "compare");
    // The grid of the runs kept; by hand, DDPM with raw weights on linear: 0.01 + 0.2/steps + 0.007.
    const grid = renderFrame(snap, ui, { cols: 100, rows: 30, series: (id) => reader.series(id) })
      .lines.map(plain).join("\n");
    assert.match(grid, /linear +0\.037 +0\.021 +★0\.019/, grid);
    assert.doesNotMatch(grid, /cosine/, "the filter leaves out the cosine runs");
    ({ ui } = press(ui, ["/", ..." x", "enter"], snap));
    assert.match(ui.message!, /^"x" is not key=value/);
    assert.ok(ui.editing !== undefined, "a bad filter stays open to be fixed");
    ({ ui } = press(ui, ["escape"], snap));
    assert.equal(ui.editing, undefined);
    assert.equal(ui.filter, "sampler=ddpm schedule=linear ema_eval=raw", "Esc keeps the filter");
    ({ ui } = press(ui, ["/", ..."x", "backspace", ..." shedule=cosine", "enter"], snap));
    assert.match(ui.message!, /^shedule is not a parameter \(did you mean "schedule"\?\)/);
    ({ ui } = press(ui, ["escape", "/"], snap));
    ({ ui } = press(ui, [...Array(60).fill("backspace"), "enter"], snap));
    assert.equal(ui.filter, undefined, "an empty filter shows every run");
    assert.match(ui.message!, /no filter: all 24 runs/);
  } finally {
    await close();
  }
});

Deno.test("p pins training runs; the run detail overlays their losses in fixed colours", async () => {
  const { snap, reader, close } = await snapshot();
  try {
    const linear = snap.rows[0].train!.id;
    const cosine = snap.rows[12].train!.id;
    let { ui } = press(initialUi(), ["p"], snap);
    assert.deepEqual(ui.pinned, [linear]);
    assert.match(ui.message!, /^pinned training run schedule=linear \(1 pinned; /);
    ({ ui } = press(ui, [..."jjjjjjjjjjjj", "p"], snap));
    assert.deepEqual(ui.pinned, [linear, cosine]);
    const overview = renderFrame(snap, ui, {
      cols: 80,
      rows: 24,
      series: (id) => reader.series(id),
    })
      .lines;
    // Pinned rows not selected show a dot in the pinned run's colour.
    const dot = overview.find((l) => / 0 linear/.test(plain(l)))!;
    assert.deepEqual(dot[0], { text: "●", fg: pinColour(linear) });
    ({ ui } = press(ui, ["enter"], snap));
    const frame = renderFrame(snap, ui, { cols: 100, rows: 30, series: (id) => reader.series(id) })
      .lines;
    const text = frame.map(plain).join("\n");
    assert.match(text, /training loss, pinned runs \(log\)/);
    // By hand: the fixture logs steps 10–400 for linear (last loss 0.5225 at 400) and 10–200
    // for cosine (its last, at 200: the bands 0.9, 0.5, 0.3, 0.2 times 1.2, averaged: 0.57).
    assert.match(text, /^▸━ schedule=cosine +0\.57│/m);
    assert.match(text, /^ ━ schedule=linear +0\.5225│/m);
    const legend = frame.find((l) => /━ schedule=linear/.test(plain(l)))!;
    assert.equal(legend.find((sp) => sp.text === "━ ")!.fg, pinColour(linear));
    assert.notEqual(pinColour(linear), pinColour(cosine));
    ({ ui } = press(ui, ["p"], snap));
    assert.deepEqual(ui.pinned, [linear], "p again unpins the selected run");
    ({ ui } = press(ui, ["k", "k", "k", "k", "k", "k", "k", "k", "k", "k", "k", "k", "p"], snap));
    assert.deepEqual(ui.pinned, []);
    const plainDetail = renderFrame(snap, ui, {
      cols: 100,
      rows: 30,
      series: (id) => reader.series(id),
    }).lines.map(plain).join("\n");
    assert.match(plainDetail, /loss per timestep band \(log\)/, "no pins: the band chart again");
  } finally {
    await close();
  }
});

Deno.test("every view fills the terminal exactly, at 80×24 and 120×40", async () => {
  const { snap, reader, close } = await snapshot();
  try {
    for (const [cols, rows] of [[80, 24], [120, 40], [100, 30]]) {
      for (
        const ui of [
          initialUi(),
          { ...initialUi(), view: "detail" as const, selected: 12 },
          { ...initialUi(), view: "detail" as const, selected: 5, log: false },
          { ...initialUi(), view: "compare" as const },
          { ...initialUi(), help: true },
          { ...initialUi(), filter: "schedule=cosine", editing: "schedule=cosine sampler=d" },
          { ...initialUi(), view: "compare" as const, filter: "sampler=ddim" },
          { ...initialUi(), view: "detail" as const, selected: 12, pinned: [1, 2] },
          { ...initialUi(), view: "machine" as const },
        ]
      ) {
        const { lines } = renderFrame(snap, ui, { cols, rows, series: (id) => reader.series(id) });
        assert.equal(lines.length, rows - 1, `${cols}×${rows} ${ui.view}`);
        for (const l of lines) assert.equal(width(plain(l)), cols, plain(l));
        assert.match(plain(lines.at(-1)!), ui.editing === undefined ? /q quit/ : /Esc cancel/);
        assert.match(plain(lines[0]), /fixture {2}running {2}ddpm on 8gaussians/);
      }
    }
  } finally {
    await close();
  }
});

Deno.test("overview at 80 columns keeps the parameters, status, loss and metric", async () => {
  const { snap, reader, close } = await snapshot();
  try {
    const { lines } = renderFrame(snap, initialUi(), {
      cols: 80,
      rows: 24,
      series: (id) => reader.series(id),
    });
    const text = lines.map(plain);
    assert.match(text[3], /# schedule sample_steps sampler ema_eval status +progress +loss +mmd$/);
    assert.match(text[4], /^▸ +0 linear +10 +ddpm +raw +done +█{8} +0\.5225 +0\.037/);
    assert.match(text.join("\n"), /11 linear +100 +ddim +0\.999 +done .* ★0\.012/);
    assert.match(text[20], /^1–16\/24 {2}best mmd 0\.012: #11 schedule=linear/);
  } finally {
    await close();
  }
});

Deno.test("controller: keys write cancel and restart requests to the store", async () => {
  const f = await buildFixture();
  const c = await Controller.open({ storePath: f.storePath, size: { cols: 100, rows: 30 } });
  try {
    for (const k of ["j", "r"]) await c.key(k);
    assert.match(c.ui.message!, /evaluation job .* is queued again/);
    for (const k of [...Array(11).fill("j"), "c", "y"]) await c.key(k);
    assert.match(c.ui.message!, /cancel requested for training job/);
    const store = await openStore(f.storePath, { readOnly: true });
    assert.equal((await store.job(f.evals.failed.id))!.state, "queued");
    assert.equal((await store.job(f.train.running.id))!.cancelRequested, 1);
    await store.close();
    assert.match(plain(c.frame()[3]), /# schedule sample_steps/);
  } finally {
    await c.stop();
  }
});

Deno.test("controller: at most 10 redraws a second however fast keys come", async () => {
  const f = await buildFixture();
  const c = await Controller.open({
    storePath: f.storePath,
    size: { cols: 100, rows: 30 },
    maxFps: 10,
  });
  let draws = 0;
  c.subscribe(() => draws++);
  try {
    const t0 = Date.now();
    while (Date.now() - t0 < 450) {
      await c.key(draws % 2 ? "j" : "k");
      await new Promise((r) => setTimeout(r, 5));
    }
    // 450 ms: a draw at once, then one per 100 ms.
    assert.ok(draws >= 3 && draws <= 6, `${draws} redraws`);
  } finally {
    await c.stop();
  }
});

Deno.test("compare with other sweeps: one compared by another metric or goal is named and left out", async () => {
  const { snap, close } = await snapshot("done");
  try {
    const ui = { ...initialUi(), view: "compare" as const };
    const other = (name: string, fields: Partial<Snapshot>) => ({
      ...snap,
      sweep: { ...snap.sweep, name },
      ...fields,
    });
    const text = renderFrame(snap, ui, {
      cols: 100,
      rows: 30,
      series: () => [],
      others: [
        other("same", {}),
        other("fidsweep", { metric: "fid" }),
        other("up", { minimize: false }),
      ],
    }).lines.map(plain).join("\n");
    // The same sweep again: its rows under this one's, the same cells, each best starred.
    assert.match(text, /^fixture linear +0\.03 +0\.014 +★0\.012/m);
    assert.match(text, /^same linear +0\.03 +0\.014 +★0\.012/m);
    assert.match(text, /sweep fidsweep is compared by fid \(lower is better\), not mmd: left out/);
    assert.match(text, /sweep up is compared by mmd \(higher is better\), not mmd: left out/);
    assert.doesNotMatch(text, /^fidsweep /m);
  } finally {
    await close();
  }
});
