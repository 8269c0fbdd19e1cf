import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import {
  categoricalKl,
  cumulativeMatrix,
  d3pmBetas,
  type D3pmKernel,
  D3pmProcess,
  matMul,
  numStates,
  posterior,
  priorKl,
  reverseProbs,
  transitionMatrix,
} from "../../lib/diffusion/d3pm.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose, useBackend } from "../helpers.ts";

await useBackend("wasm");

const KERNELS: D3pmKernel[] = ["uniform", "absorbing"];

function rowSums(M: Float64Array, S: number): number[] {
  return Array.from(
    { length: S },
    (_, i) => M.subarray(i * S, (i + 1) * S).reduce((a, b) => a + b, 0),
  );
}

Deno.test("Q_t and Q̄_t: rows sum to 1, entries as in the paper, closed form = matrix product", () => {
  for (const kernel of KERNELS) {
    const K = 4;
    const S = numStates(kernel, K);
    const process = new D3pmProcess({ kernel, K, T: 20 });
    let product = transitionMatrix(kernel, K, 0); // identity
    for (let t = 1; t <= 20; t++) {
      const beta = process.betas[t - 1];
      const Q = transitionMatrix(kernel, K, beta);
      for (const s of rowSums(Q, S)) assertClose(s, 1, 1e-12, 0, `${kernel} Q_${t} row`);
      // Entries from the seed's case lists.
      if (kernel === "uniform") {
        assertClose(Q[0], 1 - (K - 1) / K * beta, 1e-15);
        assertClose(Q[1], beta / K, 1e-15);
      } else {
        assertClose(Q[0], 1 - beta, 1e-15);
        assertClose(Q[K], beta, 1e-15);
        assertClose(Q[K * S + K], 1, 1e-15);
        assertClose(Q[K * S], 0, 0);
      }
      product = matMul(product, Q, S);
      const closed = cumulativeMatrix(kernel, K, process.alphaBar[t]);
      for (const s of rowSums(closed, S)) assertClose(s, 1, 1e-12, 0, `${kernel} Q̄_${t} row`);
      for (let i = 0; i < S * S; i++) {
        assertClose(closed[i], product[i], 1e-12, 0, `${kernel} Q̄_${t}[${i}]`);
      }
    }
    process.dispose();
  }
});

Deno.test("schedules: absorbing ends all-MASK (β_T = 1), mi gives ᾱ_t = 1 − t/T, uniform prior KL is small", () => {
  const T = 50;
  const mi = new D3pmProcess({ kernel: "absorbing", K: 2, T });
  for (let t = 0; t <= T; t++) assertClose(mi.alphaBar[t], 1 - t / T, 1e-12);
  assert.equal(mi.priorKl, 0);
  for (const kind of ["linear", "cosine"] as const) {
    assert.equal(d3pmBetas(kind, T, "absorbing")[T - 1], 1);
  }
  const uni = new D3pmProcess({ kernel: "uniform", K: 2, T: 1000 });
  assert.equal(uni.schedule, "linear");
  assert.ok(uni.priorKl > 0 && uni.priorKl < 1e-8, `prior KL ${uni.priorKl}`);
  mi.dispose();
  uni.dispose();
});

Deno.test("posterior q(x_{t−1} | x_t, x0) equals brute-force Bayes over x_{t−1}", () => {
  for (const kernel of KERNELS) {
    const K = 3;
    const S = numStates(kernel, K);
    const process = new D3pmProcess({ kernel, K, T: 10, schedule: "cosine" });
    for (const t of [2, 5, 10]) {
      const Q = transitionMatrix(kernel, K, process.betas[t - 1]);
      const barPrev = Array.from(
        { length: t - 1 },
        (_, u) => transitionMatrix(kernel, K, process.betas[u]),
      )
        .reduce((a, b) => matMul(a, b, S), transitionMatrix(kernel, K, 0)); // Q_1 ⋯ Q_{t−1}
      for (let x0 = 0; x0 < K; x0++) {
        for (let xt = 0; xt < S; xt++) {
          // Joint q(x_{t−1}, x_t | x0) = q(x_{t−1} | x0) q(x_t | x_{t−1}), enumerated.
          const joint = Array.from({ length: S }, (_, j) => barPrev[x0 * S + j] * Q[j * S + xt]);
          const z = joint.reduce((a, b) => a + b, 0);
          const p = posterior(kernel, K, process.alphaBar[t - 1], process.alphaBar[t], xt, x0);
          if (z === 0) {
            assert.equal(p, undefined, `${kernel} t=${t} x0=${x0} xt=${xt} is impossible`);
            continue;
          }
          for (let j = 0; j < S; j++) {
            assertClose(p![j], joint[j] / z, 1e-12, 0, `${kernel} t=${t} x0=${x0} xt=${xt}`);
          }
        }
      }
    }
    process.dispose();
  }
});

