-- hb.lua - wrk script of the heartbeat benchmark (bench/cloud/run-cloud.sh).
-- Every request is POST /api/devices/{id}/heartbeat with that device's own
-- token, rotating over the devices of $CW_DEVICES ("device_id token" lines);
-- each wrk thread starts at another offset. $CW_HB_BODY is the body.
-- $CW_DELAY_MS > 0 makes every connection pause after each response for a
-- random time, uniform in [0, 2 x CW_DELAY_MS] (mean CW_DELAY_MS): the
-- rate-limited run at ~70 % of the maximum (wrk2 is not packaged). The pause
-- is random so that the connections do not fall into step: with one fixed
-- pause, 74 connections sent their requests in bursts of 74 and the p99
-- measured the burst queue (99 ms on PostgreSQL at 1173 req/s, against
-- 8.5 ms with random pauses at 1422 req/s, same server, same minute).
local devs = {}
local body = os.getenv("CW_HB_BODY") or ""
local delay_ms = tonumber(os.getenv("CW_DELAY_MS") or "0") or 0
local i = 0
local threads = 0

function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

function init(args)
   for line in io.lines(os.getenv("CW_DEVICES")) do
      local id, tok = line:match("^(%S+)%s+(%S+)$")
      if id then
         devs[#devs + 1] = wrk.format("POST", "/api/devices/" .. id .. "/heartbeat",
            {["Authorization"] = "Bearer " .. tok, ["Content-Type"] = "application/json"}, body)
      end
   end
   i = ((tid or 0) * 37) % #devs
   math.randomseed(os.time() + (tid or 0))
end

function request()
   i = i % #devs + 1
   return devs[i]
end

if delay_ms > 0 then
   function delay()
      return math.random(0, 2 * delay_ms)
   end
end
