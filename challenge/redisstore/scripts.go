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
// The lockout key holds the lock's end (ms, the callers' clock) with a TTL
// to match; a lock ends at the earlier of the two, as in Store.Locked.
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
-- lockLeft returns the lock left in ms, or 0.
local function lockLeft()
  local v = tonumber(redis.call('GET', KEYS[2]) or '')
  if not v then return 0 end
  local left = v - now
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl >= 0 and ttl < left then left = ttl end
  if left > 0 then return left end
  return 0
end
-- slotFree returns when fewer than max settled failures will be left in
-- the window: the time the oldest of the newest max leaves it (ms), or nil
-- when fewer than max are settled.
local function slotFree()
  if max < 1 then return nil end
  local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  local at = {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) ~= 'p:' then at[#at + 1] = tonumber(all[i + 1]) end
  end
  if #at < max then return nil end
  return at[#at - max + 1] + window
end
-- lockUntil locks until the ms time ends (never shortening a running lock)
-- and returns the lock left in ms, or 0.
local function lockUntil(ends)
  local cur = tonumber(redis.call('GET', KEYS[2]) or '')
  if cur and redis.call('PTTL', KEYS[2]) > 0 and cur > ends then ends = cur end
  if ends <= now then return 0 end
  redis.call('SET', KEYS[2], ends, 'PX', ends - now)
  return ends - now
end
-- settle locks once max failures are counted (N means N) until the later
-- of the lockout's end and the time a slot in the window is free
-- (challenge.LockEnd), and returns the lock left in ms, or 0.
local function settle()
  redis.call('PEXPIRE', KEYS[1], window)
  local settled = counts()
  if settled >= max then
    local ends = now + lockout
    local free = slotFree()
    if free and free > ends then ends = free end
    return lockUntil(ends)
  end
  return lockLeft()
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
// challenge's MemoryStore: only while no lock runs and fewer than max
// failures and checks in progress are counted. A full window without a
// lock (lost, or a replica's clock behind) locks until a slot is free;
// checks in progress that fill the count make the caller wait a second.
//
//	ARGV[5]  the ticket: the check is counted as member 'p:' .. ticket
//
// It returns {1, 0} when admitted, or {0, ms to wait}.
var beginCheckScript = redis.NewScript(failurePrelude + `
local left = lockLeft()
if left > 0 then return {0, left} end
local settled, pending = counts()
if settled >= max then
  local free = slotFree()
  if not free then return {0, window} end
  return {0, math.max(lockUntil(free), 1)}
end
if settled + pending >= max then return {0, 1000} end
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
