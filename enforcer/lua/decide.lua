-- ratewarden: decide one request against every rule that applies, atomically.
--
-- Phase 1 evaluates each rule without writing; phase 2 commits all of them,
-- only if every rule admits the request (all-or-nothing: a denied request
-- consumes nothing). Time is Redis TIME unless the caller passes its own.
--
-- KEYS[i]  state of rule i (all of one client's keys share a hash tag)
-- ARGV[1]  app time in microseconds, or "" to use Redis TIME
-- ARGV[2]  clock offset in microseconds (0 outside tests)
-- ARGV[3]  cost of this request in units
-- ARGV[4]  request id (unique; names log entries and concurrency leases)
-- ARGV[5]  number of rules n, then per rule four fields:
--          algorithm, limit, period in microseconds, burst (buckets) or
--          billing anchor day (monthly quota, 0 = 1st)
-- Returns  {allowed, deciding rule (1-based, 0 = none), now_us, retry_after_us,
--           headline rule, its remaining units, microseconds until it resets}

local FIXED, SW_COUNTER, SW_LOG, TOKEN_BUCKET, GCRA, CONCURRENCY, QUOTA_DAY, QUOTA_MONTH = 1, 2, 3, 4, 5, 6, 7, 8
local DAY_US = 86400000000
local floor, ceil, min, max = math.floor, math.ceil, math.min, math.max

local function num(x) return string.format('%.17g', x) end
local function ttl_ms(us) return max(1, ceil(us / 1000)) end

-- Howard Hinnant's civil-date algorithms (proleptic Gregorian, days since 1970-01-01)
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function month_shift(y, m, delta)
  local i = y * 12 + (m - 1) + delta
  return floor(i / 12), i % 12 + 1
end

-- first day of the billing month that starts on `anchor` (clamped to month length)
local function anchor_day(y, m, anchor)
  local ny, nm = month_shift(y, m, 1)
  local length = days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)
  return days_from_civil(y, m, min(anchor, length))
end

-- {window id, microseconds until the window ends} of a calendar quota
local function quota_window(algo, now, anchor)
  local today = floor(now / DAY_US)
  if algo == QUOTA_DAY then
    return today, (today + 1) * DAY_US - now
  end
  if anchor < 1 then anchor = 1 end
  local y, m = civil_from_days(today)
  local start = anchor_day(y, m, anchor)
  local stop
  if today >= start then
    local ny, nm = month_shift(y, m, 1)
    stop = anchor_day(ny, nm, anchor)
  else
    local py, pm = month_shift(y, m, -1)
    stop = start
    start = anchor_day(py, pm, anchor)
  end
  return start, stop * DAY_US - now
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) end
now = now + tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local rid = ARGV[4]
local n = tonumber(ARGV[5])

local ok_all = true
local decider, retry = 0, 0
local head, head_ratio, head_remaining, head_reset = 0, 2, 0, 0
local commits = {}

