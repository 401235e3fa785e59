-- wrk script of bench/api.py. Environment:
--   BENCH_METHOD  GET or POST
--   BENCH_FILE    a file with one request per line: "PATH<TAB>BODY" (BODY may be empty); requests
--                 are sent round robin over the lines, each connection starting at another line
--   BENCH_UNIQUE  "1": in each body, @N@ becomes a number unique to this request (submit)
--   BENCH_HEADER  an extra "Name: value" header
-- done() prints one JSON line with the latency percentiles (microseconds) and the counts.

local method = os.getenv("BENCH_METHOD") or "GET"
local unique = os.getenv("BENCH_UNIQUE") == "1"
local extra = os.getenv("BENCH_HEADER")
local lines = {}
for line in io.lines(os.getenv("BENCH_FILE")) do
  local path, body = line:match("^([^\t]*)\t?(.*)$")
  lines[#lines + 1] = {path, body}
end

local threads = {}
local thread_count = 0
function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  threads[#threads + 1] = thread
end

local i = 0
local n = 0
function init(args)
  i = (tid or 0) * 7
end

function request()
  i = i + 1
  n = n + 1
  local item = lines[(i % #lines) + 1]
  local headers = {["Content-Type"] = "application/json"}
  if extra and extra ~= "" then
    local k, v = extra:match("^([^:]+):%s*(.*)$")
    headers[k] = v
  end
  local body = item[2]
  if body == "" then body = nil end
  if unique and body then
    body = body:gsub("@N@", string.format("%d-%d", tid or 0, n))
  end
  return wrk.format(method, item[1], headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "mean_us": %.1f, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, summary.bytes, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
