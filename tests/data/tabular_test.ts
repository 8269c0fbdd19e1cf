import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import {
  loadTable,
  MISSING,
  selectRows,
  splitRows,
  tableToRecords,
  valueRange,
  withRanges,
  writeCsv,
} from "../../lib/data/tabular.ts";

const dir = Deno.makeTempDirSync({ prefix: "dmw-tabular-" });
let files = 0;
/** Writes CSV text to a fresh temp file and returns its path. */
function csv(text: string): string {
  const path = join(dir, `t${files++}.csv`);
  fs.writeFileSync(path, text);
  return path;
}

/** Asserts that `fn` throws an Error whose message contains every fragment. */
function throwsWith(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (e: Error) => {
    for (const f of fragments) assert.ok(e.message.includes(f), `"${f}" not in: ${e.message}`);
    return true;
  });
}

Deno.test("type inference: integer, numeric, boolean, categorical; overrides", () => {
  const path = csv(
    "id,x,flag,colour,code\n1,0.5,yes,red,007\n2,1e3,No,blue,12\n3,-2,TRUE,red,3\n4,.25,false,green,4\n",
  );
  const t = loadTable(path);
  assert.equal(t.name, path);
  assert.equal(t.rows, 4);
  const types = Object.fromEntries(t.columns.map((c) => [c.name, c.type]));
  assert.deepEqual(types, {
    id: "integer",
    x: "numeric",
    flag: "boolean",
    colour: "categorical",
    code: "integer",
  });
  assert.deepEqual([...t.numeric.x], [0.5, 1000, -2, 0.25]);
  assert.deepEqual([...t.numeric.code], [7, 12, 3, 4]);
  const x = t.columns.find((c) => c.name === "x")!;
  assert.equal(x.min, -2);
  assert.equal(x.max, 1000);
  assert.equal(x.integer, false);
  assert.equal(t.columns[0].integer, true);
  const colour = t.columns.find((c) => c.name === "colour")!;
  assert.deepEqual(colour.categories, ["blue", "green", "red"]);
  assert.deepEqual([...t.categorical.colour], [2, 0, 2, 1]);
  assert.deepEqual(t.columns.find((c) => c.name === "flag")!.categories, ["false", "true"]);
  assert.deepEqual([...t.categorical.flag], [1, 0, 1, 0]);

  const o = loadTable(path, { types: { code: "categorical", id: "numeric" } });
  assert.deepEqual(o.columns.find((c) => c.name === "code")!.categories, ["007", "12", "3", "4"]);
  assert.equal(o.columns[0].type, "numeric");
  assert.equal(o.columns[0].integer, false);
  throwsWith(
    () => loadTable(path, { types: { colour: "numeric" } }),
    `${path}:2`,
    `"colour"`,
    `"red" is not a number`,
  );
  throwsWith(
    () => loadTable(path, { types: { x: "integer" } }),
    `${path}:2`,
    `"x"`,
    "not an integer",
  );
  throwsWith(
    () => loadTable(path, { types: { colur: "numeric" } }),
    path,
    `no column "colur"`,
    `did you mean "colour"`,
  );
  throwsWith(() => loadTable(path, { drop: ["nope"] }), path, `no column "nope"`);
  assert.deepEqual(loadTable(path, { drop: ["id"] }).columns.map((c) => c.name), [
    "x",
    "flag",
    "colour",
    "code",
  ]);
});

Deno.test("columns named like Object.prototype members are ordinary columns", () => {
  const path = csv("__proto__,constructor,toString\n1,a,x\n2,b,y\n");
  const t = loadTable(path);
  assert.deepEqual(t.columns.map((c) => c.type), ["integer", "categorical", "categorical"]);
  assert.deepEqual([...t.numeric["__proto__"]], [1, 2]);
  assert.deepEqual([...t.categorical["constructor"]], [0, 1]);
  const back = tableToRecords(t);
  assert.deepEqual(Object.keys(back[1]), ["__proto__", "constructor", "toString"]);
  const again = join(dir, "proto.csv");
  writeCsv(again, ["__proto__", "constructor", "toString"], back);
  assert.equal(fs.readFileSync(again, "utf-8"), "__proto__,constructor,toString\n1,a,x\n2,b,y\n");
});

