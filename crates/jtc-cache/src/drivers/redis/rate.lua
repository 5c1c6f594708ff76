-- Cache::rate on Redis: the arithmetic of RateRecord::apply (src/rate.rs), on the server's
-- clock, over one string per rate-limited key holding the record as the array and file
-- drivers store it ("jtc-rate/1", then one "field=a,b,c,expires" per line).
-- KEYS[1]: the record. ARGV[1]: how many requests to count, one after the other (0: only
-- look). Then five arguments per rule: field, algorithm (0 fixed window, 1 sliding window,
-- 2 token bucket), limit, window in microseconds, burst.
-- Times are in microseconds. Anything else at the key (a plain counter) reads as empty.
-- Returns four numbers per rule and request, the requests in order: allowed (1/0), limit,
-- remaining, reset_after in microseconds.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local times = tonumber(ARGV[1])
local consume = times > 0
local function fmt(n) return string.format('%.0f', n) end
local function idiv(a, b) return math.floor(a / b) end

local fields = {}
local stored = redis.pcall('GET', KEYS[1])
if type(stored) == 'string' and string.sub(stored, 1, 11) == 'jtc-rate/1\n' then
  for field, a, b, c, e in string.gmatch(stored, '\n([^=\n]+)=(%-?%d+),(%-?%d+),(%-?%d+),(%-?%d+)') do
    if tonumber(e) > now then
      fields[field] = {tonumber(a), tonumber(b), tonumber(c), tonumber(e)}
    end
  end
end

local out = {}
local n = (#ARGV - 1) / 5
for _ = 1, math.max(times, 1) do
  local steps, admitted = {}, true
  for r = 0, n - 1 do
    local field = ARGV[2 + r * 5]
    local algo = tonumber(ARGV[3 + r * 5])
    local limit = tonumber(ARGV[4 + r * 5])
    local window = tonumber(ARGV[5 + r * 5])
    local burst = tonumber(ARGV[6 + r * 5])
    local old = fields[field]
    local s = {}
    if algo == 0 then
      local st
      if old and old[2] > 0 and now < old[1] + window then st = old
      else st = {now, 0, 0, now + window} end
      local count = st[2] + (consume and 1 or 0)
      local allowed
      if consume then allowed = count <= limit else allowed = count < limit end
      s.verdict = {allowed, limit, limit - count, st[1] + window - now}
      s.kept = st
      s.counted = {st[1], count, 0, st[4]}
      s.always = true
    elseif algo == 1 then
      local index = idiv(now, window)
      local st
      if old and old[1] == index then st = {index, old[2], old[3]}
      elseif old and old[1] + 1 == index then st = {index, 0, old[2]}
      else st = {index, 0, 0} end
      st[4] = (index + 2) * window
      local elapsed = now - index * window
      local left = window - elapsed
      local estimate = idiv(st[3] * left, window) + st[2]
      local allowed = estimate < limit
      local reset = left
      if not allowed and limit > 0 then
        if st[2] < limit then
          reset = math.max(window + 1 - math.ceil((limit - st[2]) * window / st[3]) - elapsed, 1)
        else
          reset = left + math.max(window + 1 - math.ceil(limit * window / st[2]), 0)
        end
      end
      s.verdict = {allowed, limit, limit - estimate - (consume and 1 or 0), reset}
      s.kept = st
      s.counted = {index, st[2] + 1, st[3], st[4]}
      s.always = false
    else
      local interval = math.max(idiv(window, math.max(limit, 1)), 1)
      local capacity = interval * burst
      local tat = now
      if old then tat = math.max(old[1], now) end
      local nxt = tat + interval
      if consume then
        if nxt - now <= capacity then
          s.verdict = {true, burst, idiv(capacity - (nxt - now), interval), nxt - now}
        else
          s.verdict = {false, burst, 0, nxt - now - capacity}
        end
      else
        local avail = idiv(capacity - (tat - now), interval)
        local wait = tat - now
        if avail <= 0 then wait = nxt - now - capacity end
        s.verdict = {avail > 0, burst, avail, wait}
      end
      local taken = 0
      if old then taken = old[2] end
      s.kept = {tat, taken, 0, tat}
      s.counted = {nxt, taken + 1, 0, nxt}
      s.always = false
    end
    s.field = field
    if not s.verdict[1] then admitted = false end
    steps[#steps + 1] = s
  end

  for _, s in ipairs(steps) do
    if consume then
      if admitted or s.always then fields[s.field] = s.counted else fields[s.field] = s.kept end
    end
    local v = s.verdict
    out[#out + 1] = v[1] and 1 or 0
    out[#out + 1] = math.max(v[2], 0)
    out[#out + 1] = math.max(v[3], 0)
    out[#out + 1] = math.ceil(math.max(v[4], 0) / 1000) * 1000
  end
end

if consume then
  local text, last = 'jtc-rate/1', 0
  for field, st in pairs(fields) do
    if st[4] > now then
      text = text .. '\n' .. field .. '=' .. fmt(st[1]) .. ',' .. fmt(st[2]) .. ',' .. fmt(st[3]) .. ',' .. fmt(st[4])
      if st[4] > last then last = st[4] end
    end
  end
  if last > 0 then
    redis.call('SET', KEYS[1], text, 'PX', math.max(math.ceil((last - now) / 1000), 1))
  else
    redis.call('DEL', KEYS[1])
  end
end
return out
