/**
 * `deno task test`: runs the whole suite with `deno test` and closes with the
 * line `N passed, N failed` that CI reads. Extra arguments go to `deno test`
 * (a file or `--filter NAME`).
 */
const args = Deno.args.length ? Deno.args : ["tests/"];
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", "--no-check", ...args],
  stdout: "piped",
  stderr: "inherit",
  env: { NO_COLOR: "1" },
}).spawn();

let tail = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  const text = decoder.decode(chunk, { stream: true });
  await Deno.stdout.write(chunk);
  tail = (tail + text).slice(-4000);
}
const { code } = await child.status;
const m = tail.match(/(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/);
const passed = m ? Number(m[1]) : 0;
const failed = m ? Number(m[2]) : code === 0 ? 0 : 1;
console.log(`${passed} passed, ${failed} failed`);
Deno.exit(code === 0 && failed === 0 ? 0 : 1);
