# A private PostgreSQL cluster for tests, run as the user that owns DIR (see test_server.rs).
# Arguments: BINDIR DIR PORT [ADDRESS to listen on, loopback if absent]. Reads commands on stdin,
# one a line: `stop` (fast shutdown) and `start`; answers `ready` or `stopped` when done. At end of
# input (the test process exited or dropped its handle) the cluster stops and its files are
# removed, so no server outlives a test.
set -eu
bindir=$1 dir=$2 port=$3 address=${4:-127.0.0.1}
data=$dir/data
exec 2>>"$dir/supervisor.log"

start() {
  "$bindir/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -s \
    -o "-p $port -k $dir -c listen_addresses=$address -c fsync=off -c max_connections=400" start
  echo ready
}

"$bindir/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 >"$dir/initdb.log" 2>&1
# initdb trusts loopback only; a server on another address (in a test's network namespace) trusts
# the clients that reach it there.
[ "$address" = 127.0.0.1 ] || echo "host all all all trust" >>"$data/pg_hba.conf"
start
while read -r command; do
  case $command in
    stop) "$bindir/pg_ctl" -D "$data" -m fast -w -s stop; echo stopped ;;
    start) start ;;
  esac
done
"$bindir/pg_ctl" -D "$data" -m immediate -w -s stop >/dev/null 2>&1 || true
rm -rf "$dir"
