-- bench/forge-unique.lua: wrk script for the sg-flood-unique flood. It takes
-- the first Cookie value of a file of forged tokens (bench/users forge) and
-- sends it with six characters in the middle of the signature replaced by
-- a per-request counter (base64url digits, thread id first), so that no
-- token repeats within a run: neither of stepgate's token caches can
-- answer one, and each costs a signature check or is shed by the
-- verification budget (identity.jwt.verify_concurrency). Replacing whole
-- base64url characters inside the signature keeps its length and
-- encoding valid, so every token reaches the signature check.
--
--   wrk -s bench/forge-unique.lua URL -- FILE
local digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local threads = 0
local prefix, suffix
local id = 0
local n = 0

function setup(thread)
	thread:set("tid", threads) -- a global of the thread's own Lua state
	threads = threads + 1
end

function init(args)
	local line
	for l in io.lines(args[1]) do
		if l ~= "" then
			line = l
			break
		end
	end
	if not line then
		error("no forged token in " .. args[1])
	end
	local dot = line:match(".*()%.") -- the last '.': the signature follows
	if not dot or #line < dot + 46 then
		error("not a JWT cookie: " .. args[1])
	end
	local at = dot + 40
	prefix, suffix = line:sub(1, at - 1), line:sub(at + 6)
	id = tonumber(tid) or 0
end

-- code: n as five base64url digits after the thread's digit (64^5, about a
-- billion requests per thread, before a token repeats).
local function code(v)
	local s = digits:sub(id % 64 + 1, id % 64 + 1)
	for _ = 1, 5 do
		local d = v % 64
		s = s .. digits:sub(d + 1, d + 1)
		v = (v - d) / 64
	end
	return s
end

function request()
	n = n + 1
	return wrk.format(nil, nil, { ["Cookie"] = prefix .. code(n) .. suffix })
end
