-- ratewarden: decide one request against every rule that applies, atomically;
-- or, after its response, settle the rules that count by the response.
--
-- Deciding: phase 1 evaluates each rule without writing; phase 2 commits all
-- of them, only if every enforcing rule admits the request (all-or-nothing: a
-- denied request consumes nothing). A shadow rule never denies: it is counted
-- when it would admit, and the first one that would deny is reported. A
-- deferred rule is checked but not counted: settling counts it later, if the
-- response matched. Time is Redis TIME unless the caller passes its own.
--
-- KEYS[i]  state of rule i
-- ARGV[1]  "d" to decide, "s" to settle
-- ARGV[2]  app time in microseconds, or "" to use Redis TIME
-- ARGV[3]  clock offset in microseconds (0 outside tests)
-- ARGV[4]  cost of the request in units
-- ARGV[5]  request id (unique; names log entries and concurrency leases)
-- ARGV[6]  settling: the decision's time in microseconds ("" when deciding)
-- ARGV[7]  number of rules n, then per rule five fields: algorithm, limit,
--          period in microseconds, burst (buckets) or billing anchor day
--          (monthly quota, 0 = 1st), flags (1 shadow, 2 deferred, 4 never the
--          headline, 8 settle by refunding instead of counting)
-- Returns  deciding: {allowed, deciding rule (1-based, 0 = none), now_us,
--           retry_after_us, headline rule, its remaining units, microseconds
--           until it resets, first shadow rule that would deny (0 = none), its
--           retry_after_us, tightest quota (0 = none), its remaining, its reset}
--          settling: the number of rules settled

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

-- evaluate(algo, key, limit, period, extra, cost, now, rid) -> ok, remaining, reset, wait,
-- commit (a function writing the admission). One function with a branch per algorithm:
-- everything a script defines is built again on every call, so it defines little.
local function evaluate(algo, key, limit, period, extra, cost, now, rid)
  if algo == FIXED or algo == QUOTA_DAY or algo == QUOTA_MONTH then
    local w, left
    if algo == FIXED then
      w = floor(now / period)
      left = (w + 1) * period - now
    else
      w, left = quota_window(algo, now, extra)
    end
    local h = redis.call('HMGET', key, 'w', 'c')
    local count, fresh = 0, true
    if tonumber(h[1]) == w then count, fresh = tonumber(h[2]), false end
    return count + cost <= limit, limit - count, left, left, function()
      redis.call('HSET', key, 'w', num(w), 'c', num(count + cost))
      if fresh then redis.call('PEXPIRE', key, ttl_ms(left) + 1000) end  -- set once per window
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
    local ok = estimate + cost <= limit
    local wait = 0
    if ok then
      wait = 0
    elseif curr + cost <= limit then
      -- the previous window's weight must fall until the request fits
      wait = (period - into) - (limit - curr - cost) * period / prev
    else
      -- not before the next window, once this one's weight has fallen enough
      wait = (period - into) + max(0, period - (limit - cost) * period / curr)
    end
    return ok, floor(limit - estimate), period - into, wait, function()
      redis.call('HSET', key, 'w', num(w), 'c', num(curr + cost), 'p', num(prev))
      -- set once per window: from its first admission it outlives the next window
      if hw ~= w then redis.call('PEXPIRE', key, ttl_ms(2 * period)) end
    end

  elseif algo == SW_LOG then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now - period))
    local count = redis.call('ZCARD', key)
    local ok = count + cost <= limit
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local reset = oldest[2] and (tonumber(oldest[2]) + period - now) or period
    local wait = 0
    if not ok then
      local freed = redis.call('ZRANGE', key, count + cost - limit - 1, count + cost - limit - 1, 'WITHSCORES')
      wait = freed[2] and (tonumber(freed[2]) + period - now) or period
    end
    return ok, limit - count, reset, wait, function()
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
    return tokens >= cost, floor(tokens), (capacity - tokens) / rate, (cost - tokens) / rate, function()
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
    return now >= allow_at, floor((now + tau - tat) / interval), tat - now, allow_at - now, function()
      redis.call('HSET', key, 't', num(new_tat), 'i', num(interval))
      redis.call('PEXPIRE', key, ttl_ms(new_tat - now) + 1000)
    end

  elseif algo == CONCURRENCY then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now))
    local count = redis.call('ZCARD', key)
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local reset = first[2] and (tonumber(first[2]) - now) or 0
    -- a slot frees when a request ends; by its lease expiry at the latest
    return count + 1 <= limit, limit - count, reset, min(reset, 1000000), function()
      redis.call('ZADD', key, num(now + period), rid)
      redis.call('PEXPIRE', key, ttl_ms(period) + 1000)
    end
  end
  return nil
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[2] ~= '' then now = tonumber(ARGV[2]) end
now = now + tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local rid = ARGV[5]
local n = tonumber(ARGV[7])
local SHADOW, DEFERRED, QUIET, REFUND = 1, 2, 4, 8

