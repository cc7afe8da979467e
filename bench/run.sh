#!/usr/bin/env bash
# bench/run.sh — load benchmark of stepgate against a bare Go reverse proxy
# and nginx, all in front of the same 1 KiB upstream, on loopback only.
#
#   bench/run.sh                         # every scenario, 3 rounds of 10s
#   DURATION=3s ROUNDS=1 bench/run.sh    # quick check of the harness
#   SCENARIOS='bare nginx' bench/run.sh  # baselines only (no stepgate build)
#
# Environment (defaults in brackets):
#   DURATION [10s]   wrk run length per scenario and round
#   ROUNDS [3]       rounds; each round runs every scenario once, in rotated order
#   WARMUP [2s]      one unmeasured wrk run per scenario before round 1 (0 = none)
#   THREADS [2] CONNECTIONS [64]   wrk -t and -c
#   RULES [1000]     rules in the generated stepgate policy
#   SCENARIOS        subset of: bare sg-allow sg-stepup sg-stepup-redis nginx
#                    nginx-fa bare-users sg-jwks sg-flood sg-flood-unique;
#                    opt-in: nginx-fa-cache
#   USERS [50000] FORGED [1000]   distinct users (sg-jwks) and forged tokens (sg-flood)
#   JWKS_CACHE       sg-jwks's identity.jwt.cache_size and second_factor.cache_size
#                    (default: stepgate's, 10000)
#   JWKS_MEMORY_LIMIT   the JWKS stepgate's runtime.memory_limit (default:
#                    stepgate's, auto)
#   VERIFY_CONCURRENCY  the JWKS stepgate's identity.jwt.verify_concurrency
#                    (default: stepgate's, half the CPUs, at least 1)
#   FLOOD_CONNECTIONS [16]        the flood's wrk -c
#   NGINX_WORKERS [auto]   nginx worker_processes
#   KEEP_TMP=1       keep the temporary directory (logs, configs, wrk output)
#   BENCH_STEPGATE_BIN   an already built stepgate binary to benchmark (for
#                    example a release build) instead of building the repo's
#
# See bench/README.md for what each scenario measures.
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
RULES=${RULES:-1000}
SCENARIOS=${SCENARIOS:-bare sg-allow sg-stepup sg-stepup-redis nginx nginx-fa bare-users sg-jwks sg-flood sg-flood-unique}
USERS=${USERS:-50000}
FORGED=${FORGED:-1000}
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-16}
JWKS_CACHE=${JWKS_CACHE:-}
VERIFY_CONCURRENCY=${VERIFY_CONCURRENCY:-}
JWKS_MEMORY_LIMIT=${JWKS_MEMORY_LIMIT:-}
NGINX_WORKERS=${NGINX_WORKERS:-auto}

die() {
	echo >&2
	echo "bench: ERROR: $*" >&2
	exit 1
}
log() { echo "bench: $*" >&2; }

# seconds DURATION: wrk's duration syntax (10, 10s, 2m, 1h) in seconds.
seconds() {
	local d=$1 n m
	case $d in
	*h) n=${d%h} m=3600 ;;
	*m) n=${d%m} m=60 ;;
	*s) n=${d%s} m=1 ;;
	*) n=$d m=1 ;;
	esac
	[[ $n =~ ^[0-9]+$ ]] || return 1
	echo $((n * m))
}

dur_s=$(seconds "$DURATION") || die "DURATION=$DURATION: want a whole number of seconds, minutes or hours (10s, 1m)"
warm_s=$(seconds "$WARMUP") || die "WARMUP=$WARMUP: want a duration such as 2s, or 0"
((dur_s >= 1)) || die "DURATION=$DURATION: at least 1s"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: want a positive integer"

declare -A what=(
	[bare]="bare httputil.ReverseProxy (baseline)"
	[sg-allow]="stepgate, allow rule, no identity"
	[sg-stepup]="stepgate, step_up rule, access + 2FA token, memory store"
	[sg-stepup-redis]="stepgate, step_up rule, access + 2FA token, redis store"
	[nginx]="nginx reverse proxy"
	[nginx-fa]="nginx + stepgate forward-auth (auth_request), step_up rule, access + 2FA token, memory store"
	[nginx-fa-cache]="nginx-fa with the decision cached in nginx for 5s (an experiment; not a documented config)"
	[bare-users]="bare httputil.ReverseProxy, the sg-jwks requests (baseline of sg-jwks)"
	[sg-jwks]="stepgate, step_up rule, $USERS distinct users: RS256 access tokens through a JWKS + 2FA tokens, memory store, caches of ${JWKS_CACHE:-10000 (the default)}${VERIFY_CONCURRENCY:+, verify_concurrency $VERIFY_CONCURRENCY}${JWKS_MEMORY_LIMIT:+, memory_limit $JWKS_MEMORY_LIMIT}"
	[sg-flood]="stepgate (JWKS, RS256), step_up rule, one valid user, while a second wrk floods $FORGED distinct forged RS256 tokens"
	[sg-flood-unique]="stepgate (JWKS, RS256), step_up rule, one valid user, while a second wrk floods forged RS256 tokens that never repeat"
)
read -r -a scenarios <<<"$SCENARIOS"
((${#scenarios[@]} > 0)) || die "SCENARIOS is empty"
need_stepgate=0 need_redis=0 need_nginx=0 need_bare=0 need_fa=0 need_jwks=0
for s in "${scenarios[@]}"; do
	[[ -n ${what[$s]:-} ]] || die "unknown scenario '$s' in SCENARIOS (known: ${!what[*]})"
	case $s in
	sg-stepup-redis) need_stepgate=1 need_redis=1 ;;
	sg-jwks | sg-flood | sg-flood-unique) need_stepgate=1 need_jwks=1 ;;
	bare-users) need_stepgate=1 need_jwks=1 need_bare=1 ;;
	sg-*) need_stepgate=1 ;;
	nginx) need_nginx=1 ;;
	nginx-fa | nginx-fa-cache) need_nginx=1 need_stepgate=1 need_fa=1 ;;
	bare) need_bare=1 ;;
	esac
