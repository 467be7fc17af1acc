#!/usr/bin/env bash
# run.sh - the Debian package, tested for real on this machine (issue 19):
#   build it with CPack (cmake --build BUILD --target package), lintian
#   (pedantic, info and experimental tags: none left but the justified
#   overrides of packaging/deb/lintian-overrides), dpkg -i, the system user
#   and the generated key, the installed binary checking the installed
#   configuration, systemd-analyze verify and security on the installed
#   units, the man page, dpkg -r (configuration, key and user stay), dpkg -P
#   (all of it goes).
#
#   tests/package/run.sh [BUILD_DIR]     default: build (scripts/test.sh's)
#
# Needs root (dpkg -i).  Refuses to run when a quorumgate package, user or
# /etc/quorumgate is already there; leaves the machine as it found it (the
# package purged, the user and group gone) even when a check fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
passed=0

fail() { echo "FAIL: $*" >&2; echo "package: $passed passed, 1 failed"; exit 1; }
ok() { passed=$((passed + 1)); echo "ok - $* [$(( $(date +%s) - ${start:-$(date +%s)} ))s]"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# dpkg may be busy with another apt/dpkg run: wait for its lock (bounded).
dpkg_run() {
  local out
  for _ in $(seq 1 60); do
    if out=$(as_root dpkg "$@" 2>&1); then printf '%s\n' "$out"; return 0; fi
    case "$out" in *"lock"*) sleep 5 ;; *) printf '%s\n' "$out" >&2; return 1 ;; esac
  done
  printf '%s\n' "$out" >&2
  return 1
}

[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i, a system user)"
scripts/install-deps.sh build lintian man-db systemd adduser init-system-helpers \
  dpkg-dev >/dev/null

if dpkg-query -W -f='${Status}' quorumgate 2>/dev/null | grep -qv "not-installed"; then
  fail "a quorumgate package is already installed here: not touching it"
fi
getent passwd quorumgate >/dev/null && fail "a quorumgate user already exists"
getent group quorumgate >/dev/null && fail "a quorumgate group already exists"
[ -e /etc/quorumgate ] && fail "/etc/quorumgate already exists"

qpid=
cleanup() {
  if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
    kill -KILL "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
  fi
  if dpkg-query -W -f='${Status}' quorumgate 2>/dev/null | grep -qv "not-installed"; then
    dpkg_run -P quorumgate >/dev/null || echo "cleanup: dpkg -P quorumgate failed" >&2
  fi
  getent passwd quorumgate >/dev/null && as_root deluser --system --quiet quorumgate || true
  getent group quorumgate >/dev/null && as_root delgroup --system --quiet quorumgate || true
}
trap cleanup EXIT

# ---- build ------------------------------------------------------------------
start=$(date +%s)
cmake -S . -B "$build" -G Ninja -DQG_WERROR=ON >/dev/null
cmake --build "$build" --target package >/dev/null
version=$(sed -n 's/^project(quorumgate VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
deb="$build/quorumgate_${version}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || fail "$deb was not built"
ok "cmake --build $build --target package: $deb ($(( $(date +%s) - start ))s)"

depends=$(dpkg-deb -f "$deb" Depends)
for lib in libc6 libcurl4 libssl3 libhiredis0.14 liburing2 libuv1 libyaml-0-2 libcjson1 adduser; do
  case ", $depends," in *", $lib "*|*", $lib,"*) ;; *) fail "Depends lacks $lib: $depends" ;; esac
done
ok "Depends from dpkg-shlibdeps: $depends"

[ "$(dpkg-deb -f "$deb" Package)" = quorumgate ] || fail "Package field"
dpkg-deb -c "$deb" | grep -q 'etc/quorumgate/hmac.key' && fail "the package ships a key"
[ "$(dpkg-deb --info "$deb" conffiles)" = /etc/quorumgate/quorumgate.yaml ] \
  || fail "conffiles: $(dpkg-deb --info "$deb" conffiles)"
ok "no key shipped; /etc/quorumgate/quorumgate.yaml is the conffile"

# ---- lintian -------------------------------------------------------------------
lint=$(lintian --pedantic --info --display-experimental --tag-display-limit 0 "$deb" 2>&1 \
       | grep -v '^running with root privileges' || true)
