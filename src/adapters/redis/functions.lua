#!lua name=fortary
--[[
  The `fortary` Redis function library: the atomic writes behind API keys and users (docs/redis-contract.md).

  Every function that changes something also advances `fortary:events:seq` and publishes one event on
  `fortary:events` in the same atomic step, so a sidecar either sees the change announced with the next sequence
  number or notices the gap and resyncs. Revocation (`revokedAt`) is written with HSETNX only and never cleared.

  The functions name ids, not Redis keys, in KEYS[1] (the interface is `FCALL fortary_revoke 1 <keyId>`), and touch
  several keys each: this library is for standalone Redis and Sentinel, not Redis Cluster.

  Bump VERSION on every change, together with FUNCTION_LIBRARY_VERSION in function-library.ts (dot-separated
  integers, compared numerically): loaders replace the library only when the version they find is OLDER than
  theirs, so a newer library stays loaded while older pods still run. Keep every function and argument older code
  calls: only add functions or optional arguments.
]]

local VERSION = '3'

local EVENTS_CHANNEL = 'fortary:events'
local SEQ_KEY = 'fortary:events:seq'

local function key_hash(key_id)
  return 'fortary:key:' .. key_id
end

local function user_string(user_id)
  return 'fortary:user:' .. user_id
end

local function user_keys_set(user_id)
  return 'fortary:user-keys:' .. user_id
end

-- Lua numbers are doubles; '%d' keeps epoch ms and sequence numbers integral (tostring/cjson could print 1e+15).
local function int(n)
  return string.format('%d', n)
end

-- Epoch ms from the server's clock. Functions replicate their effects, so TIME before a write is allowed.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Advances the sequence and publishes {"seq","type","id","at"}; returns the number of receivers.
local function publish(event_type, id, at)
  local seq = redis.call('INCR', SEQ_KEY)
  local message = '{"seq":' .. int(seq) .. ',"type":' .. cjson.encode(event_type) .. ',"id":' .. cjson.encode(id)
    .. ',"at":' .. int(at) .. '}'
  return redis.call('PUBLISH', EVENTS_CHANNEL, message)
end

local function fail(message)
  return redis.error_reply('ERR ' .. message)
end

local function decode_object(text)
  if type(text) ~= 'string' then
    return nil
  end
  local ok, value = pcall(cjson.decode, text)
  if not ok or type(value) ~= 'table' then
    return nil
  end
  return value
end

-- Same rules as KEY_ID_PATTERN (src/core/token.ts) and USER_ID_PATTERN (src/core/records.ts).
local function is_key_id(id)
  return type(id) == 'string' and #id == 12 and string.match(id, '^%w+$') ~= nil
end

local function is_user_id(id)
  return type(id) == 'string' and #id <= 128 and string.match(id, '^%w[%w_%.@%-]*$') ~= nil
end

-- A JSON array of strings; cjson would encode an empty Lua table as {} instead.
local function encode_array(list)
  if type(list) ~= 'table' then
    return '[]'
  end
  local parts = {}
  for i = 1, #list do
    parts[i] = cjson.encode(list[i])
  end
  return '[' .. table.concat(parts, ',') .. ']'
end

-- Marks every existing key of the user revoked (the first revocation time is kept).
local function revoke_user_keys(user_id, at)
  local ids = redis.call('SMEMBERS', user_keys_set(user_id))
  for _, key_id in ipairs(ids) do
    local hash = key_hash(key_id)
    if redis.call('EXISTS', hash) == 1 then
      redis.call('HSETNX', hash, 'revokedAt', int(at))
    end
  end
end

-- FCALL fortary_revoke 1 <keyId>  ->  receivers
local function revoke(keys)
  local key_id = keys[1]
  if key_id == nil then
    return fail('usage: FCALL fortary_revoke 1 <keyId>')
  end
  local hash = key_hash(key_id)
  if redis.call('EXISTS', hash) == 0 then
    return fail('unknown key ' .. key_id)
  end
  local at = now_ms()
  redis.call('HSETNX', hash, 'revokedAt', int(at))
  return publish('key.revoked', key_id, at)
end

