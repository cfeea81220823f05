-- wrk script for the reload tests: counts responses by body and by status class, per thread,
-- and prints one RESULT line of JSON when wrk stops (SIGINT or end of its duration).
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    bodies = {}
    statuses = {}
end

function response(status, headers, body)
    bodies[body] = (bodies[body] or 0) + 1
    local class = tostring(math.floor(status / 100)) .. "xx"
    statuses[class] = (statuses[class] or 0) + 1
end

local function quote(s)
    return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
    local b, s = {}, {}
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("bodies")) do b[k] = (b[k] or 0) + v end
        for k, v in pairs(t:get("statuses")) do s[k] = (s[k] or 0) + v end
    end
    local function obj(t)
        local parts = {}
        for k, v in pairs(t) do table.insert(parts, quote(k) .. ":" .. v) end
        return "{" .. table.concat(parts, ",") .. "}"
    end
    local e = summary.errors
    io.write(string.format(
        'RESULT {"requests":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
        '"bodies":%s,"statuses":%s}\n',
        summary.requests, e.connect, e.read, e.write, e.status, e.timeout, obj(b), obj(s)))
end
