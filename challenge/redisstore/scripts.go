package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts below run atomically in Redis: no other command, from
// this process or another replica, runs between their reads and writes.
// Times are Unix milliseconds chosen by the caller (its now), so the rolling
// windows follow the Service's clock; TTLs are Redis's own.

// throttleScript records one send unless refused (Store.ThrottleSend).
//
//	KEYS[1]  the user's send set (member: unique id, score: send time)
//	ARGV     now, resendAfter, maxPerHour, window (all ms but max), member
//
// It returns 0 when the send is recorded, else the wait in ms until one
// would be allowed; a refusal writes nothing but the pruning of sends that
// have left the window.
var throttleScript = redis.NewScript(`
local key = KEYS[1]
local now = tonumber(ARGV[1])
local resend = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
-- Sends at or before now-window have left the rolling hour.
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local wait = 0
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if last[2] then
  wait = math.max(wait, tonumber(last[2]) + resend - now)
end
local n = redis.call('ZCARD', key)
if n >= max then
  -- Enough of the oldest sends must leave the window for n to drop below max.
  local e = redis.call('ZRANGE', key, n - max, n - max, 'WITHSCORES')
  wait = math.max(wait, tonumber(e[2]) + window - now)
end
if wait > 0 then
  return wait
end
redis.call('ZADD', key, now, ARGV[5])
redis.call('PEXPIRE', key, math.max(window, resend))
return 0
`)

// putScript replaces the pending code (Store.PutCode).
//
//	KEYS[1]  the code hash
//	ARGV     mac, email, attempts, expiresAt (Unix ns), ttl (ms)
var putScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'mac', ARGV[1], 'email', ARGV[2], 'attempts', ARGV[3], 'exp', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// checkScript compares a MAC with the pending code (Store.CheckCode).
//
//	KEYS[1]  the code hash
//	ARGV     mac, maxAttempts
//
// It returns {0} when there is no pending code, else {ok, attemptsLeft,
// mac, email, attempts, exp} with the fields as they were before the check.
//
// The comparison takes time that depends only on the stored MAC's length,
// never on where the MACs differ: it XOR-accumulates every byte (SPEC §9,
// "compared in constant time"). Lua's == on strings is not used for this.
var checkScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'mac', 'email', 'attempts', 'exp')
local stored = f[1]
if not stored then
  return {0}
end
local email = f[2] or ''
local attempts = tonumber(f[3]) or 0
local exp = f[4] or '0'
local max = tonumber(ARGV[2])
if attempts >= max then
  -- Dead under the current limit (it may have been lowered): deny.
  redis.call('DEL', KEYS[1])
  return {0}
end
local given = ARGV[1]
local diff = 0
if #given ~= #stored or #stored == 0 then
  diff = 1
end
for i = 1, #stored do
  diff = bit.bor(diff, bit.bxor(string.byte(stored, i), string.byte(given, i) or 0))
end
if diff == 0 then
  redis.call('DEL', KEYS[1])
  return {1, 1, 0, stored, email, tostring(attempts), exp}
end
local left = max - attempts - 1
if left <= 0 then
  redis.call('DEL', KEYS[1])
  left = 0
else
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
return {1, 0, left, stored, email, tostring(attempts), exp}
`)

// failurePrelude has the helpers of the failure scripts. A user's failure
// set holds settled failures ("f:" members, or older unprefixed ones) and
// checks in progress ("p:" members), scored by the time they began (ms).
//
//	KEYS[1]  the user's failure set; KEYS[2] the user's lockout key
//	ARGV     now, maxPerHour, lockout, window (ms but max), ...
const failurePrelude = `
local now = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local lockout = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local function counts()
  local all = redis.call('ZRANGE', KEYS[1], 0, -1)
  local settled, pending = 0, 0
  for _, m in ipairs(all) do
    if string.sub(m, 1, 2) == 'p:' then pending = pending + 1 else settled = settled + 1 end
  end
  return settled, pending
end
-- settle locks for lockout once max failures are counted (N means N) and
-- returns the lockout left in ms, or 0.
local function settle()
  redis.call('PEXPIRE', KEYS[1], window)
  local settled = counts()
  if settled >= max and lockout > 0 then
    redis.call('SET', KEYS[2], now + lockout, 'PX', lockout)
    return lockout
  end
  local left = redis.call('PTTL', KEYS[2])
  if left > 0 then return left end
  return 0
end
`

// failureScript counts one failure and locks out (Store.AddFailure).
//
//	ARGV[5]  a member unique to this failure
//
// It returns the lockout left in ms, or 0.
var failureScript = redis.NewScript(failurePrelude + `
redis.call('ZADD', KEYS[1], now, 'f:' .. ARGV[5])
-- Bound the set: only the newest failures can matter.
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(math.max(max, 1) + 65))
return settle()
`)

// beginCheckScript admits one code check (Store.BeginCheck) by the rule of
// challenge's admitWait: while fewer than max failures and checks in
// progress are counted; after a lockout ended with max failures still in
// the window, one check at a time; checks in progress that fill the count
// make the caller wait a second; without lockout, a full window waits for
// its oldest failure to leave.
//
//	ARGV[5]  the ticket: the check is counted as member 'p:' .. ticket
//
// It returns {1, 0} when admitted, or {0, ms to wait}.
var beginCheckScript = redis.NewScript(failurePrelude + `
if redis.call('EXISTS', KEYS[2]) == 1 then
  local left = redis.call('PTTL', KEYS[2])
  if left > 0 then return {0, left} end
end
local settled, pending = counts()
local admit = settled + pending < max or (settled >= max and pending == 0 and lockout > 0)
if not admit then
  if settled >= max and lockout <= 0 then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, math.max(tonumber(oldest[2]) + window - now, 1000)}
  end
  return {0, 1000}
end
redis.call('ZADD', KEYS[1], now, 'p:' .. ARGV[5])
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
`)

// endCheckScript settles a check (Store.EndCheck): withdrawn, or kept as
// a failure with the time it began.
//
//	ARGV[5]  the ticket; ARGV[6] "1" when the code was wrong
//
// It returns the lockout left in ms, or 0.
var endCheckScript = redis.NewScript(failurePrelude + `
local p = 'p:' .. ARGV[5]
local score = redis.call('ZSCORE', KEYS[1], p)
redis.call('ZREM', KEYS[1], p)
if ARGV[6] ~= '1' then return 0 end
if score then redis.call('ZADD', KEYS[1], score, 'f:' .. ARGV[5]) end
return settle()
`)