-- FCALL fortary_put_key 1 <keyId> <recordJson> create|edit  ->  receivers
local function put_key(keys, args)
  local key_id, json, mode = keys[1], args[1], args[2]
  if key_id == nil or json == nil or (mode ~= 'create' and mode ~= 'edit') then
    return fail('usage: FCALL fortary_put_key 1 <keyId> <recordJson> create|edit')
  end
  if not is_key_id(key_id) then
    return fail('key id must be 12 base62 characters')
  end
  local record = decode_object(json)
  if record == nil then
    return fail('record is not a JSON object')
  end
  if record.id ~= key_id then
    return fail('record id does not match the key id')
  end
  if not is_user_id(record.userId) then
    return fail('record userId is not a user id')
  end
  local hash = key_hash(key_id)
  if mode == 'create' then
    if redis.call('EXISTS', hash) == 1 then
      return fail('key exists')
    end
    -- Checked here, atomically, so a key cannot be created for a user deactivated a moment earlier.
    local owner = decode_object(redis.call('GET', user_string(record.userId)))
    if owner == nil then
      return fail('unknown user ' .. record.userId)
    end
    if owner.active ~= true then
      return fail('user is not active')
    end
  else
    if redis.call('EXISTS', hash) == 0 then
      return fail('unknown key ' .. key_id)
    end
    if redis.call('HEXISTS', hash, 'revokedAt') == 1 then
      return fail('key is revoked')
    end
    -- A key belongs to its creator and its secret is never editable.
    local current = decode_object(redis.call('HGET', hash, 'record'))
    if current == nil then
      return fail('stored record is not JSON; revoke the key and create a new one')
    end
    if current.userId ~= record.userId then
      return fail('the owner of a key cannot change')
    end
    if current.secretHash ~= record.secretHash then
      return fail('the secret of a key cannot change')
    end
  end
  -- Only the record field: revokedAt belongs to revocation alone.
  redis.call('HSET', hash, 'record', json)
  redis.call('SADD', user_keys_set(record.userId), key_id)
  return publish('key.updated', key_id, now_ms())
end

-- FCALL fortary_put_user 1 <userId> <recordJson>  ->  receivers
-- A record with active=false is a deactivation: the user's keys are revoked and user.deactivated is published.
local function put_user(keys, args)
  local user_id, json = keys[1], args[1]
  if user_id == nil or json == nil then
    return fail('usage: FCALL fortary_put_user 1 <userId> <recordJson>')
  end
  if not is_user_id(user_id) then
    return fail('not a user id')
  end
  local user = decode_object(json)
  if user == nil then
    return fail('record is not a JSON object')
  end
  if user.id ~= user_id then
    return fail('record id does not match the user id')
  end
  if type(user.active) ~= 'boolean' then
    return fail('record active must be a boolean')
  end
  redis.call('SET', user_string(user_id), json)
  local at = now_ms()
  if user.active == false then
    revoke_user_keys(user_id, at)
    return publish('user.deactivated', user_id, at)
  end
  return publish('user.updated', user_id, at)
end

