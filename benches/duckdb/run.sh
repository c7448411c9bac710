#!/usr/bin/env bash
# DuckDB doing the five core checks (core_checks.sql) on a generated dataset, for comparison
# with `rulebook eval` on the same files. DuckDB comes from PyPI into a virtualenv in
# $BENCH_DIR; nothing of it is used by the tests.
#
#   benches/duckdb/run.sh 1000000        # 2 threads, warm cache, best of RUNS (default 1)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${BENCH_DIR:-/tmp/rulebook-bench}
n=${1:-100000}
data="$dir/m$n"
[ -f "$data/services.csv" ] || { echo "no dataset at $data: run benches/bench.sh $n first" >&2; exit 2; }
venv="$dir/duckdb-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet duckdb
fi
cat "$data"/*.csv | wc -c > /dev/null   # warm the page cache (through a pipe: /dev/null may be a regular file)
for _ in $(seq "${RUNS:-1}"); do
  (cd "$data" && /usr/bin/time -f 'duckdb: %e s wall, %U s user, %S s sys, peak %M KiB' \
    "$venv/bin/python" - "$here/core_checks.sql" <<'PY'
import duckdb, sys, time
sql = open(sys.argv[1]).read()
con = duckdb.connect(config={"threads": 2})
t0 = time.time()
stmts = []
for chunk in sql.split(";"):
    code = "\n".join(l for l in chunk.splitlines() if not l.lstrip().startswith("--")).strip()
    if code:
        stmts.append(code)
for s in stmts[:-1]:
    t = time.time()
    con.execute(s)
    print(f"{time.time() - t:7.2f} s  {s.splitlines()[0][:60]}")
t = time.time()
for row in con.execute(stmts[-1]).fetchall():
    print(f"          {row[0]}: {row[1]}")
print(f"{time.time() - t:7.2f} s  checks")
print(f"{time.time() - t0:7.2f} s  in all (duckdb {duckdb.__version__})")
PY
  )
done