local function flag(flags, bit) return flags % (2 * bit) >= bit end

if ARGV[1] == 's' then
  -- refund: give back what the decision at `decided` took, if its window still holds it
  local function refund(algo, key, limit, period, extra, decided)
    if algo == FIXED or algo == QUOTA_DAY or algo == QUOTA_MONTH then
      local w = (algo == FIXED) and floor(decided / period) or quota_window(algo, decided, extra)
      local h = redis.call('HMGET', key, 'w', 'c')
      if tonumber(h[1]) == w then
        redis.call('HSET', key, 'c', num(max(0, tonumber(h[2]) - cost)))
      end
    elseif algo == SW_COUNTER then
      local w = floor(decided / period)
      local h = redis.call('HMGET', key, 'w', 'c', 'p')
      local hw = tonumber(h[1])
      if hw == w then
        redis.call('HSET', key, 'c', num(max(0, tonumber(h[2]) - cost)))
      elseif hw == w + 1 then
        redis.call('HSET', key, 'p', num(max(0, tonumber(h[3]) - cost)))
      end
    elseif algo == SW_LOG then
      for j = 1, cost do
        redis.call('ZREM', key, rid .. ':' .. j)
      end
    elseif algo == TOKEN_BUCKET then
      local capacity = extra > 0 and extra or limit
      local rate = limit / period
      local h = redis.call('HMGET', key, 'tk', 'ts')
      if h[1] then
        local tokens = min(capacity, tonumber(h[1]) + max(0, now - tonumber(h[2])) * rate + cost)
        redis.call('HSET', key, 'tk', num(tokens), 'ts', num(now))
      end
    elseif algo == GCRA then
      local h = redis.call('HMGET', key, 't', 'i')
      if h[1] then
        local interval = tonumber(h[2]) or period / limit
        redis.call('HSET', key, 't', num(max(now, tonumber(h[1]) - interval * cost)))
      end
    end
  end

  local decided = tonumber(ARGV[6]) + tonumber(ARGV[3])
  for i = 1, n do
    local base = 7 + (i - 1) * 5
    local algo, limit, period, extra = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]),
      tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
    if flag(tonumber(ARGV[base + 5]), REFUND) then
      refund(algo, KEYS[i], limit, period, extra, decided)
    else  -- a deferred rule: count it now, as if admitted at the response
      local _, _, _, _, commit = evaluate(algo, KEYS[i], limit, period, extra, cost, now, rid .. ':s')
      commit()
    end
  end
  return n
end

local ok_all = true
local decider, retry = 0, 0
local head, head_ratio, head_remaining, head_reset = 0, 2, 0, 0
local shadow_rule, shadow_retry = 0, 0
local quota, quota_ratio, quota_remaining, quota_reset = 0, 2, 0, 0
local commits = {}

for i = 1, n do
  local base = 7 + (i - 1) * 5
  local algo = tonumber(ARGV[base + 1])
  local limit = tonumber(ARGV[base + 2])
  local flags = tonumber(ARGV[base + 5])
  local ok, remaining, reset, wait, commit = evaluate(algo, KEYS[i], limit, tonumber(ARGV[base + 3]),
                                                      tonumber(ARGV[base + 4]), cost, now, rid)
  if ok == nil then
    return redis.error_reply('ratewarden: unknown algorithm ' .. tostring(algo))
  end
  local shadow = flags > 0 and flag(flags, SHADOW)
  if ok then
    if flags == 0 or not flag(flags, DEFERRED) then
      remaining = remaining - ((algo == CONCURRENCY) and 1 or cost)
      commits[#commits + 1] = commit
    end
    if flags == 0 or not (shadow or flag(flags, QUIET)) then
      local ratio = remaining / limit
      if ratio < head_ratio then
        head, head_ratio, head_remaining, head_reset = i, ratio, remaining, reset
      end
      if algo >= QUOTA_DAY and ratio < quota_ratio then
        quota, quota_ratio, quota_remaining, quota_reset = i, ratio, remaining, reset
      end
    end
  elseif shadow then
    if shadow_rule == 0 then shadow_rule, shadow_retry = i, wait end
  else
    ok_all = false
    if wait > retry or decider == 0 then
      decider, retry = i, wait
    end
  end
end

local shadow_us = shadow_rule > 0 and max(1, ceil(shadow_retry)) or 0
if ok_all then
  for _, commit in ipairs(commits) do commit() end
  return {1, 0, now, 0, head, max(0, floor(head_remaining)), max(0, ceil(head_reset)), shadow_rule, shadow_us,
          quota, max(0, floor(quota_remaining)), max(0, ceil(quota_reset))}
end
return {0, decider, now, max(1, ceil(retry)), decider, 0, max(0, ceil(retry)), shadow_rule, shadow_us, 0, 0, 0}