for i = 1, n do
  local base = 5 + (i - 1) * 4
  local algo = tonumber(ARGV[base + 1])
  local limit = tonumber(ARGV[base + 2])
  local period = tonumber(ARGV[base + 3])
  local extra = tonumber(ARGV[base + 4])
  local key = KEYS[i]
  local ok, remaining, reset, wait, commit

  if algo == FIXED or algo == QUOTA_DAY or algo == QUOTA_MONTH then
    local w, left
    if algo == FIXED then
      w = floor(now / period)
      left = (w + 1) * period - now
    else
      w, left = quota_window(algo, now, extra)
    end
    local h = redis.call('HMGET', key, 'w', 'c')
    local count = 0
    if tonumber(h[1]) == w then count = tonumber(h[2]) end
    ok = count + cost <= limit
    remaining = limit - count
    reset = left
    wait = left
    commit = function()
      redis.call('HSET', key, 'w', num(w), 'c', num(count + cost))
      redis.call('PEXPIRE', key, ttl_ms(left) + 1000)
    end

  elseif algo == SW_COUNTER then
    local w = floor(now / period)
    local h = redis.call('HMGET', key, 'w', 'c', 'p')
    local hw = tonumber(h[1])
    local curr, prev = 0, 0
    if hw == w then
      curr, prev = tonumber(h[2]), tonumber(h[3])
    elseif hw == w - 1 then
      prev = tonumber(h[2])
    end
    local into = now - w * period
    local estimate = prev * (period - into) / period + curr
    ok = estimate + cost <= limit
    remaining = floor(limit - estimate)
    reset = period - into
    if ok then
      wait = 0
    elseif curr + cost <= limit then
      -- the previous window's weight must fall until the request fits
      wait = (period - into) - (limit - curr - cost) * period / prev
    else
      -- not before the next window, once this one's weight has fallen enough
      wait = (period - into) + max(0, period - (limit - cost) * period / curr)
    end
    commit = function()
      redis.call('HSET', key, 'w', num(w), 'c', num(curr + cost), 'p', num(prev))
      redis.call('PEXPIRE', key, ttl_ms(2 * period))
    end

  elseif algo == SW_LOG then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now - period))
    local count = redis.call('ZCARD', key)
    ok = count + cost <= limit
    remaining = limit - count
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    reset = oldest[2] and (tonumber(oldest[2]) + period - now) or period
    if ok then
      wait = 0
    else
      local freed = redis.call('ZRANGE', key, count + cost - limit - 1, count + cost - limit - 1, 'WITHSCORES')
      wait = freed[2] and (tonumber(freed[2]) + period - now) or period
    end
    commit = function()
      for j = 1, cost do
        redis.call('ZADD', key, num(now), rid .. ':' .. j)
      end
      redis.call('PEXPIRE', key, ttl_ms(period))
    end

  elseif algo == TOKEN_BUCKET then
    local capacity = extra > 0 and extra or limit
    local rate = limit / period
    local h = redis.call('HMGET', key, 'tk', 'ts')
    local tokens = capacity
    if h[1] then
      tokens = min(capacity, tonumber(h[1]) + max(0, now - tonumber(h[2])) * rate)
    end
    ok = tokens >= cost
    remaining = floor(tokens)
    reset = (capacity - tokens) / rate
    wait = (cost - tokens) / rate
    commit = function()
      local left = tokens - cost
      redis.call('HSET', key, 'tk', num(left), 'ts', num(now))
      redis.call('PEXPIRE', key, ttl_ms((capacity - left) / rate) + 1000)
    end

  elseif algo == GCRA then
    local capacity = extra > 0 and extra or limit
    local interval = period / limit
    local tau = interval * capacity
    local h = redis.call('HMGET', key, 't', 'i')
    local tat = tonumber(h[1]) or now
    if tat < now then tat = now end
    -- the limit changed: re-express the outstanding debt at the new rate, so a raised
    -- limit takes effect at once instead of after the old arrival time
    local stored_interval = tonumber(h[2])
    if stored_interval and stored_interval ~= interval then
      tat = now + (tat - now) * interval / stored_interval
    end
    local new_tat = tat + interval * cost
    local allow_at = new_tat - tau
    ok = now >= allow_at
    remaining = floor((now + tau - tat) / interval)
    reset = tat - now
    wait = allow_at - now
    commit = function()
      redis.call('HSET', key, 't', num(new_tat), 'i', num(interval))
      redis.call('PEXPIRE', key, ttl_ms(new_tat - now) + 1000)
    end

  elseif algo == CONCURRENCY then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now))
    local count = redis.call('ZCARD', key)
    ok = count + 1 <= limit
    remaining = limit - count
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    reset = first[2] and (tonumber(first[2]) - now) or 0
    -- a slot frees when a request ends; by its lease expiry at the latest
    wait = min(reset, 1000000)
    commit = function()
      redis.call('ZADD', key, num(now + period), rid)
      redis.call('PEXPIRE', key, ttl_ms(period) + 1000)
    end

  else
    return redis.error_reply('ratewarden: unknown algorithm ' .. tostring(algo))
  end

  if ok then
    local used = (algo == CONCURRENCY) and 1 or cost
    remaining = remaining - used
    local ratio = remaining / limit
    if ratio < head_ratio then
      head, head_ratio, head_remaining, head_reset = i, ratio, remaining, reset
    end
    commits[#commits + 1] = commit
  else
    ok_all = false
    if wait > retry or decider == 0 then
      decider, retry = i, wait
    end
  end
end

if ok_all then
  for _, commit in ipairs(commits) do commit() end
  return {1, 0, now, 0, head, max(0, floor(head_remaining)), max(0, ceil(head_reset))}
end
return {0, decider, now, max(1, ceil(retry)), decider, 0, max(0, ceil(retry))}
