#!/usr/bin/env bash
# The WebGPU benchmark on a Linux GPU machine that has no network.
#
#   tasks/gpu_bench.sh pack [BUNDLE]          # here: write the bundle (default .gpu/dmw-gpu-bench.tar.xz)
#   tasks/gpu_bench.sh run  [BUNDLE] [--dry-run]
#                                             # there: unpack it, run both benchmarks
#   deno task gpu-bench                       # here: pack, then run it with --dry-run (llvmpipe)
#
# The bundle (at most 60 MiB) holds the Deno binary, this project's tracked
# files, its node_modules (source maps, minified and browser bundles and type
# declarations left out: Deno runs the CommonJS builds), the Vulkan loader
# (libvulkan.so.1, for machines without it) and ../shared/peers/pytorch_bench.py.
# `run` prints one JSON line per BENCH.md case from
# `deno task bench --backend webgpu --profile`, then one per case from the
# PyTorch reference with DEVICE=cuda (marked "peer": "pytorch"), when a CUDA
# device is there. Timings compare only within one such run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
default_bundle="$root/.gpu/dmw-gpu-bench.tar.xz"
limit=$((60 * 1024 * 1024))

pack() {
  local bundle="${1:-$default_bundle}"
  local stage
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' RETURN
  cd "$root"
  local deno
  deno="$(npx -y deno@2.9.6 eval 'console.log(Deno.execPath())')"
  npx -y deno@2.9.6 install >/dev/null
  mkdir -p "$stage/project" "$stage/peers" "$stage/lib"
  cp "$deno" "$stage/deno"
  git ls-files -z | xargs -0 tar -cf - | tar -xf - -C "$stage/project"
  tar -cf - node_modules | tar -xf - -C "$stage/project"
  find "$stage/project/node_modules" -type f \( -name '*.map' -o -name '*.min.js' \
    -o -name '*.es2017.js' -o -name '*.fesm.js' -o -name '*.d.ts' -o -name '*.md' \) -delete
  local peer="$root/../shared/peers/pytorch_bench.py"
  [[ -f "$peer" ]] || { echo "pack: $peer is missing" >&2; return 1; }
  cp "$peer" "$stage/peers/"
  local vk
  vk="$(ldconfig -p | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}')"
  [[ -n "$vk" ]] || { echo "pack: no libvulkan.so.1 here (apt-get install libvulkan1)" >&2; return 1; }
  cp -L "$vk" "$stage/lib/libvulkan.so.1"
  mkdir -p "$(dirname "$bundle")"
  tar -C "$stage" -cf - . | xz -9 -T2 >"$bundle"
  local size
  size=$(stat -c %s "$bundle")
  echo "pack: $bundle, $((size / 1024 / 1024)) MiB" >&2
  if ((size > limit)); then
    echo "pack: the bundle is over 60 MiB" >&2
    return 1
  fi
}

run() {
  local bundle="$default_bundle" dry=()
  for a in "$@"; do
    case "$a" in
    --dry-run) dry=(--dry-run) ;;
    *) bundle="$a" ;;
    esac
  done
  [[ -f "$bundle" ]] || { echo "run: no bundle at $bundle (tasks/gpu_bench.sh pack)" >&2; return 1; }
  local dir
  dir="$(mktemp -d)"
  xz -dc "$bundle" | tar -xf - -C "$dir"
  if ! ldconfig -p | grep -q 'libvulkan\.so\.1 '; then
    export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  local nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [[ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" && -f "$nv" ]] &&
    ! ls /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json >/dev/null 2>&1; then
    export VK_DRIVER_FILES="$nv"
  fi
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$dir}"
  # Offline: a registry that answers nothing, and Deno's cache in the bundle's folder.
  export DENO_DIR="$dir/deno-dir" DENO_NO_UPDATE_CHECK=1 NPM_CONFIG_REGISTRY=http://127.0.0.1:9/
  (cd "$dir/project" && "$dir/deno" run -A --cached-only main.ts bench --backend webgpu --profile "${dry[@]}")
  if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    DEVICE=cuda python3 "$dir/peers/pytorch_bench.py" |
      sed -u 's/^{/{"peer": "pytorch", "device": "cuda", /'
  else
    echo '{"peer": "pytorch", "skipped": "no CUDA device (or no PyTorch) on this machine"}'
  fi
  rm -rf "$dir"
}

case "${1:-}" in
pack) shift && pack "$@" ;;
run) shift && run "$@" ;;
dry-run) shift && pack && run "$default_bundle" --dry-run ;;
*)
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
