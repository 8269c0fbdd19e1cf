/** checkSampleRequest: what each model's sampling accepts, refused before any work with the option named. */
import assert from "node:assert/strict";
import { checkSampleRequest, type SamplingSupport } from "../../lib/models/model.ts";
import { SAMPLERS } from "../../lib/diffusion/samplers.ts";

const DDPM: SamplingSupport = {
  samplers: SAMPLERS,
  defaultSampler: "ddpm",
  etaSamplers: ["ddim", "dpmpp2m_sde"],
  churnSamplers: ["euler", "heun"],
  guidance: false,
  classes: 0,
  ownMetrics: [],
};
const SCORE: SamplingSupport = {
  ...DDPM,
  samplers: ["em"],
  defaultSampler: "em",
  etaSamplers: [],
  churnSamplers: [],
  guidance: true,
  classes: 10,
};
const D3PM: SamplingSupport = {
  ...DDPM,
  samplers: ["ancestral"],
  defaultSampler: "ancestral",
  etaSamplers: [],
  churnSamplers: [],
};

Deno.test("requests a model supports pass", () => {
  checkSampleRequest("ddpm", DDPM, { n: 4 });
  checkSampleRequest("ddpm", DDPM, { n: 4, sampler: "ddim", eta: 0.5, steps: 10 });
  checkSampleRequest("score", SCORE, { n: 4, guidance: 2, labels: [0, 9] });
  checkSampleRequest("d3pm", D3PM, { n: 1, steps: 5 });
  checkSampleRequest("ddpm", DDPM, { n: 4, sampler: "heun", churn: 10 });
  checkSampleRequest("ddpm", DDPM, { n: 4, sampler: "dpmpp2m_sde", eta: 0.5 });
  checkSampleRequest("score", SCORE, { n: 4, guidance: 2, guidanceRescale: 0.7 });
});

Deno.test("each unsupported option is refused with the model and the option named", () => {
  const cases: [string, SamplingSupport, Parameters<typeof checkSampleRequest>[2], RegExp][] = [
    ["ddpm", DDPM, { n: 0 }, /model ddpm: --n must be at least 1, got 0/],
    ["ddpm", DDPM, { n: 4, steps: 0 }, /--steps must be at least 1/],
    [
      "ddpm",
      DDPM,
      { n: 4, sampler: "ddimm" },
      /unknown sampler "ddimm" \(did you mean "ddim"\?\) \(samplers: ddpm, ddim, dpmpp2m, euler, heun, dpmpp2m_sde\)/,
    ],
    ["ddpm", DDPM, { n: 4, sampler: "ddim", eta: -1 }, /--eta must be ≥ 0, got -1/],
    ["ddpm", DDPM, { n: 4, eta: 0.5 }, /--eta applies to the ddim, dpmpp2m_sde samplers, not ddpm/],
    [
      "ddpm",
      DDPM,
      { n: 4, sampler: "ddim", churn: 1 },
      /--churn applies to the euler, heun samplers, not ddim/,
    ],
    ["ddpm", DDPM, { n: 4, sampler: "heun", churn: -1 }, /--churn must be ≥ 0, got -1/],
    ["ddpm", DDPM, { n: 4, guidanceRescale: 0.5 }, /--guidance-rescale does not apply/],
    [
      "score",
      SCORE,
      { n: 4, guidanceRescale: 1.5 },
      /--guidance-rescale must be in \[0, 1\], got 1.5/,
    ],
    ["score", SCORE, { n: 4, churn: 1 }, /--churn does not apply to its sampler/],
    [
      "ddpm",
      DDPM,
      { n: 4, labels: [3] },
      /model ddpm: --label does not apply: the model is unconditional/,
    ],
    ["ddpm", DDPM, { n: 4, guidance: 1 }, /--guidance does not apply/],
    [
      "d3pm",
      D3PM,
      { n: 4, sampler: "ddim" },
      /model d3pm: unknown sampler "ddim" \(samplers: ancestral\)/,
    ],
    ["d3pm", D3PM, { n: 4, eta: 0 }, /--eta does not apply to its sampler/],
    ["score", SCORE, { n: 4, labels: [10] }, /--label must be a class from 0 to 9, got 10/],
    ["score", SCORE, { n: 4, guidance: -1 }, /--guidance must be ≥ 0, got -1/],
  ];
  for (const [model, support, req, want] of cases) {
    assert.throws(() => checkSampleRequest(model, support, req), want, JSON.stringify(req));
  }
});
