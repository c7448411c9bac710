#!/usr/bin/env bash
# Benchmark: generate synthetic datasets (contract v1) and time `rulebook eval` end to end.
#
#   benches/bench.sh                          # 100,000 members
#   benches/bench.sh 100000 1000000 3000000   # several sizes
#   RUNS=3 benches/bench.sh 1000000           # best of 3 (default 1)
#   FORMAT=jsonl benches/bench.sh 1000000     # also write every finding (JSON Lines)
#   REPORT=summary benches/bench.sh 1000000   # then time `report --level summary` too
#   REPORT=branch benches/bench.sh 20000      # … or the branch reports
#   CACHED=1 benches/bench.sh 1000000         # then the same eval from the data cache
#
# For each size: members, input rows, CSV MiB, then per stage wall seconds and CPU seconds
# (load, aggregates, rules+output), total seconds, rows/s and peak memory (max RSS).
# Datasets are kept in $BENCH_DIR (default /tmp/rulebook-bench) and reused; the page cache is
# warmed first, so the figures are for data already in memory, as an analyst's second run.
# Criterion micro-benchmarks: `cargo bench --bench load --bench eval`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/rulebook
dir=${BENCH_DIR:-/tmp/rulebook-bench}
runs=${RUNS:-1}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000)
printf '%-9s %11s %7s | %6s %6s | %6s %6s | %6s %6s | %7s %10s %8s\n' \
  members rows CSV_MiB load cpu aggs cpu rules cpu total rows/s peak_MiB
for n in "${sizes[@]}"; do
  data="$dir/m$n"
  if [ ! -f "$data/services.csv" ]; then
    "$bin" gen --members "$n" --seed 42 --out "$data" >/dev/null
  fi
  rows=$(( $(cat "$data"/*.csv | wc -l) - 10 ))
  mib=$(( $(du -sb "$data" | cut -f1) / 1048576 ))
  cat "$data"/*.csv | wc -c > /dev/null   # warm the page cache (through a pipe: /dev/null may be a regular file)
  best=""
  for _ in $(seq "$runs"); do
    out=$(mktemp -d)
    args=(eval --data "$data" --as-of 2020-12-31 --quiet --timings --no-cache)
    [ -n "${FORMAT:-}" ] && args+=(--format "$FORMAT" --out "$out/findings.$FORMAT")
    /usr/bin/time -f '%M' -o "$out/mem" "$bin" "${args[@]}" 2> "$out/t"
    f() { awk -v s="$1" -v c="$2" '$1==s {print $c}' "$out/t"; }
    total=$(f total 2)
    line=$(printf '%-9s %11s %7s | %6s %6s | %6s %6s | %6s %6s | %7s %10.0f %8s' \
      "$n" "$rows" "$mib" "$(f load 2)" "$(f load 3)" "$(f aggregates 2)" "$(f aggregates 3)" \
      "$(f rules+output 2)" "$(f rules+output 3)" "$total" "$(echo "$rows / $total" | bc -l)" \
      "$(( $(tail -1 "$out/mem") / 1024 ))")
    if [ -z "$best" ] || (( $(echo "$total < $best_total" | bc -l) )); then
      best=$line; best_total=$total
    fi
    rm -rf "$out"
  done
  echo "$best"
done

# Reports: the same datasets through `report --level $REPORT --findings none --timings`.
if [ -n "${REPORT:-}" ]; then
  echo
  printf '%-9s %-8s | %6s %6s %6s %6s %6s %6s | %7s %8s %9s %8s\n' \
    members level load aggs rules grading data render total reports rep/s peak_MiB
  for n in "${sizes[@]}"; do
    data="$dir/m$n"
    best=""
    for _ in $(seq "$runs"); do
      out=$(mktemp -d)
      /usr/bin/time -f '%M' -o "$out/mem" "$bin" report --data "$data" --as-of 2020-12-31 \
        --no-cache --level "$REPORT" --findings none --timings --out "$out/r" > "$out/o" 2> "$out/t"
      f() { awk -v s="$1" -v c="$2" '$1==s {print $c}' "$out/t"; }
      total=$(f total 2)
      reports=$(find "$out/r" -name '*.pdf' | wc -l)
      line=$(printf '%-9s %-8s | %6s %6s %6s %6s %6s %6s | %7s %8s %9.1f %8s' \
        "$n" "$REPORT" "$(f load 2)" "$(f aggregates 2)" "$(f rules 2)" "$(f grading 2)" \
        "$(awk '$1=="report" {print $3}' "$out/t")" "$(f rendering 2)" "$total" "$reports" \
        "$(echo "$reports / $(f rendering 2)" | bc -l)" "$(( $(tail -1 "$out/mem") / 1024 ))")
      if [ -z "$best" ] || (( $(echo "$total < $best_total" | bc -l) )); then
        best=$line; best_total=$total
      fi
      rm -rf "$out"
    done
    echo "$best"
  done
fi

# The data cache: one eval that writes it (into $BENCH_DIR/cache), then evals that read it.
if [ -n "${CACHED:-}" ]; then
  echo
  printf '%-9s %-12s | %6s %6s | %7s %8s %9s\n' members run load cpu total peak_MiB cache_MiB
  for n in "${sizes[@]}"; do
    data="$dir/m$n"
    cache="$dir/cache"
    rm -rf "$cache"
    for run in write $(seq -f read%g "$runs"); do
      out=$(mktemp -d)
      /usr/bin/time -f '%M' -o "$out/mem" "$bin" eval --data "$data" --as-of 2020-12-31 \
        --quiet --timings --cache "$cache" 2> "$out/t"
      f() { awk -v s="$1" -v c="$2" '$1==s {print $c}' "$out/t"; }
      printf '%-9s %-12s | %6s %6s | %7s %8s %9s   %s\n' "$n" "$run" "$(f load 2)" "$(f load 3)" \
        "$(f total 2)" "$(( $(tail -1 "$out/mem") / 1024 ))" \
        "$(( $(du -sb "$cache" | cut -f1) / 1048576 ))" "$(grep '^cache' "$out/t")"
      rm -rf "$out"
    done
    # explain for one member and diff against the same policies, both from the cache.
    member=$(awk -F, 'NR==2 {print $1; exit}' "$data/members.csv")
    for cmd in "explain --subject $member" "diff --base policies"; do
      /usr/bin/time -f '%e %M' -o /tmp/rulebook-bench-t "$bin" $cmd --data "$data" \
        --as-of 2020-12-31 --cache "$cache" > /dev/null
      read -r secs kib < /tmp/rulebook-bench-t
      printf '%-9s %-12s | %6s %6s | %7s %8s\n' "$n" "${cmd%% *}" "" "" "$secs" "$(( kib / 1024 ))"
    done
  done
fi