done

command -v go >/dev/null || die "go not found in PATH"
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v curl >/dev/null || die "curl not found"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if ((need_nginx)); then [[ -x $NGINX ]] || die "nginx not found (apt-get install nginx-light), or leave nginx out of SCENARIOS"; fi
if ((need_redis)); then
	command -v redis-server >/dev/null || die "redis-server not found, or leave sg-stepup-redis out of SCENARIOS"
	command -v redis-cli >/dev/null || die "redis-cli not found"
fi
[[ -r /proc/self/stat ]] || die "needs Linux /proc for CPU and memory figures"

# stepgate reads STEPGATE_* variables over its config file (SPEC §2); the
# caller's must not change what is benchmarked.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^STEPGATE_' || true)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/stepgate-bench.XXXXXX")
bin=$tmp/bin
mkdir -p "$bin"

# Every process this script starts is recorded here and stopped on exit,
# by its own pid, whatever the reason for exiting.
declare -A pid_of=()
started=()
wrk_pid=
flood_pid=
cleanup() {
	local rc=$? p i deadline
	trap - EXIT INT TERM
	if [[ -n ${wrk_pid:-} ]]; then kill -TERM "$wrk_pid" 2>/dev/null || true; fi
	if [[ -n ${flood_pid:-} ]]; then kill -TERM "$flood_pid" 2>/dev/null || true; fi
	for ((i = ${#started[@]} - 1; i >= 0; i--)); do
		kill -TERM "${started[i]}" 2>/dev/null || true
	done
	deadline=$((SECONDS + 5))
	for p in "${started[@]}"; do
		while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [[ ${KEEP_TMP:-0} == 1 || $rc != 0 ]]; then
		log "logs and configs kept in $tmp"
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: run CMD in the background, output to $tmp/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pid_of[$name]=$!
	started+=("$!")
}

# fail_proc NAME MESSAGE: show the end of NAME's log and stop.
fail_proc() {
	echo "--- last lines of $tmp/$1.log ---" >&2
	tail -n 40 "$tmp/$1.log" >&2 || true
	echo "---" >&2
	die "$2"
}

# wait_until NAME TIMEOUT CMD...: poll CMD until it succeeds, failing early
# when NAME's process dies.
wait_until() {
	local name=$1 limit=$2 deadline
	shift 2
	deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		kill -0 "${pid_of[$name]}" 2>/dev/null || fail_proc "$name" "$name exited during start-up"
		((SECONDS < deadline)) || fail_proc "$name" "$name did not answer within ${limit}s"
		sleep 0.2
	done
}

# Ports are picked below the kernel's ephemeral range (32768+), so that
# wrk's and the proxies' outgoing connections cannot already hold them.
used_ports=" "
PORT=
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((10000 + RANDOM % 20000))
		[[ $used_ports == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports+="$p "
			PORT=$p
			return 0
		fi
	done
	die "no free loopback port found"
}

curl_q() { curl -sS --noproxy '*' --max-time 5 "$@"; }

# ---------------------------------------------------------------- build
log "building in $tmp (repo $repo)"
(
	cd "$repo"
	for t in upstream bareproxy gen-policy mint-tokens users; do
		go build -o "$bin/$t" "./bench/$t"
	done
) >"$tmp/build.log" 2>&1 || {
	cat "$tmp/build.log" >&2
	die "could not build the bench tools"
}
if ((need_stepgate)) && [[ -n ${BENCH_STEPGATE_BIN:-} ]]; then
	[[ -x $BENCH_STEPGATE_BIN ]] || die "BENCH_STEPGATE_BIN=$BENCH_STEPGATE_BIN is not an executable"
	ln -s "$(realpath "$BENCH_STEPGATE_BIN")" "$bin/stepgate"
elif ((need_stepgate)); then
	(cd "$repo" && go build -o "$bin/stepgate" .) >"$tmp/stepgate-build.log" 2>&1 || {
		tail -n 40 "$tmp/stepgate-build.log" >&2
		die "could not build stepgate from $repo (has the root main package landed? see 'git log --oneline').
       To benchmark only the baselines meanwhile: SCENARIOS='bare nginx' $0"
	}
fi

# ---------------------------------------------------------------- start
free_port
up_port=$PORT
start upstream "$bin/upstream" -listen "127.0.0.1:$up_port"
wait_until upstream 20 curl_q -o /dev/null "http://127.0.0.1:$up_port/"

declare -A url=() hdr=() procs=() aux=() script=() flood=() flood_script=() admin_of=()
if ((need_bare)); then
	free_port
	bare_port=$PORT
	start bare "$bin/bareproxy" -listen "127.0.0.1:$bare_port" -upstream "http://127.0.0.1:$up_port"
	wait_until bare 20 curl_q -o /dev/null "http://127.0.0.1:$bare_port/"
	url[bare]="http://127.0.0.1:$bare_port/public/bench"
	procs[bare]=bare
fi

# As root, nginx would switch its workers to "nobody", who cannot enter the
# private temporary directory; keep them as the invoking user.
nginx_user=""
if [[ $(id -u) == 0 ]]; then nginx_user="user $(id -un) $(id -gn);"; fi

if [[ " ${scenarios[*]} " == *" nginx "* ]]; then
	ndir=$tmp/nginx
	mkdir -p "$ndir"
	free_port
	nginx_port=$PORT
	sed -e "s|@USER_DIRECTIVE@|$nginx_user|" -e "s|@WORKERS@|$NGINX_WORKERS|" \
		-e "s|@DIR@|$ndir|g" -e "s|@UPSTREAM@|127.0.0.1:$up_port|" \
		-e "s|@LISTEN@|127.0.0.1:$nginx_port|" "$repo/bench/nginx.conf.tmpl" >"$ndir/nginx.conf"
	"$NGINX" -t -e "$ndir/nginx-error.log" -p "$ndir" -c "$ndir/nginx.conf" >"$tmp/nginx-test.log" 2>&1 || {
		cat "$tmp/nginx-test.log" >&2
		die "nginx rejected $ndir/nginx.conf"
	}
	start nginx "$NGINX" -e "$ndir/nginx-error.log" -p "$ndir" -c "$ndir/nginx.conf"
	wait_until nginx 20 curl_q -o /dev/null "http://127.0.0.1:$nginx_port/"
	url[nginx]="http://127.0.0.1:$nginx_port/public/bench"
	procs[nginx]=nginx
fi

if ((need_stepgate)); then
	# Random secrets, as printable hex with no line end, readable only by us.
	(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$tmp/jwt.secret")
	(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$tmp/second-factor.secret")
	tokens=$("$bin/mint-tokens" -jwt-secret-file "$tmp/jwt.secret" \
		-second-factor-secret-file "$tmp/second-factor.secret" -ttl 2h) || die "mint-tokens failed"
	ACCESS_TOKEN=$(sed -n 's/^ACCESS_TOKEN=//p' <<<"$tokens")
	[[ -n $ACCESS_TOKEN ]] || die "mint-tokens printed no access token"
	cookie_access="Cookie: access_token=$ACCESS_TOKEN"

	# second_factor_token PORT MAILDIR: a second-factor token from the
	# stepgate at PORT, got as a user gets one: a code sent through the
	# JSON API (file mail driver), read from the mail, and verified. A
	# token names its store's epoch, which a memory store draws at start,
	# so none can be minted ahead.
	second_factor_token() {
		local port=$1 dir=$2 at=${3:-$ACCESS_TOKEN} code="" body i
		local api="http://127.0.0.1:$port/.stepup/api/email-otp"
		curl_q -f -o /dev/null -H "Authorization: Bearer $at" -H 'Content-Type: application/json' \
			-d '{"index":0}' "$api" || die "stepgate on $port: sending a code failed"
		for ((i = 0; i < 50; i++)); do
			code=$(cat "$dir"/*.eml 2>/dev/null | tr '\r\n' '  ' | grep -oE 'is:[[:space:]]+[0-9]{6}' | grep -oE '[0-9]{6}' | head -n 1 || true)
			[[ -z $code ]] || break
			sleep 0.1
		done
		[[ -n $code ]] || die "stepgate on $port: no code mailed to $dir"
		body=$(curl_q -f -X PUT -H "Authorization: Bearer $at" -H 'Content-Type: application/json' \
			-d "{\"otp\":\"$code\"}" "$api") || die "stepgate on $port: verifying the code failed"
		sed -n 's/.*"SecondFactorAuthenticationToken":"\([^"]*\)".*/\1/p' <<<"$body"
	}

	# start_stepgate NAME STORE [gen-policy flags...]
	start_stepgate() {
		local name=$1 store=$2 port admin cfg
		shift 2
		free_port
		port=$PORT
		free_port
		admin=$PORT
		cfg=$tmp/$name.yaml
		mkdir -p "$tmp/mail-$name"
		"$bin/gen-policy" -out "$cfg" -rules "$RULES" -store "$store" "$@" \
			-listen "127.0.0.1:$port" -admin-listen "127.0.0.1:$admin" \
			-upstream "http://127.0.0.1:$up_port" -mail-dir "$tmp/mail-$name" \
			-jwt-secret-file "$tmp/jwt.secret" -second-factor-secret-file "$tmp/second-factor.secret" ||
			die "gen-policy failed"
		"$bin/stepgate" check -config "$cfg" >"$tmp/$name-check.log" 2>&1 || {
			cat "$tmp/$name-check.log" >&2
			die "'stepgate check -config $cfg' failed: the generated config or stepgate's checker is wrong"
		}
		start "$name" "$bin/stepgate" serve -config "$cfg"
		admin_of[$name]=$admin
		wait_until "$name" 30 curl_q -o /dev/null "http://127.0.0.1:$port/public/bench"
		SG_PORT=$port
		local at=${SG_ACCESS:-$ACCESS_TOKEN}
		SG_TOKEN=$(second_factor_token "$port" "$tmp/mail-$name" "$at")
		[[ -n $SG_TOKEN ]] || die "$name: no second-factor token"
		SG_COOKIE="Cookie: access_token=$at; stepgate_2fa=$SG_TOKEN"
	}

	if [[ " ${scenarios[*]} " == *" sg-allow "* || " ${scenarios[*]} " == *" sg-stepup "* ]]; then
		start_stepgate sg-mem memory
		url[sg-allow]="http://127.0.0.1:$SG_PORT/public/bench"
		url[sg-stepup]="http://127.0.0.1:$SG_PORT/admin/bench"
		hdr[sg-allow]=$SG_COOKIE
		hdr[sg-stepup]=$SG_COOKIE
		procs[sg-allow]=sg-mem
		procs[sg-stepup]=sg-mem
	fi
	if ((need_redis)); then
		free_port
		redis_port=$PORT
		start redis redis-server --bind 127.0.0.1 --port "$redis_port" --protected-mode yes \
			--save "" --appendonly no --dir "$tmp" --daemonize no
		wait_until redis 20 redis-cli -h 127.0.0.1 -p "$redis_port" ping
		start_stepgate sg-redis redis -redis-addr "127.0.0.1:$redis_port"
		url[sg-stepup-redis]="http://127.0.0.1:$SG_PORT/admin/bench"
		hdr[sg-stepup-redis]=$SG_COOKIE
		procs[sg-stepup-redis]=sg-redis
		aux[sg-stepup-redis]=redis
	fi
	if ((need_fa)); then
		# deploy/nginx/stepgate.conf as shipped, with the addresses filled
		# in and the upstream pools tuned like the nginx baseline's.
		start_stepgate sg-fa memory -forward-auth
		# start_nginx_fa NAME [CACHE]: one nginx in front of sg-fa; with
		# CACHE, the auth_request answers are cached for 5s under a key of
		# everything stepgate decides on (README: why this is not a
		# documented configuration).
		start_nginx_fa() {
			local name=$1 cache=${2:-} fdir=$tmp/$1 fa_port
			mkdir -p "$fdir"
			free_port
			fa_port=$PORT
			sed -e "s|server 127.0.0.1:8080;|server 127.0.0.1:$SG_PORT;|" -e "s|server 127.0.0.1:3000;|server 127.0.0.1:$up_port;|" \
				-e "s|listen 80;|listen 127.0.0.1:$fa_port;|" \
				-e "s|keepalive 32;|keepalive 256; keepalive_requests 1000000; keepalive_timeout 120s;|" \
				"$repo/deploy/nginx/stepgate.conf" >"$fdir/stepgate.conf"
			grep -q "127.0.0.1:$SG_PORT" "$fdir/stepgate.conf" && grep -q "127.0.0.1:$fa_port" "$fdir/stepgate.conf" ||
				die "deploy/nginx/stepgate.conf no longer has the addresses bench/run.sh replaces"
			if [[ -n $cache ]]; then
				sed -i -e "s|^upstream stepgate {|proxy_cache_path $fdir/authz-cache keys_zone=stepgate_authz:10m;\nupstream stepgate {|" \
					-e 's#        proxy_pass_request_body off;#        proxy_pass_request_body off;\n        proxy_cache stepgate_authz;\n        proxy_cache_key "$request_method $http_host $request_uri|$http_cookie|$http_authorization|$http_x_second_factor_token|$http_x_http_method_override|$http_x_http_method|$http_x_method_override|$http_content_type|$http_accept|$http_x_requested_with";\n        proxy_cache_valid 200 5s;\n        proxy_ignore_headers Cache-Control;#' \
					"$fdir/stepgate.conf"
				grep -q "proxy_cache stepgate_authz;" "$fdir/stepgate.conf" || die "could not add the cache to $fdir/stepgate.conf"
			fi
			sed -e "s|@USER_DIRECTIVE@|$nginx_user|" -e "s|@WORKERS@|$NGINX_WORKERS|" -e "s|@DIR@|$fdir|g" \
				"$repo/bench/nginx-forwardauth.conf.tmpl" >"$fdir/nginx.conf"
			"$NGINX" -t -e "$fdir/nginx-error.log" -p "$fdir" -c "$fdir/nginx.conf" >"$tmp/$name-test.log" 2>&1 || {
				cat "$tmp/$name-test.log" >&2
				die "nginx rejected $fdir/nginx.conf"
			}
			start "$name" "$NGINX" -e "$fdir/nginx-error.log" -p "$fdir" -c "$fdir/nginx.conf"
			wait_until "$name" 20 curl_q -o /dev/null "http://127.0.0.1:$fa_port/public/bench"
			url[$name]="http://127.0.0.1:$fa_port/admin/bench"
			procs[$name]=$name
			hdr[$name]=$SG_COOKIE
			aux[$name]=sg-fa
		}
		if [[ " ${scenarios[*]} " == *" nginx-fa "* ]]; then start_nginx_fa nginx-fa; fi
		if [[ " ${scenarios[*]} " == *" nginx-fa-cache "* ]]; then start_nginx_fa nginx-fa-cache cache; fi
	fi
	if ((need_jwks)); then
		# An RS256 identity provider (bench/users serve), a stepgate
		# verifying through its JWKS, one ceremony for a real
		# second-factor token, then USERS distinct users minted from it
		# and FORGED forged access tokens.
		"$bin/users" keygen -key "$tmp/idp.pem" || die "users keygen failed"
		free_port
		jwks_port=$PORT
		start jwks "$bin/users" serve -key "$tmp/idp.pem" -listen "127.0.0.1:$jwks_port"
		wait_until jwks 20 curl_q -f -o /dev/null "http://127.0.0.1:$jwks_port/jwks.json"
		jwt_cookie=${SG_COOKIE:-}
		SG_ACCESS=$("$bin/users" access -key "$tmp/idp.pem" -sub ceremony) || die "users access failed"
		start_stepgate sg-jwks memory -jwks-url "http://127.0.0.1:$jwks_port/jwks.json" ${JWKS_CACHE:+-cache-size "$JWKS_CACHE"} \
			${VERIFY_CONCURRENCY:+-verify-concurrency "$VERIFY_CONCURRENCY"} \
			${JWKS_MEMORY_LIMIT:+-memory-limit "$JWKS_MEMORY_LIMIT"}
		SG_ACCESS=
		log "minting $USERS RS256 users and $FORGED forged tokens (RSA signing: about a minute)"
		"$bin/users" mint -key "$tmp/idp.pem" -n "$USERS" -template "$SG_TOKEN" \
			-second-factor-secret-file "$tmp/second-factor.secret" -out "$tmp/users.txt" || die "users mint failed"
		"$bin/users" forge -key "$tmp/idp.pem" -n "$FORGED" -out "$tmp/forged.txt" || die "users forge failed"
		for s in sg-jwks bare-users; do script[$s]=$tmp/users.txt; done
		url[sg-jwks]="http://127.0.0.1:$SG_PORT/admin/bench"
		procs[sg-jwks]=sg-jwks
		url[sg-flood]="http://127.0.0.1:$SG_PORT/admin/bench"
		procs[sg-flood]=sg-jwks
		hdr[sg-flood]=$SG_COOKIE
		flood[sg-flood]=$tmp/forged.txt
		url[sg-flood-unique]="http://127.0.0.1:$SG_PORT/admin/bench"
		procs[sg-flood-unique]=sg-jwks
		hdr[sg-flood-unique]=$SG_COOKIE
		flood[sg-flood-unique]=$tmp/forged.txt
		flood_script[sg-flood-unique]=$repo/bench/forge-unique.lua
		if ((need_bare)); then
			url[bare-users]=${url[bare]}
			procs[bare-users]=bare
		fi
		[[ -n ${jwt_cookie:-} ]] && SG_COOKIE=$jwt_cookie
	fi
	cookie_full=$SG_COOKIE
fi

# Every scenario sends the same request, cookies included: the apps behind
# a bare proxy or nginx would receive the same session cookies, and a ratio
# only means something between equal traffic (the step_up cookies are about
# 700 bytes that every proxy must read, parse and forward). Each stepgate
# has its own second-factor token (of the same length); the baselines get
# the last one.
if [[ -n ${cookie_full:-} ]]; then
	for s in "${scenarios[@]}"; do
		[[ -n ${hdr[$s]:-} ]] || hdr[$s]=$cookie_full
	done
fi

# ---------------------------------------------------------------- pre-flight
# A benchmark of 401s is worthless: every scenario must answer 200 with the
# upstream's 1,024-byte body, with exactly the headers wrk will send.
# status_of SCENARIO [HEADER]: prints "CODE SIZE".
status_of() {
	local args=(-o "$tmp/preflight.body" -w '%{http_code} %{size_download}')
	[[ -n ${2:-} ]] && args+=(-H "$2")
	curl_q "${args[@]}" "${url[$1]}"
}
for s in "${scenarios[@]}"; do
	# A scripted scenario is checked with its file's first and last lines.
	if [[ -n ${script[$s]:-} ]]; then
		for line in "$(head -n 1 "${script[$s]}")" "$(tail -n 1 "${script[$s]}")"; do
			out=$(status_of "$s" "Cookie: $line") || die "$s: request to ${url[$s]} failed"
			[[ $out == "200 1024" ]] || die "$s: GET ${url[$s]} with a user of ${script[$s]} answered $out; want 200 1024"
			if [[ $s == sg-* ]]; then
				out=$(status_of "$s" "Cookie: ${line%%;*}") || die "$s: request to ${url[$s]} failed"
				[[ $out == 401* ]] || die "$s: without the second-factor token ${url[$s]} answered $out; want 401"
			fi
		done
		log "pre-flight ok: $s"
		continue
	fi
	out=$(status_of "$s" "${hdr[$s]:-}") || die "$s: request to ${url[$s]} failed"
	read -r code size <<<"$out"
	if [[ $code != 200 || $size != 1024 ]]; then
		echo "--- first bytes of the answer ---" >&2
		head -c 400 "$tmp/preflight.body" >&2 || true
		echo >&2
		die "$s: GET ${url[$s]} answered $code with $size bytes; want 200 with the upstream's 1024 bytes. Nothing was benchmarked."
	fi
	# The step_up scenarios must measure a gate that is shut without the
	# second factor; else they would measure an unguarded path.
	if [[ $s == sg-stepup* || $s == nginx-fa* || $s == sg-flood* ]]; then
		out=$(status_of "$s" "$cookie_access") || die "$s: request to ${url[$s]} failed"
		read -r code size <<<"$out"
		[[ $code == 401 ]] || die "$s: without the second-factor token ${url[$s]} answered $code; want 401 (is /admin/** really step_up?)"
	fi
	log "pre-flight ok: $s"
done

# ---------------------------------------------------------------- measure
clk_tck=$(getconf CLK_TCK)

# pids_of NAME: the process and its children (nginx's workers).
pids_of() {
	local p=${pid_of[$1]}
	echo "$p" $(cat /proc/"$p"/task/*/children 2>/dev/null)
}

# cpu_ticks PID...: user + system CPU ticks of the processes (all threads).
cpu_ticks() {
	local total=0 p stat
	local -a f
	for p in "$@"; do
		stat=$(<"/proc/$p/stat") || continue
		# Fields after the command name, which may hold spaces: f[0] is
		# field 3 (state), so utime (14) and stime (15) are f[11], f[12].
		read -r -a f <<<"${stat##*) }"
		total=$((total + f[11] + f[12]))
	done
	echo "$total"
}

# status_kb FIELD PID...: a /proc/PID/status field (kB), summed over PIDs.
status_kb() {
	local field=$1 total=0 p v
	shift
	for p in "$@"; do
		v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || true)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

results=$tmp/results.tsv
: >"$results"

# run_wrk SCENARIO DURATION OUTFILE: one wrk run, bounded in time.
run_wrk() {
	local s=$1 d=$2 out=$3 secs
	local -a args=(-t"$THREADS" -c"$CONNECTIONS" -d"$d" --latency --timeout 5s) tail=()
	if [[ -n ${script[$s]:-} ]]; then
		args+=(-s "$repo/bench/users.lua")
		tail=(-- "${script[$s]}")
	elif [[ -n ${hdr[$s]:-} ]]; then
		args+=(-H "${hdr[$s]}")
	fi
	secs=$(seconds "$d")
	# wrk runs in the background and is waited for, because bash runs the
	# INT/TERM trap only once a foreground command ends, while `wait`
	# returns at once.
	local fpid=
	if [[ -n ${flood[$s]:-} ]]; then
		# The flood runs a little longer than the measured run, so that it
		# covers all of it; its answers are 401s by design.
		timeout $((secs + 30)) wrk -t1 -c"$FLOOD_CONNECTIONS" -d$((secs + 1))s --timeout 5s \
			-s "${flood_script[$s]:-$repo/bench/users.lua}" "${url[$s]}" -- "${flood[$s]}" >"$out.flood" 2>&1 &
		fpid=$!
		flood_pid=$fpid
	fi
	timeout $((secs + 30)) wrk "${args[@]}" "${url[$s]}" "${tail[@]}" >"$out" 2>&1 &
	wrk_pid=$!
	local rc=0
	wait "$wrk_pid" || rc=$?
	wrk_pid=
	if [[ -n $fpid ]]; then
		wait "$fpid" || true
		flood_pid=
	fi
	((rc == 0)) || {
		cat "$out" >&2
		die "$s: wrk failed or overran (exit $rc)"
	}
}

# shed_count NAME: stepgate NAME's stepgate_token_verifications_shed_total
# (0 when it cannot be read).
shed_count() {
	local admin=${admin_of[$1]:-}
	[[ -n $admin ]] || { echo 0; return; }
	curl_q "http://127.0.0.1:$admin/metrics" 2>/dev/null |
		awk '$1 == "stepgate_token_verifications_shed_total" { v = $2 } END { printf "%d\n", v + 0 }'
}

# measure SCENARIO ROUND: one measured run, appended to $results.
measure() {
	local s=$1 r=$2 out=$tmp/wrk-$1-$2.txt
	local -a p a=()
	read -r -a p <<<"$(pids_of "${procs[$s]}")"
	[[ -n ${aux[$s]:-} ]] && read -r -a a <<<"$(pids_of "${aux[$s]}")"
	local c0 c1 a0=0 a1=0
	local shed0=0 shed1=0
	[[ -n ${flood[$s]:-} ]] && shed0=$(shed_count "${procs[$s]}")
	c0=$(cpu_ticks "${p[@]}")
	((${#a[@]})) && a0=$(cpu_ticks "${a[@]}")
	run_wrk "$s" "$DURATION" "$out"
	c1=$(cpu_ticks "${p[@]}")
	[[ -n ${flood[$s]:-} ]] && shed1=$(shed_count "${procs[$s]}")
	((${#a[@]})) && a1=$(cpu_ticks "${a[@]}")
	kill -0 "${pid_of[${procs[$s]}]}" 2>/dev/null || fail_proc "${procs[$s]}" "${procs[$s]} died under load"

	# wrk prints latencies with units (us, ms, s, m); all become ms.
	local line
	line=$(awk -v c0="$c0" -v c1="$c1" -v a0="$a0" -v a1="$a1" -v hz="$clk_tck" -v aux="${aux[$s]:-}" '
		function ms(v) {
			if (v ~ /us$/) return v * 0.001
			if (v ~ /ms$/) return v + 0
			if (v ~ /m$/)  return v * 60000
			if (v ~ /s$/)  return v * 1000
			return v + 0
		}
		$1 == "50%" { p50 = ms($2) }
		$1 == "99%" { p99 = ms($2) }
		/ requests in / { n = $1 }
		/^Requests\/sec:/ { rps = $2 }
		/^  Non-2xx or 3xx responses:/ { bad = $NF }
		/^  Socket errors:/ { gsub(",", ""); errs = $4 + $6 + $8 + $10 }
		END {
			if (n == "" || rps == "" || p99 == "") { print "PARSE"; exit }
			cpu = n > 0 ? (c1 - c0) / hz / n * 1e6 : 0
			auxcpu = (aux != "" && n > 0) ? (a1 - a0) / hz / n * 1e6 : -1
			printf "%.0f %.3f %.3f %.2f %.2f %d %d %d\n", rps, p50, p99, cpu, auxcpu, n, bad + 0, errs + 0
		}' "$out")
	[[ $line != PARSE ]] || {
		cat "$out" >&2
		die "$s: could not parse wrk output"
	}
	local rps p50 p99 cpu auxcpu n bad errs
	read -r rps p50 p99 cpu auxcpu n bad errs <<<"$line"
	if ((bad > 0)); then
		cat "$out" >&2
		die "$s: $bad of $n responses were not 2xx/3xx under load; the numbers would measure errors"
	fi
	((errs == 0)) || log "WARNING: $s round $r: $errs socket errors (see $out)"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$r" "$rps" "$p50" "$p99" "$cpu" "$auxcpu" "$n" "$errs" >>"$results"
	if [[ -f $out.flood ]]; then
		local frps fn
		frps=$(awk '/^Requests\/sec:/ { print $2 }' "$out.flood")
		fn=$(awk '/ requests in / { print $1 }' "$out.flood")
		printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$r" "${frps:-0}" "${fn:-0}" "$((shed1 - shed0))" >>"$results.flood"
		log "$(printf 'round %d/%d  %-16s flood alongside: %s req/s of forged tokens, %d of %s shed (503)' "$r" "$ROUNDS" "$s" "${frps:-0}" "$((shed1 - shed0))" "${fn:-0}")"
	fi
	log "$(printf 'round %d/%d  %-16s %8s req/s  p50 %7.3f ms  p99 %7.3f ms  %6.2f µs CPU/req' "$r" "$ROUNDS" "$s" "$rps" "$p50" "$p99" "$cpu")"
}

n=${#scenarios[@]}
log "${n} scenarios x ${ROUNDS} rounds x ${DURATION} (+ ${WARMUP} warm-up each): about $(( n * (ROUNDS * dur_s + warm_s) ))s of load"
if ((warm_s > 0)); then
	for s in "${scenarios[@]}"; do
		run_wrk "$s" "$WARMUP" "$tmp/warmup-$s.txt"
	done
fi
# Rounds interleave the scenarios (A B C, then B C A, ...), so that a slow
# spell of the machine is spread over all of them instead of one.
for ((r = 1; r <= ROUNDS; r++)); do
	for ((i = 0; i < n; i++)); do
		measure "${scenarios[$(((i + r - 1) % n))]}" "$r"
	done
done

# ---------------------------------------------------------------- report
median() { # median SCENARIO COLUMN
	awk -F'\t' -v s="$1" -v c="$2" '$1 == s { print $c }' "$results" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "nan" || b == "nan") print "n/a"; else printf "%.2f", a / b }'; }
# paired SCENARIO COLUMN [BASE]: the scenario's value divided by BASE's
# (default bare) in the same round, as "median (min–max)". Neighbours in
# time share the machine's mood, so on a noisy machine these ratios
# scatter less than medians do.
paired() {
	awk -F'\t' -v s="$1" -v c="$2" -v base="${3:-bare}" '$1 == base { b[$2] = $c } $1 == s { v[$2] = $c }
		END { for (r in v) if ((r in b) && b[r] + 0 > 0) print v[r] / b[r] }' "$results" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) { print "n/a"; exit }
			m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
			printf "%.2f (%.2f–%.2f)", m, a[1], a[NR] }'
}

base_rps=nan base_p99=nan
if [[ " ${scenarios[*]} " == *" bare "* ]]; then
	base_rps=$(median bare 3)
	base_p99=$(median bare 5)
fi

echo
echo "## stepgate load benchmark"
echo
echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(go version | awk '{print $3}'), $("$NGINX" -v 2>&1 | sed 's/.*: //'), rev $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)."
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS round(s), medians; policy of $RULES rules; upstream body 1024 bytes."
echo "wrk, the proxies and the upstream share this machine's CPUs."
echo
echo "| scenario | what | req/s | p50 ms | p99 ms | proxy CPU µs/req | req/s ÷ bare | p99 ÷ bare | req/s ÷ bare, per round | p99 ÷ bare, per round |"
echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"
for s in "${scenarios[@]}"; do
	rps=$(median "$s" 3)
	p50=$(median "$s" 4)
	p99=$(median "$s" 5)
	cpu=$(median "$s" 6)
	extra=""
	if [[ -n ${aux[$s]:-} ]]; then extra=" (+ $(median "$s" 7) ${aux[$s]})"; fi
	printf '| %s | %s | %.0f | %.3f | %.3f | %.2f%s | %s | %s | %s | %s |\n' "$s" "${what[$s]}" "$rps" "$p50" "$p99" "$cpu" "$extra" \
		"$(ratio "$rps" "$base_rps")" "$(ratio "$p99" "$base_p99")" "$(paired "$s" 3)" "$(paired "$s" 5)"
done

if [[ " ${scenarios[*]} " == *" sg-jwks "* && " ${scenarios[*]} " == *" bare-users "* ]]; then
	echo
	echo "sg-jwks ÷ bare-users (the same $USERS-user requests through the same wrk script), per round (median (min–max)): req/s $(paired sg-jwks 3 bare-users), p99 $(paired sg-jwks 5 bare-users)."
fi
# flood_median SCENARIO COLUMN: the median of a $results.flood column.
flood_median() {
	awk -F'\t' -v s="$1" -v c="$2" '$1 == s { print $c }' "$results.flood" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
if [[ -s $results.flood ]]; then
	for s in sg-flood sg-flood-unique; do
		[[ " ${scenarios[*]} " == *" $s "* ]] || continue
		echo
		if [[ $s == sg-flood ]]; then
			echo "sg-flood: the forged-token flood ($FLOOD_CONNECTIONS connections, $FORGED distinct tokens replayed) was served at a median $(flood_median "$s" 3) req/s (401s) while the valid traffic above was measured; its proxy CPU includes the flood's."
		else
			echo "sg-flood-unique: the flood of never-repeated forged tokens ($FLOOD_CONNECTIONS connections) was served at a median $(flood_median "$s" 3) req/s, a median $(flood_median "$s" 5) of $(flood_median "$s" 4) per round shed with 503 (stepgate_token_verifications_shed_total), the rest 401, while the valid traffic above was measured; its proxy CPU includes the flood's."
		fi
	done
fi
echo
for fa in nginx-fa nginx-fa-cache; do
	[[ " ${scenarios[*]} " == *" $fa "* ]] || continue
	for b in nginx sg-stepup nginx-fa; do
		[[ $b != "$fa" && " ${scenarios[*]} " == *" $b "* ]] || continue
		echo "$fa ÷ $b, per round (median (min–max)): req/s $(paired "$fa" 3 "$b"), p99 $(paired "$fa" 5 "$b")."
	done
done

echo
echo "Peak memory after the runs (VmHWM; nginx: master + workers summed):"
echo
echo "| process | VmHWM MiB | VmRSS MiB |"
echo "|---|--:|--:|"
for name in bare nginx sg-mem sg-redis nginx-fa nginx-fa-cache sg-fa sg-jwks; do
	[[ -n ${pid_of[$name]:-} ]] || continue
	read -r -a p <<<"$(pids_of "$name")"
	printf '| %s | %.1f | %.1f |\n' "$name" "$(awk -v k="$(status_kb VmHWM "${p[@]}")" 'BEGIN { print k / 1024 }')" \
		"$(awk -v k="$(status_kb VmRSS "${p[@]}")" 'BEGIN { print k / 1024 }')"
done
echo
log "raw results: $results (kept with KEEP_TMP=1)"
