"""The location index's one command per ping, without Django: drivers/locations.py queues it for every ping and
the benchmark's ingest lower bound (bench/ingest.py) times exactly it.

One driver's newest point, in one command that Redis runs atomically: the driver leaves the GEO set of the zone it
was in (read from its `pos` hash) only when it changed zone, rather than a ZREM to every zone on every ping
(O(zones) commands per ping: 32 with 33 zones). EVAL sends the text each time; Redis compiles it once and keeps it
(no EVALSHA round trip to load it first).
"""

# KEYS: pos hash, seen zset, dirty set. ARGV: member, lng, lat, seen, zone code ("" outside every zone), the
# prefix of the zones' GEO keys.
INDEX_POSITION = """
local previous = redis.call('HGET', KEYS[1], 'zone')
local zone = ARGV[5]
if previous and previous ~= '' and previous ~= zone then
  redis.call('ZREM', ARGV[6] .. previous, ARGV[1])
end
if zone ~= '' then
  redis.call('GEOADD', ARGV[6] .. zone, ARGV[2], ARGV[3], ARGV[1])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
redis.call('HSET', KEYS[1], 'lat', ARGV[3], 'lng', ARGV[2], 't', ARGV[4], 'zone', zone)
redis.call('SADD', KEYS[3], ARGV[1])
"""


def queue_position(pipe, prefix: str, member: str, lng: float, lat: float, seen: float, zone_code: str) -> None:
    """The command on a pipeline of any redis-py client (sync or async); keys under `prefix`."""
    keys = (f"{prefix}pos:{member}", f"{prefix}seen", f"{prefix}dirty")
    pipe.eval(INDEX_POSITION, len(keys), *keys, member, lng, lat, seen, zone_code, f"{prefix}geo:")
