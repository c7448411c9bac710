#!/usr/bin/env bash
# Benchmark: generate synthetic datasets (contract v1) and time `rulebook eval` end to end.
#
#   benches/bench.sh                 # 100,000 members
#   benches/bench.sh 100000 1000000  # several sizes
#
# Prints a table: members, input rows, CSV bytes, seconds per stage, rows/s, peak memory.
# Datasets are kept in $BENCH_DIR (default /tmp/rulebook-bench) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/rulebook
dir=${BENCH_DIR:-/tmp/rulebook-bench}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000)
printf '%-10s %12s %10s %8s %8s %8s %8s %12s %10s\n' members rows MiB load aggs rules total rows/s peak_MiB
for n in "${sizes[@]}"; do
  data="$dir/m$n"
  if [ ! -f "$data/services.csv" ]; then
    "$bin" gen --members "$n" --seed 42 --out "$data" >/dev/null
  fi
  rows=$(( $(cat "$data"/*.csv | wc -l) - 10 ))
  mib=$(( $(du -sb "$data" | cut -f1) / 1048576 ))
  cat "$data"/*.csv > /dev/null   # warm the page cache
  out=$(mktemp -d)
  /usr/bin/time -f '%M' -o "$out/mem" "$bin" eval --data "$data" --quiet --timings --format jsonl --out "$out/f.jsonl" 2> "$out/t"
  load=$(awk '/^load/{print $2}' "$out/t"); aggs=$(awk '/^aggregates/{print $2}' "$out/t")
  rules=$(awk '/^rules/{print $2}' "$out/t"); total=$(awk '/^total/{print $2}' "$out/t")
  mem=$(( $(tail -1 "$out/mem") / 1024 ))
  printf '%-10s %12s %10s %8s %8s %8s %8s %12.0f %10s\n' "$n" "$rows" "$mib" "$load" "$aggs" "$rules" "$total" "$(echo "$rows / $total" | bc -l)" "$mem"
  rm -rf "$out"
done