Deno.test("quoted fields with commas, quotes, newlines and non-ASCII labels round-trip", () => {
  const header = ["naïve, name", "value", "n", "ok"];
  const rows = [
    ['Zürich, "the city"', 1.5, 3, true],
    ["東京\nline two", -2.25, 4, false],
    ["plain", 0, 5, true],
    ['Zürich, "the city"', 7, 6, null],
  ];
  const path = join(dir, "roundtrip.csv");
  writeCsv(path, header, rows);
  const text = new TextDecoder().decode(fs.readFileSync(path));
  assert.ok(text.startsWith('"naïve, name",value,n,ok\n"Zürich, ""the city""",1.5,3,true\n'), text);
  const t = loadTable(path);
  assert.deepEqual(t.columns.map((c) => c.name), header);
  assert.deepEqual(t.columns.map((c) => c.type), ["categorical", "numeric", "integer", "boolean"]);
  const back = tableToRecords(t);
  assert.deepEqual(back, rows.map((r) => Object.fromEntries(header.map((h, j) => [h, r[j]]))));
  assert.ok(Number.isInteger(back[0].n));
  // Records in, header order kept (not the records' key order).
  const again = join(dir, "again.csv");
  writeCsv(again, ["ok", "n"], back.map((r) => ({ n: r.n, ok: r.ok })));
  assert.ok(fs.readFileSync(again, "utf-8").startsWith("ok,n\ntrue,3\nfalse,4\n"));
  // Selected rows, and MISSING kept as a label on request.
  assert.deepEqual(tableToRecords(t, { rows: [3], missingAsNull: false })[0].ok, MISSING);
  throwsWith(
    () => writeCsv(join(dir, "bad.csv"), ["a", "b"], [[1]]),
    "bad.csv",
    "row 1 has 1 fields",
  );
});

Deno.test("malformed CSV errors give the file, line and column", () => {
  const p1 = csv('a,b,c\n1,2,3\n4,"5"x,6\n');
  throwsWith(() => loadTable(p1), p1, "line 3", "column 2", "Invalid Closing Quote");
  const p2 = csv("a,b\n1,2\n3,4,5\n");
  throwsWith(() => loadTable(p2), p2, "line 3", "Invalid Record Length");
  const p3 = csv('a,b\n1,"unterminated\n');
  throwsWith(() => loadTable(p3), p3, "line", "Quote Not Closed");
  throwsWith(() => loadTable(csv("a,a\n1,2\n")), `column "a" twice`);
});

Deno.test("missing files and empty tables say so", () => {
  const missing = join(dir, "nope", "absent.csv");
  throwsWith(() => loadTable(missing), missing, "no such file");
  throwsWith(() => loadTable("penguin"), "penguin: no such file", `did you mean "penguins"`);
  const header = csv("a,b\n");
  throwsWith(() => loadTable(header), header, "empty table");
  const empty = csv("");
  throwsWith(() => loadTable(empty), empty, "empty table");
});

Deno.test("blank cells: drop-row (default) or mean for numbers, a missing category otherwise", () => {
  const path = csv("x,k,c,b\n1.5,10,a,yes\n,20,,no\nNA,30,b,\n4,null,a,yes\n5,50,NaN,no\n");
  const t = loadTable(path);
  assert.equal(t.rows, 2);
  assert.deepEqual([...t.numeric.x], [1.5, 5]);
  assert.deepEqual([...t.numeric.k], [10, 50]);
  assert.deepEqual(t.blanks, {
    columns: [
      { column: "x", blanks: 2, action: "drop-row" },
      { column: "k", blanks: 1, action: "drop-row" },
      { column: "c", blanks: 2, action: "category" },
      { column: "b", blanks: 1, action: "category" },
    ],
    droppedRows: 3,
    droppedColumns: [],
  });
  assert.deepEqual(t.columns[2].categories, ["a", MISSING]);
  assert.deepEqual([...t.categorical.c], [0, 1]);

  const m = loadTable(path, { blanks: "mean" });
  assert.equal(m.rows, 5);
  assert.deepEqual([...m.numeric.x], [1.5, 3.5, 3.5, 4, 5]);
  assert.deepEqual([...m.numeric.k], [10, 20, 30, 28, 50]); // integer column: mean 27.5 rounded
  assert.deepEqual(m.blanks.columns[0], { column: "x", blanks: 2, action: "mean", fill: 3.5 });
  assert.equal(m.blanks.droppedRows, 0);
  assert.deepEqual(m.columns[2].categories, ["a", "b", MISSING]);
  assert.deepEqual(m.columns[3].categories, ["false", "true", MISSING]);
  assert.deepEqual([...m.categorical.b], [1, 0, 2, 1, 0]);
  assert.deepEqual(tableToRecords(m, { rows: [2] })[0], { x: 3.5, k: 30, c: "b", b: null });
});

Deno.test("a column with a single value is named, or dropped on request", () => {
  const path = csv("a,const,b\n1,k,x\n2,k,y\n3,k,x\n");
  throwsWith(
    () => loadTable(path),
    path,
    `column "const" holds a single value ("k") in all 3 rows`,
  );
  const t = loadTable(path, { constantColumns: "drop" });
  assert.deepEqual(t.columns.map((c) => c.name), ["a", "b"]);
  assert.deepEqual(t.blanks.droppedColumns, ["const"]);
  // Constant only after blank rows are dropped.
  const p2 = csv("a,b\n1,x\n,y\n1,z\n");
  throwsWith(() => loadTable(p2), `column "a" holds a single value ("1") in all 2 rows`);
});

