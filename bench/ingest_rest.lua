-- wrk script for REST location ingest (bench/ingest.py runs it): each request is one driver's batch of pings
-- to POST /api/v1/driver/locations, drivers in turn (spread over wrk's threads), with its own token and
-- points around the driver's seeded position. Environment: BENCH_DRIVERS (a file of "token lat lng" lines),
-- BENCH_BATCH (points per request), BENCH_INTERVAL_MS (this thread's time between request starts: paces the
-- offered rate on a schedule; 0 = as fast as the server answers). `done` prints one JSON line for the runner.
--
-- Pacing is by the clock, not a fixed pause after each answer: a pause after the answer made each connection's
-- rate 1 / (pause + latency), so the offered rate fell with the server's latency and a slower server was offered
-- less (2,013 of 2,500 points/s in round 2 was that cap). A connection whose answer comes back waits until its
-- thread's next start time; a start more than 100 ms late is dropped (the achieved rate shows it), so a server
-- that falls behind is not hit by a burst of catch-up requests. Latency is from a request's sending to its answer.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } relay_timespec;
int clock_gettime(int clock_id, relay_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("relay_timespec")

local function now_ms()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
   return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

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
   interval = tonumber(os.getenv("BENCH_INTERVAL_MS"))
   next_start = nil
   statuses = {}
   accepted = 0
   math.randomseed(id * 7919 + os.time())
end

function delay()
   if interval == 0 then
      return 0
   end
   local now = now_ms()
   next_start = math.max((next_start or now) + interval, now - 100)
   return math.max(0, next_start - now)
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
