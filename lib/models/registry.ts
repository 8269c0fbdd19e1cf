/** The model zoo: every model the commands can train, by name. */
import { D3PM_ENTRY } from "./d3pm.ts";
import { DDPM_ENTRY } from "./ddpm.ts";
import type { ModelEntry } from "./model.ts";
import { SCORE_ENTRY } from "./score.ts";
import { TABDDPM_ENTRY } from "./tabddpm.ts";
import { didYouMean } from "../runtime/text.ts";

/** Model name → registry entry. */
export const MODELS: Record<string, ModelEntry> = {
  d3pm: D3PM_ENTRY,
  ddpm: DDPM_ENTRY,
  score: SCORE_ENTRY,
  tabddpm: TABDDPM_ENTRY,
};

/** Looks a model up, or fails naming the valid ones. */
export function modelEntry(name: string): ModelEntry {
  const e = MODELS[name];
  if (!e) {
    throw new Error(
      `unknown model "${name}"${didYouMean(name, Object.keys(MODELS))}; models: ${
        Object.keys(MODELS).join(", ")
      }`,
    );
  }
  return e;
}
