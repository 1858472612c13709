#!/usr/bin/env bash
# Did a change make hiwater slower? CPU seconds of two builds of hiwater, interleaved run by run
# on the benchmark's 1M-record data set (bench/data, made by bench/run.py), SQLite and DuckDB:
# first load, delta (re-export, 2% changed), no-change rerun. Medians of REPS runs.
#
#   bash bench/compare_versions.sh OLD_HIWATER NEW_HIWATER [REPS]
#   e.g. old build:  git worktree add /tmp/old <rev> && python3 -m venv /tmp/old/.venv &&
#                    /tmp/old/.venv/bin/pip install -q -e '/tmp/old[duckdb]'
#        bash bench/compare_versions.sh /tmp/old/.venv/bin/hiwater .venv/bin/hiwater 5
#
# CPU time (user+sys, /usr/bin/time) moves less than wall time on a busy machine; the two builds
# alternate, so a burst of other load hits both.
set -euo pipefail
old=$1 new=$2 reps=${3:-5}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data="$here/data/n1000000-s42"
[[ -f $data/base.jsonl ]] || { echo "no $data: run bench/run.py once to make the data set" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq 1 "$reps"); do
  for v in old new; do
    exe=$old; [[ $v == new ]] && exe=$new
    for tgt in sqlite duckdb; do
      db="$out/$v-$i.$tgt"
      if [[ $tgt == sqlite ]]; then t=(--db "$db"); else t=(--target "duckdb:///$db"); fi
      for step in first delta rerun; do
        f=$data/delta.jsonl; [[ $step == first ]] && f=$data/base.jsonl
        /usr/bin/time -f "$v $tgt $step %U %S" -a -o "$out/times" \
          "$exe" load --input "$f" "${t[@]}" --table events --now 2025-06-01T00:00:00Z --progress never \
          >/dev/null 2>&1
      done
    done
  done
done
python3 - "$out/times" <<'PY'
import collections, statistics as st, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 5:
        d[(p[1], p[2], p[0])].append(float(p[3]) + float(p[4]))
print("| target | step | old CPU s | new CPU s | change |\n|---|---|---:|---:|---:|")
for tgt in ("sqlite", "duckdb"):
    for step in ("first", "delta", "rerun"):
        o, n = st.median(d[(tgt, step, "old")]), st.median(d[(tgt, step, "new")])
        print(f"| {tgt} | {step} | {o:.2f} | {n:.2f} | {100 * (n / o - 1):+.1f}% |")
PY