[ -z "$lint" ] || fail "lintian:
$lint"
ok "lintian --pedantic --info --display-experimental: clean (overrides: $(grep -c '^quorumgate:' packaging/deb/lintian-overrides))"

# ---- install ---------------------------------------------------------------------
dpkg_run -i "$deb" >/dev/null || fail "dpkg -i"
[ "$(dpkg-query -W -f='${Status}' quorumgate)" = "install ok installed" ] || fail "not installed"
ok "dpkg -i"

IFS=: read -r _ _ uid _ _ home shell < <(getent passwd quorumgate) || fail "no quorumgate user"
[ "$uid" -lt 1000 ] || fail "quorumgate uid $uid is not a system uid"
[ "$shell" = /usr/sbin/nologin ] || fail "quorumgate shell $shell"
[ ! -e "$home" ] || fail "quorumgate home $home exists"
ok "system user quorumgate (uid $uid, $shell, home $home)"

key=/etc/quorumgate/hmac.key
[ "$(stat -c '%a %U %G' "$key")" = "640 root quorumgate" ] || fail "key: $(stat -c '%a %U %G' "$key")"
grep -Eqx '[0-9a-f]{64}' "$key" || fail "key is not 64 hex digits"
[ "$(stat -c '%a %U %G' /etc/quorumgate)" = "750 root quorumgate" ] || fail "/etc/quorumgate mode"
dpkg -S "$key" >/dev/null 2>&1 && fail "the key belongs to the package"
keysum=$(sha256sum "$key")
ok "postinst made $key (0640 root:quorumgate, 32 random bytes as hex)"

# (-t also asks each controller's health path: none runs here, so each is a
# warning that it was not reached, not an error.)
out=$(/usr/bin/quorumgate -t -c /etc/quorumgate/quorumgate.yaml 2>&1) || fail "-t: $out"
out=$(as_root runuser -u quorumgate -- /usr/bin/quorumgate -t -c /etc/quorumgate/quorumgate.yaml 2>&1) \
  || fail "-t as quorumgate: $out"
if err=$(as_root runuser -u nobody -- /usr/bin/quorumgate -t -c /etc/quorumgate/quorumgate.yaml 2>&1); then
  fail "user nobody can read the configuration and key"
fi
ok "the installed binary accepts the installed configuration (as root and as quorumgate; nobody cannot read it)"

# The installed configuration runs, as the service user, with the units'
# command line: /healthz answers, SIGTERM ends it with status 0.  Its ports
# are fixed (8080, 9901): when something else holds one, this check is
# reported as not run and not counted.
busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if busy 8080 || busy 9901; then
  echo "NOT RUN: the installed configuration's ports 8080/9901 are in use here"
else
  runlog=$(mktemp)
  setpriv --reuid=quorumgate --regid=quorumgate --init-groups -- \
    /usr/bin/quorumgate -c /etc/quorumgate/quorumgate.yaml >"$runlog" 2>&1 &
  qpid=$!
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9901/healthz || true)
    [ "$code" = 200 ] && break
    kill -0 "$qpid" 2>/dev/null || break
    sleep 0.1
  done
  [ "$code" = 200 ] || fail "no /healthz: $(tail -5 "$runlog")"
  [ "$(ps -o user= -p "$qpid")" = quorumgate ] || fail "not running as quorumgate"
  kill -TERM "$qpid"
  rc=0; wait "$qpid" || rc=$?
  qpid=
  [ "$rc" = 0 ] || fail "exit $rc after SIGTERM: $(tail -5 "$runlog")"
  grep -q '"msg":"listening"' "$runlog" || fail "no listening line: $(head -5 "$runlog")"
  rm -f "$runlog"
  ok "the installed configuration runs as quorumgate: /healthz 200, SIGTERM exit 0"
fi

[ "$(/usr/bin/quorumgate --version)" = "quorumgate $version" ] || fail "--version"
if grep -rqs '^path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/; then
  # a slim image: dpkg leaves man pages out; read the one in the package
  mandir=$(mktemp -d)
  dpkg-deb -x "$deb" "$mandir"
  page=$(MANWIDTH=80 man -l "$mandir/usr/share/man/man8/quorumgate.8.gz" 2>/dev/null | col -b) \
    || fail "man -l (dpkg excludes /usr/share/man here)"
  rm -rf "$mandir"