Deno.test("built-in tables: penguins, seattle-weather, cars", () => {
  const p = loadTable("penguins");
  assert.equal(p.name, "penguins");
  assert.deepEqual(p.columns.map((c) => [c.name, c.type]), [
    ["Species", "categorical"],
    ["Island", "categorical"],
    ["Beak Length (mm)", "numeric"],
    ["Beak Depth (mm)", "numeric"],
    ["Flipper Length (mm)", "integer"],
    ["Body Mass (g)", "integer"],
    ["Sex", "categorical"],
  ]);
  assert.equal(p.rows, 342);
  assert.equal(p.blanks.droppedRows, 2);
  assert.deepEqual(p.columns[0].categories, ["Adelie", "Chinstrap", "Gentoo"]);
  assert.deepEqual(p.columns[1].categories, ["Biscoe", "Dream", "Torgersen"]);
  assert.ok(p.columns[6].categories!.includes(MISSING));
  const mass = p.columns[5];
  assert.deepEqual([mass.min, mass.max], [2700, 6300]);
  const first = tableToRecords(p, { rows: [0] })[0];
  assert.deepEqual(first, {
    Species: "Adelie",
    Island: "Torgersen",
    "Beak Length (mm)": 39.1,
    "Beak Depth (mm)": 18.7,
    "Flipper Length (mm)": 181,
    "Body Mass (g)": 3750,
    Sex: "MALE",
  });

  const w = loadTable("seattle-weather", { drop: ["date"] });
  assert.equal(w.rows, 1461);
  assert.deepEqual(w.columns.find((c) => c.name === "weather")!.categories, [
    "drizzle",
    "fog",
    "rain",
    "snow",
    "sun",
  ]);
  const c = loadTable("cars", { blanks: "mean" });
  assert.equal(c.rows, 406);
  assert.deepEqual(c.blanks.columns.map((b) => [b.column, b.blanks]), [
    ["Miles_per_Gallon", 8],
    ["Horsepower", 6],
  ]);
});

Deno.test("a seeded split holds rows out without overlap; the parts keep the categories", () => {
  const s = splitRows(342, 0.2, 0);
  assert.equal(s.holdout.length, 68);
  assert.equal(s.train.length, 274);
  const all = [...s.train, ...s.holdout].sort((a, b) => a - b);
  assert.deepEqual(all, Array.from({ length: 342 }, (_, i) => i));
  assert.deepEqual(splitRows(342, 0.2, 0), s, "same seed, same split");
  assert.notDeepEqual(splitRows(342, 0.2, 1).holdout, s.holdout);
  assert.equal(splitRows(10, 0, 3).holdout.length, 0);
  assert.throws(() => splitRows(10, 1, 0), /holdout must be a fraction in \[0, 1\)/);
  assert.throws(() => splitRows(1, 0.6, 0), /leaves none to train on/);

  const p = loadTable("penguins");
  const part = selectRows(p, s.holdout);
  assert.equal(part.rows, 68);
  assert.deepEqual(part.columns.map((c) => c.categories), p.columns.map((c) => c.categories));
  const mass = part.numeric["Body Mass (g)"];
  assert.equal(mass[0], p.numeric["Body Mass (g)"][s.holdout[0]]);
  assert.deepEqual(
    [part.columns[5].min, part.columns[5].max],
    [Math.min(...mass), Math.max(...mass)],
  );
  assert.throws(() => selectRows(p, [342]), /penguins: row 342 outside 0..341/);
});

Deno.test("a few non-numeric cells in a numeric column: named with line and column, or a policy", () => {
  const lines = Array.from(
    { length: 30 },
    (_, i) => `r${i},${i === 7 ? "n/a?" : i === 20 ? "?" : i * 1.5}`,
  );
  const path = csv(["name,weight", ...lines].join("\n") + "\n");
  throwsWith(
    () => loadTable(path),
    `${path}: column "weight" (column 2) is numbers but for 2 cells: `,
    `${path}:9 "n/a?"`,
    `${path}:22 "?"`,
    "non_numeric=blank",
  );
  const blank = loadTable(path, { nonNumeric: "blank" });
  assert.equal(blank.columns.find((c) => c.name === "weight")?.type, "numeric");
  assert.equal(blank.rows, 28, "their rows dropped by the default blank policy");
  assert.deepEqual(blank.blanks.columns, [{ column: "weight", blanks: 2, action: "drop-row" }]);
  const cat = loadTable(path, { nonNumeric: "categorical" });
  assert.equal(cat.columns.find((c) => c.name === "weight")?.type, "categorical");
  // A column with many words is categorical, as before, whatever the policy.
  const words = csv(
    "a,b\n" + Array.from({ length: 10 }, (_, i) => `${i},${i % 2 ? "x" : i}`).join("\n"),
  );
  assert.equal(loadTable(words).columns[1].type, "categorical");
});

Deno.test("valueRange and withRanges: a column's min and max from its values", () => {
  assert.deepEqual(valueRange([3, -1, 2]), { min: -1, max: 3 });
  assert.deepEqual(valueRange(new Float64Array(0)), { min: Infinity, max: -Infinity });
  const cols = withRanges(
    [
      { name: "a", type: "numeric", integer: false },
      { name: "b", type: "categorical", integer: false },
    ] as never,
    new Map([["a", Float64Array.of(5, 1, 4)]]),
  );
  assert.deepEqual([cols[0].min, cols[0].max, cols[1].min], [1, 5, undefined]);
});
