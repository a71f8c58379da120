-- wrk script for REST location ingest (bench/ingest.py runs it): each request is one driver's batch of pings
-- to POST /api/v1/driver/locations, drivers in turn (spread over wrk's threads), with its own token and
-- points around the driver's seeded position. Environment: BENCH_DRIVERS (a file of "token lat lng" lines),
-- BENCH_BATCH (points per request), BENCH_DELAY_MS (pause of each connection between requests: paces the
-- offered rate; 0 = as fast as the server answers). `done` prints one JSON line for the runner to parse.

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
   table.insert(threads, thread)
end

function init(args)
   local all = {}
   for row in io.lines(os.getenv("BENCH_DRIVERS")) do
      local token, lat, lng = row:match("^(%S+) (%S+) (%S+)$")
      table.insert(all, { token = token, lat = tonumber(lat), lng = tonumber(lng) })
   end
   -- Every thread takes its own share of the drivers, so no two threads ping for one driver.
   mine = {}
   local nthreads = tonumber(os.getenv("BENCH_THREADS"))
   for k = id, #all, nthreads do
      table.insert(mine, all[k])
   end
   next_driver = 0
   batch = tonumber(os.getenv("BENCH_BATCH"))
   pause = tonumber(os.getenv("BENCH_DELAY_MS"))
   statuses = {}
   accepted = 0
   math.randomseed(id * 7919 + os.time())
end

function delay()
   return pause
end

local function iso(ts)
   return os.date("!%Y-%m-%dT%H:%M:%S+00:00", ts)
end

function request()
   next_driver = next_driver % #mine + 1
   local driver = mine[next_driver]
   local now = os.time()
   local points = {}
   for k = 1, batch do
      local jitter_lat = (math.random() - 0.5) * 0.00006
      local jitter_lng = (math.random() - 0.5) * 0.00006
      points[k] = string.format(
         '{"lat":%.6f,"lng":%.6f,"recorded_at":"%s","accuracy":5}',
         driver.lat + jitter_lat, driver.lng + jitter_lng, iso(now - 4 * (batch - k))
      )
   end
   local body = '{"points":[' .. table.concat(points, ",") .. "]}"
   local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Token " .. driver.token }
   return wrk.format("POST", "/api/v1/driver/locations", headers, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status == 202 then
      accepted = accepted + tonumber(body:match('"accepted":%s*(%d+)') or 0)
   end
end

function done(summary, latency, requests)
   local by_status, points = {}, 0
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses")) do
         by_status[status] = (by_status[status] or 0) + n
      end
      points = points + thread:get("accepted")
   end
   local parts = {}
   for status, n in pairs(by_status) do
      table.insert(parts, string.format('"%d":%d', status, n))
   end
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"statuses":{%s},"accepted_points":%d,"latency_us":{"p50":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
      summary.errors.status, summary.errors.timeout, table.concat(parts, ","), points,
      latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean
   ))
end