-- The stored user with active=false and updatedAt=at; unknown fields are kept, an unreadable record is replaced.
local function inactive_user_json(user_id, text, at)
  local user = decode_object(text) or {}
  local fields = {
    '"v":1',
    '"id":' .. cjson.encode(user_id),
    '"active":false',
    '"developerVaults":' .. encode_array(user.developerVaults),
    '"updatedAt":' .. int(at),
  }
  local known = { v = true, id = true, active = true, developerVaults = true, updatedAt = true }
  local extra = {}
  for name in pairs(user) do
    if type(name) == 'string' and not known[name] then
      extra[#extra + 1] = name
    end
  end
  table.sort(extra)
  for _, name in ipairs(extra) do
    fields[#fields + 1] = cjson.encode(name) .. ':' .. cjson.encode(user[name])
  end
  return '{' .. table.concat(fields, ',') .. '}'
end

-- FCALL fortary_deactivate_user 1 <userId>  ->  receivers
local function deactivate_user(keys)
  local user_id = keys[1]
  if user_id == nil then
    return fail('usage: FCALL fortary_deactivate_user 1 <userId>')
  end
  local text = redis.call('GET', user_string(user_id))
  if not text then
    return fail('unknown user ' .. user_id)
  end
  local at = now_ms()
  redis.call('SET', user_string(user_id), inactive_user_json(user_id, text, at))
  revoke_user_keys(user_id, at)
  return publish('user.deactivated', user_id, at)
end

-- FCALL fortary_rotate_key 2 <oldKeyId> <newKeyId> <oldRecordAsRead> <oldRecordRotated> <newRecord>  ->  receivers
-- Creates the successor and shortens the old key's expiry in one step, linking both (rotatedTo/rotatedFrom). The
-- caller builds both records; this checks them against the old record as it was read (a concurrent edit makes the
-- caller read again) and refuses anything a rotation must not do: revive, extend, re-own or re-key the old key.
local function rotate_key(keys, args)
  local old_id, new_id = keys[1], keys[2]
  local as_read, old_json, new_json = args[1], args[2], args[3]
  if old_id == nil or new_id == nil or new_json == nil then
    return fail('usage: FCALL fortary_rotate_key 2 <oldKeyId> <newKeyId> <oldRecordAsRead> <oldRecordRotated> <newRecord>')
  end
  if not is_key_id(old_id) or not is_key_id(new_id) or old_id == new_id then
    return fail('key ids must be two different sets of 12 base62 characters')
  end
  local old_hash, new_hash = key_hash(old_id), key_hash(new_id)
  if redis.call('EXISTS', old_hash) == 0 then
    return fail('unknown key ' .. old_id)
  end
  if redis.call('HEXISTS', old_hash, 'revokedAt') == 1 then
    return fail('key is revoked')
  end
  if redis.call('HGET', old_hash, 'record') ~= as_read then
    return fail('key changed while rotating; try again')
  end
  local current, old, new = decode_object(as_read), decode_object(old_json), decode_object(new_json)
  if current == nil or old == nil or new == nil then
    return fail('record is not a JSON object')
  end
  if type(current.revokedAt) == 'number' then
    return fail('key is revoked')
  end
  local now = now_ms()
  if type(current.expiresAt) == 'number' and current.expiresAt <= now then
    return fail('key has expired')
  end
  if type(current.rotatedTo) == 'string' then
    return fail('key was already rotated to ' .. current.rotatedTo)
  end
  if old.id ~= old_id or new.id ~= new_id then
    return fail('record id does not match the key id')
  end
  if old.userId ~= current.userId or new.userId ~= current.userId then
    return fail('the owner of a key cannot change')
  end
  if old.secretHash ~= current.secretHash then
    return fail('the secret of a key cannot change')
  end
  if old.rotatedTo ~= new_id or new.rotatedFrom ~= old_id then
    return fail('the records must link each other (rotatedTo, rotatedFrom)')
  end
  if type(old.expiresAt) ~= 'number' or
      (type(current.expiresAt) == 'number' and old.expiresAt > current.expiresAt) then
    return fail('the grace period cannot extend the key')
  end
  if redis.call('EXISTS', new_hash) == 1 then
    return fail('key exists')
  end
  local owner = decode_object(redis.call('GET', user_string(current.userId)))
  if owner == nil then
    return fail('unknown user ' .. tostring(current.userId))
  end
  if owner.active ~= true then
    return fail('user is not active')
  end
  redis.call('HSET', new_hash, 'record', new_json)
  redis.call('SADD', user_keys_set(current.userId), new_id)
  redis.call('HSET', old_hash, 'record', old_json)
  publish('key.updated', new_id, now)
  return publish('key.updated', old_id, now)
end

local LAST_USED_PREFIX = 'fortary:last-used:'

-- FCALL fortary_touch_last_used 1 fortary:last-used:<keyId> <atMs> <ip> <vault>  ->  1 written, 0 kept (not newer)
-- Written by the sidecars, at most once per key per FORTARY_LAST_USED_FLUSH_S each. Unlike the functions above it
-- names the real Redis key, so a sidecar's ACL can allow it on `fortary:last-used:*` and nothing else. The later
-- time wins (ties keep what is there), so several sidecars, or a late batch, never move a key's last use back.
-- No event: nothing a decision reads changes.
local function touch_last_used(keys, args)
  local key, at, ip, vault = keys[1], tonumber(args[1]), args[2], args[3]
  if key == nil or at == nil or ip == nil or vault == nil then
    return fail('usage: FCALL fortary_touch_last_used 1 fortary:last-used:<keyId> <atMs> <ip> <vault>')
  end
  if string.sub(key, 1, #LAST_USED_PREFIX) ~= LAST_USED_PREFIX or not is_key_id(string.sub(key, #LAST_USED_PREFIX + 1)) then
    return fail('not a last-used key: ' .. key)
  end
  if at < 0 or at ~= math.floor(at) or at > 1e15 then
    return fail('at must be epoch milliseconds')
  end
  -- An address is at most 45 characters, a vault id 64: anything longer is not what a sidecar writes.
  if #ip > 64 or #vault > 64 then
    return fail('ip or vault too long')
  end
  local current = tonumber(redis.call('HGET', key, 'at'))
  if current ~= nil and current >= at then
    return 0
  end
  redis.call('HSET', key, 'at', int(at), 'ip', ip, 'vault', vault)
  return 1
end

redis.register_function('fortary_revoke', revoke)
redis.register_function('fortary_rotate_key', rotate_key)
redis.register_function('fortary_touch_last_used', touch_last_used)
redis.register_function('fortary_put_key', put_key)
redis.register_function('fortary_put_user', put_user)
redis.register_function('fortary_deactivate_user', deactivate_user)
redis.register_function({
  function_name = 'fortary_version',
  callback = function()
    return VERSION
  end,
  flags = { 'no-writes' },
})
