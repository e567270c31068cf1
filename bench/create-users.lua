-- wrk script: durable task creation (POST /v1/tasks) spread over many users,
-- each request with the next user's key in turn. The keys, one per line,
-- are in the file named after `--`:
--   wrk ... -s bench/create-users.lua URL -- KEYS_FILE
local keys = {}
local i = 0
local body = '{"model":"sim-image","input":{"prompt":"a lighthouse at dusk","size":"512x512"},"public":true}'

function init(args)
  for line in io.lines(args[1]) do
    keys[#keys + 1] = line
  end
  i = math.random(#keys)
end

function request()
  i = i % #keys + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. keys[i],
  }, body)
end
