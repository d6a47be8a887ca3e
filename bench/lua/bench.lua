-- wrk load script of the benchmark harness (Debian's wrk 4.1, LuaJIT).
--
-- Run with as many threads as connections (-t N -c N): wrk gives each thread its own Lua
-- state, so each connection speaks for its own operator and keeps its own state (the
-- conversation to resolve next). Configured through the environment:
--   BENCH_MODE        allocate | cycle | ingest | list | search
--   BENCH_IDENTITIES  file, one line per connection: "<tenant> <operator> <inbox,inbox,…>"
--   BENCH_DELAY_MS    pause before each request (paced runs), 0 = closed loop
--   BENCH_QUERY       query string of `list` (e.g. "per_page=50&sort=newest"); "{inbox}"
--                     becomes one of the connection's inboxes, at random per request
--   BENCH_RUN_TAG     prefix of the external ids that `ingest` creates
--   BENCH_PHONE_SPACE customer numbers are +1415 followed by 7 digits below this
-- An identity line may end with a fourth field, an API token: it is then sent as
-- `Authorization: Bearer <token>` next to the identity headers (AUTH_MODE=token runs).
-- done() prints one line "BENCH_JSON {...}" with the counts, the latency percentiles (µs)
-- and the number of responses per HTTP status.

local mode = os.getenv("BENCH_MODE") or "allocate"
local identities_path = os.getenv("BENCH_IDENTITIES")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
local list_query = os.getenv("BENCH_QUERY") or "per_page=50"
local run_tag = os.getenv("BENCH_RUN_TAG") or "wrk"
local phone_space = tonumber(os.getenv("BENCH_PHONE_SPACE") or "250000") or 250000

-- main state: hand out identities to threads ------------------------------------------------

local threads = {}
local identities = nil

local function load_identities()
  local list = {}
  for line in io.lines(identities_path) do
    local tenant, operator, inboxes, token = line:match("^(%S+)%s+(%S+)%s*(%S*)%s*(%S*)")
    if tenant then
      list[#list + 1] = { tenant = tenant, operator = operator, inboxes = inboxes, token = token }
    end
  end
  return list
end

function setup(thread)
  if identities == nil then
    identities = load_identities()
  end
  local n = #threads + 1
  local identity = identities[((n - 1) % #identities) + 1]
  thread:set("thread_no", n)
  thread:set("tenant", identity.tenant)
  thread:set("operator", identity.operator)
  thread:set("inbox_csv", identity.inboxes)
  thread:set("token", identity.token or "")
  threads[n] = thread
end

-- thread states ------------------------------------------------------------------------------

local headers, json_headers, allocate_request, static_request
local list_has_inbox = string.find(list_query, "{inbox}", 1, true) ~= nil
local inbox_list = {}
local pending_id = nil
local awaiting = nil
local sent = 0
statuses = {}

function init(args)
  headers = { ["X-Tenant-ID"] = tenant, ["X-Operator-ID"] = operator }
  json_headers = {
    ["X-Tenant-ID"] = tenant,
    ["X-Operator-ID"] = operator,
    ["Content-Type"] = "application/json",
  }
  if token ~= nil and token ~= "" then
    headers["Authorization"] = "Bearer " .. token
    json_headers["Authorization"] = "Bearer " .. token
  end
  for inbox in string.gmatch(inbox_csv or "", "[^,]+") do
    inbox_list[#inbox_list + 1] = inbox
  end
  math.randomseed(thread_no * 7919 + os.time())
  allocate_request = wrk.format("POST", "/api/v1/allocate", headers, "")
  if mode == "list" then
    static_request = wrk.format("GET", "/api/v1/conversations?" .. list_query, headers)
  end
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function request()
  if mode == "allocate" then
    return allocate_request
  elseif mode == "cycle" then
    if pending_id then
      local body = '{"conversation_id":"' .. pending_id .. '"}'
      pending_id = nil
      awaiting = "resolve"
      return wrk.format("POST", "/api/v1/resolve", json_headers, body)
    end
    awaiting = "allocate"
    return allocate_request
  elseif mode == "ingest" then
    sent = sent + 1
    local body = string.format(
      '{"inbox_id":"%s","external_conversation_id":"%s-%d-%d","customer_phone_number":"+1415%07d"}',
      inbox_list[math.random(#inbox_list)], run_tag, thread_no, sent,
      math.random(0, phone_space - 1))
    return wrk.format("POST", "/api/v1/conversations", json_headers, body)
  elseif mode == "list" then
    if list_has_inbox then
      local query = string.gsub(list_query, "{inbox}", inbox_list[math.random(#inbox_list)])
      return wrk.format("GET", "/api/v1/conversations?" .. query, headers)
    end
    return static_request
  elseif mode == "search" then
    local path = string.format("/api/v1/search?phone=%%2B1415%07d", math.random(0, phone_space - 1))
    return wrk.format("GET", path, headers)
  end
  error("unknown BENCH_MODE " .. tostring(mode))
end

function response(status, response_headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if mode == "cycle" and awaiting == "allocate" and status == 200 then
    pending_id = string.match(body, '"data":{"id":"([%x%-]+)"')
  end
end

-- main state again: the summary ----------------------------------------------------------

function done(summary, latency, requests)
  local by_status = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    if counts then
      for status, count in pairs(counts) do
        by_status[status] = (by_status[status] or 0) + count
      end
    end
  end
  local status_parts = {}
  for status, count in pairs(by_status) do
    status_parts[#status_parts + 1] = string.format('"%d":%d', status, count)
  end
  local percentiles = {}
  for _, p in ipairs({ 50, 90, 95, 99, 99.9 }) do
    percentiles[#percentiles + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,"percentiles":{%s}},'
      .. '"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(percentiles, ","),
    table.concat(status_parts, ",")))
end