Deno.test("a perfect x0 prediction makes pθ(x_{t−1} | x_t) the true posterior", () => {
  for (const kernel of KERNELS) {
    const K = 4;
    const S = numStates(kernel, K);
    const process = new D3pmProcess({ kernel, K, T: 30 });
    for (const t of [1, 2, 15, 30]) {
      for (let x0 = 0; x0 < K; x0++) {
        const logits = Array.from({ length: K }, (_, k) => (k === x0 ? 60 : -60));
        for (const xt of [x0, (x0 + 1) % K, S - 1]) {
          const q = posterior(kernel, K, process.alphaBar[t - 1], process.alphaBar[t], xt, x0);
          if (!q) continue;
          const p = reverseProbs(
            kernel,
            K,
            process.alphaBar[t - 1],
            process.alphaBar[t],
            xt,
            logits,
          );
          for (let j = 0; j < S; j++) {
            assertClose(p[j], q[j], 1e-12, 0, `${kernel} t=${t} x0=${x0} xt=${xt}`);
          }
          assertClose(categoricalKl(q, p), 0, 1e-12);
        }
      }
    }
    process.dispose();
  }
});

Deno.test("tensor loss terms match an independent float64 computation, per kernel", () => {
  for (const kernel of KERNELS) {
    const K = 3;
    const B = 5;
    const N = 7;
    const process = new D3pmProcess({ kernel, K, T: 12 });
    const rng = new Rng(7);
    const x0 = Int32Array.from({ length: B * N }, () => rng.int(K));
    const t = Int32Array.from([1, 2, 6, 11, 12]);
    const xt = process.qSample(x0, t, rng);
    const raw = Array.from({ length: B * N * K }, () => 2 * rng.normal());
    const before = tf.memory().numTensors;
    const [vb, ce] = tf.tidy(() => {
      const terms = process.lossTerms(tf.tensor2d(raw, [B * N, K]), { x0, xt, t });
      return [terms.vb, terms.ce];
    });
    const vbv = vb.dataSync();
    const cev = ce.dataSync();
    tf.dispose([vb, ce]);
    assert.equal(tf.memory().numTensors, before + 2, "only the two tables stay");
    for (let b = 0; b < B; b++) {
      let kl = 0;
      let nll = 0;
      for (let i = b * N; i < (b + 1) * N; i++) {
        const logits = raw.slice(i * K, (i + 1) * K);
        const abarS = process.alphaBar[t[b] - 1];
        const abarT = process.alphaBar[t[b]];
        const q = posterior(kernel, K, abarS, abarT, xt[i], x0[i])!;
        const p = reverseProbs(kernel, K, abarS, abarT, xt[i], logits);
        kl += t[b] === 1 ? -Math.log(p[x0[i]]) : categoricalKl(q, p);
        // −log p̃θ(x0 | x_t) with p̃θ restricted to the x0 consistent with x_t: pθ at t = 1.
        nll -= Math.log(reverseProbs(kernel, K, 1, abarT, xt[i], logits)[x0[i]]);
      }
      assertClose(vbv[b], kl / N, 1e-5, 1e-4, `${kernel} vb of sample ${b} (t=${t[b]})`);
      assertClose(cev[b], nll / N, 1e-5, 1e-4, `${kernel} ce of sample ${b}`);
    }
    process.dispose();
  }
});

Deno.test("qSample draws x_t with the marginals of x0 Q̄_t", () => {
  for (const kernel of KERNELS) {
    const K = 4;
    const S = numStates(kernel, K);
    const process = new D3pmProcess({ kernel, K, T: 100 });
    const n = 40000;
    const x0 = new Int32Array(n).fill(1);
    const xt = process.qSample(x0, Int32Array.from([60]), new Rng(3));
    const counts = new Float64Array(S);
    for (const v of xt) counts[v]++;
    const row = cumulativeMatrix(kernel, K, process.alphaBar[60]).subarray(S, 2 * S);
    for (let j = 0; j < S; j++) {
      const se = Math.sqrt(row[j] * (1 - row[j]) / n);
      assertClose(counts[j] / n, row[j], 5 * se + 1e-12, 0, `${kernel} state ${j}`);
    }
    process.dispose();
  }
});

Deno.test("an uninformed x0 prediction costs exactly log K per variable under the absorbing kernel", () => {
  // Each variable is unmasked once on the way back, with probability 1/K of the right value.
  const K = 4;
  const T = 40;
  const process = new D3pmProcess({ kernel: "absorbing", K, T });
  const zeros = new Array(K).fill(0);
  let total = process.priorKl;
  // x_t is MASK with probability 1 − ᾱ_t, else x0; only the MASK case has a nonzero KL.
  for (let t = 1; t <= T; t++) {
    const abarS = process.alphaBar[t - 1];
    const abarT = process.alphaBar[t];
    const q = posterior("absorbing", K, abarS, abarT, K, 0)!;
    const p = reverseProbs("absorbing", K, abarS, abarT, K, zeros);
    total += (1 - abarT) * (t === 1 ? -Math.log(p[0]) : categoricalKl(q, p));
  }
  assertClose(total, Math.log(K), 1e-12);
  assertClose(priorKl("absorbing", K, 0), 0, 0);
  process.dispose();
});
