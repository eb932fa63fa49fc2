-- Makes one listing a server's current listing, all or nothing, within the
-- registry's bounds (host/state/src/tools.rs has the rules, keys.rs the
-- layout). The host has checked what depends on the listing alone (names,
-- duplicates, size); the bounds that depend on what is kept are counted
-- here, so replicas recording at once never pass them.
--
-- KEYS[1]: servers      hash: server -> digest of its current listing
-- KEYS[2]: first        hash of this server: tool name -> first listing (JSON)
-- KEYS[3]: current      hash of this server: tool name -> definition (JSON)
-- KEYS[4]: listers      hash: tool name -> JSON array of servers listing it
-- ARGV[1]: JSON {server, digest, max_servers, max_tools,
--                tools: [{name, first, current}]}  (first and current as
--                stored: the host encodes them, so the script never
--                re-encodes a definition or a timestamp)
-- Returns {"ok"} (also when the listing changes nothing, which writes
-- nothing), {"too_many_servers"} or {"too_many_tools"}.

local listing = cjson.decode(ARGV[1])
local server = listing.server

local known = redis.call('HGET', KEYS[1], server)
if known == listing.digest or (not known and #listing.tools == 0) then
  return {'ok'}
end
if not known and redis.call('HLEN', KEYS[1]) >= listing.max_servers then
  return {'too_many_servers'}
end
local remembered = redis.call('HLEN', KEYS[2])
for _, tool in ipairs(listing.tools) do
  if redis.call('HEXISTS', KEYS[2], tool.name) == 0 then
    remembered = remembered + 1
  end
end
if remembered > listing.max_tools then
  return {'too_many_tools'}
end

local function listers(name)
  local json = redis.call('HGET', KEYS[4], name)
  if json then return cjson.decode(json) end
  return {}
end

-- An empty Lua table would encode as an object: a name nobody lists loses
-- its field instead.
local function set_listers(name, servers)
  if #servers == 0 then
    redis.call('HDEL', KEYS[4], name)
  else
    redis.call('HSET', KEYS[4], name, cjson.encode(servers))
  end
end

local listed = {}
for _, tool in ipairs(listing.tools) do
  listed[tool.name] = true
  redis.call('HSETNX', KEYS[2], tool.name, tool.first)
  if redis.call('HSET', KEYS[3], tool.name, tool.current) == 1 then
    local servers = listers(tool.name)
    table.insert(servers, server)
    set_listers(tool.name, servers)
  end
end

for _, name in ipairs(redis.call('HKEYS', KEYS[3])) do
  if not listed[name] then
    redis.call('HDEL', KEYS[3], name)
    local servers = listers(name)
    for i = #servers, 1, -1 do
      if servers[i] == server then table.remove(servers, i) end
    end
    set_listers(name, servers)
  end
end

redis.call('HSET', KEYS[1], server, listing.digest)
return {'ok'}
