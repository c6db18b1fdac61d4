-- hb.lua - wrk script of the heartbeat benchmark (bench/cloud/run-cloud.sh).
-- Every request is POST /api/devices/{id}/heartbeat with that device's own
-- token, rotating over the devices of $CW_DEVICES ("device_id token" lines);
-- each wrk thread starts at another offset. $CW_HB_BODY is the body.
-- $CW_DELAY_MS > 0 makes every connection wait that long after each response
-- (the rate-limited run at ~70 % of the maximum; wrk2 is not packaged).
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
end

function request()
   i = i % #devs + 1
   return devs[i]
end

if delay_ms > 0 then
   function delay()
      return delay_ms
   end
end
