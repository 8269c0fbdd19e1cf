/**
 * The Ink app: draws the controller's frame, one `<Text>` per line, and
 * passes keys to it. Everything it shows is computed in views.ts.
 */
import React, { useEffect, useState } from "react";
import { Box, type Key as InkKey, Text, useInput } from "ink";
import { toAnsi } from "./charts.ts";
import type { Controller } from "./controller.ts";
import type { Key } from "./views.ts";

/**
 * Ink's key event as {@link Key} names. Keys typed (or sent) quickly arrive
 * as one chunk, e.g. "jj\r": each character counts. Keys the dashboard does
 * not use give none.
 */
export function keyNames(input: string, key: InkKey): Key[] {
  if (key.ctrl && input === "c") return ["q"];
  if (key.upArrow) return ["up"];
  if (key.downArrow) return ["down"];
  if (key.pageUp) return ["pageup"];
  if (key.pageDown) return ["pagedown"];
  if (key.return) return ["enter"];
  if (key.escape) return ["escape"];
  if (key.tab) return ["tab"];
  if (key.backspace || key.delete) return ["backspace"];
  if (key.ctrl || key.meta) return [];
  // In a chunk, DEL and BS are the backspace key.
  return [...input].map((c) =>
    c === "\r" || c === "\n"
      ? "enter"
      : c === "\t"
      ? "tab"
      : c === "\x7f" || c === "\b"
      ? "backspace"
      : c
  )
    .filter((c) => c.length > 1 || c >= " ");
}

/** The dashboard as an Ink component: a column of lines. */
export function App(props: { controller: Controller }) {
  const { controller } = props;
  const [, setTick] = useState(0);
  useEffect(() => controller.subscribe(() => setTick((t: number) => t + 1)), [controller]);
  useInput((input: string, key: InkKey) => {
    for (const k of keyNames(input, key)) controller.key(k);
  });
  return React.createElement(
    Box,
    { flexDirection: "column" },
    controller.frame().map((l, i) =>
      React.createElement(Text, { key: i, wrap: "truncate-end" }, toAnsi(l))
    ),
  );
}