else
  [ "$(man -w quorumgate)" = /usr/share/man/man8/quorumgate.8.gz ] || fail "man -w: $(man -w quorumgate)"
  page=$(MANWIDTH=80 man quorumgate 2>/dev/null | col -b) || fail "man quorumgate"
fi
grep -q "quorumgate -t -c FILE" <<<"$page" || fail "man quorumgate: no -t -c FILE"
ok "man quorumgate (section 8) installed"

units=(/lib/systemd/system/quorumgate.service /lib/systemd/system/quorumgate-relay.service)
for u in "${units[@]}"; do grep -qx "Type=notify" "$u" || fail "$u is not Type=notify"; done
out=$(systemd-analyze verify "${units[@]}" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
for u in "${units[@]}"; do
  grep -qx "ExecStartPre=/usr/bin/quorumgate -t -c /etc/quorumgate/quorumgate.yaml" "$u" \
    || fail "$u: no ExecStartPre check"
  score=$(systemd-analyze security --offline=true "$u" 2>&1 \
          | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
  [ -n "$score" ] || fail "$u: systemd-analyze security gave no score"
  awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "$u: exposure $score > 2.0"
  echo "    $(basename "$u"): exposure $score"
done
[ -L /etc/systemd/system/multi-user.target.wants/quorumgate.service ] \
  || fail "quorumgate.service is not enabled"
[ ! -e /etc/systemd/system/multi-user.target.wants/quorumgate-relay.service ] \
  || fail "the relay is enabled"
ok "systemd-analyze verify: clean; security exposure <= 2.0; proxy enabled, relay not"

# ---- dpkg -r: the configuration, key and user stay ----------------------------------
echo "# a local change" | as_root tee -a /etc/quorumgate/quorumgate.yaml >/dev/null
dpkg_run -r quorumgate >/dev/null || fail "dpkg -r"
[ "$(dpkg-query -W -f='${Status}' quorumgate)" = "deinstall ok config-files" ] || fail "status after -r"
[ ! -e /usr/bin/quorumgate ] || fail "binary left after -r"
tail -1 /etc/quorumgate/quorumgate.yaml | grep -qx "# a local change" || fail "conffile lost by -r"
[ "$(sha256sum "$key")" = "$keysum" ] || fail "key changed by -r"
getent passwd quorumgate >/dev/null || fail "user removed by -r"
ok "dpkg -r: binary gone; the edited conffile, the key and the user stay"

# ---- reinstall over the kept configuration: nothing is overwritten -------------------
dpkg_run -i "$deb" >/dev/null || fail "dpkg -i over config-files"
tail -1 /etc/quorumgate/quorumgate.yaml | grep -qx "# a local change" || fail "conffile replaced"
[ "$(sha256sum "$key")" = "$keysum" ] || fail "key replaced on reinstall"
/usr/bin/quorumgate -t -c /etc/quorumgate/quorumgate.yaml >/dev/null 2>&1 || fail "-t after reinstall"
ok "reinstall keeps the edited conffile and the key"

# ---- dpkg -P: everything goes ------------------------------------------------------
dpkg_run -P quorumgate >/dev/null || fail "dpkg -P"
dpkg-query -W -f='${Status}' quorumgate 2>/dev/null | grep -q "ok installed\|config-files" \
  && fail "still known to dpkg after -P"
[ ! -e /etc/quorumgate ] || fail "/etc/quorumgate left: $(ls -la /etc/quorumgate)"
! getent passwd quorumgate >/dev/null || fail "user left after -P"
! getent group quorumgate >/dev/null || fail "group left after -P"
left=$(find /etc/systemd /var/lib/systemd/deb-systemd-helper-enabled \
            /var/lib/systemd/deb-systemd-helper-masked -name '*quorumgate*' 2>/dev/null || true)
[ -z "$left" ] || fail "systemd state left after -P: $left"
ok "dpkg -P: conffile, key, /etc/quorumgate, user, group and unit state gone"

echo "package tests took $(( $(date +%s) - start ))s"
echo "package: $passed passed, 0 failed"
