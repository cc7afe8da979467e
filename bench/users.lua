-- bench/users.lua: wrk script sending one Cookie header per request, taken
-- in turn from a file of Cookie values (one per line; bench/users writes
-- them). Each wrk thread starts at another line.
--
--   wrk -s bench/users.lua URL -- FILE
local cookies = {}
local i = 0

function init(args)
	for line in io.lines(args[1]) do
		if line ~= "" then
			cookies[#cookies + 1] = line
		end
	end
	if #cookies == 0 then
		error("no cookies in " .. args[1])
	end
	math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
	i = math.random(#cookies)
end

function request()
	i = i + 1
	if i > #cookies then
		i = 1
	end
	return wrk.format(nil, nil, { ["Cookie"] = cookies[i] })
end
