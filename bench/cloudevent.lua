-- wrk script: POST one binary-mode CloudEvent per request, as a Knative broker delivers it.
-- bench/function_load.py writes the headers ("name: value" per line) and the body (the
-- event's data) to files and names them in WRK_EVENT_HEADERS and WRK_EVENT_BODY. Each
-- request gets its own ce-id, as real events do.

local function read(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

local headers = {}
for line in read(os.getenv("WRK_EVENT_HEADERS")):gmatch("[^\r\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then headers[name] = value end
end
local body = read(os.getenv("WRK_EVENT_BODY"))
local counter = 0
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("prefix", "bench-" .. threads .. "-")  -- ids stay unique across wrk threads
end

request = function()
  counter = counter + 1
  headers["ce-id"] = (prefix or "bench-") .. counter
  return wrk.format("POST", "/", headers, body)
end

done = function(summary, latency, requests)
  io.write(string.format("non2xx=%d errors=%d\n",
    summary.errors.status, summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
