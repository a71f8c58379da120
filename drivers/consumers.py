"""`/ws/driver/?token=<key>`: a driver's own message stream, with `resume` from the stored stream."""

import time
from collections import deque

from channels.db import database_sync_to_async

from core.throttling import UserThrottle
from core.ws import CLOSE_UNAUTHORIZED, AuthenticatedConsumer
from drivers import credentials, locations
from drivers.api import PointInput, points_from
from drivers.ingest import parse_point
from drivers.models import DriverMessage, DriverState
from drivers.notifications import driver_group

REPLAY_BATCH = 500  # stored messages read at a time by a `resume`
DELIVERED_KEPT = 64  # a resume right after a reconnect meets at most a few live pushes
# The sockets' credentials and their drivers' states, in one query (drivers/credentials.py).
_credentials = database_sync_to_async(credentials.load_many)


@database_sync_to_async
def _missed(driver_id, after_seq: int) -> list[dict]:
    rows = DriverMessage.objects.filter(driver_id=driver_id, seq__gt=after_seq).order_by("seq")[:REPLAY_BATCH]
    return [message.envelope() for message in rows]


class DriverConsumer(AuthenticatedConsumer):
    kind = "driver"
    driver_id: str | None = None
    last_seq = 0
    resumed_after = 0  # the app has the stream up to here (the after_seq of its last `resume`)
    delivered: deque | None = None  # the last DELIVERED_KEPT seqs this socket sent (made at its first message)
    # Whether pings are kept (an offline driver's are dropped): read with the credentials at connect and at every
    # credential recheck (every 30 s, all of the process's driver sockets in one query), and kept current by
    # `driver.state` messages, so a ping costs no query.
    online = False
    states_heard = 0  # `driver.state` messages received: one received while a check read is newer than its read
    # A socket's locations have the API's per-user budget (API_THROTTLE_RATE), counted here in memory, as the REST
    # route counts its pings in Redis (a round trip a socket's location does without): one app sending thousands a
    # second held a server process's loop. Locations over it are answered `throttled` and not recorded.
    budget_ends = 0.0  # when the current window of the budget ends (time.time())
    budget_left = 0

    async def current_user(self):
        # Drivers' apps authenticate by token only; the token must be a driver's.
        entry = (await _credentials([self.token_key])).get(self.token_key) if self.token_key else None
        return self._hold(entry)

    @classmethod
    async def recheck_all(cls, sockets):
        # A process's driver sockets in one query, not one per socket on the process's one database thread.
        heard = [socket.states_heard for socket in sockets]
        entries = await _credentials([socket.token_key for socket in sockets])
        return [
            socket
            for socket, before in zip(sockets, heard, strict=True)
            if socket._hold(entries.get(socket.token_key), state_read=socket.states_heard == before) is None
        ]

    def _hold(self, entry, *, state_read: bool = True):
        """The user id of a valid credential, or None. The driver's state is kept from it unless the socket heard
        a newer one meanwhile (`state_read` False): the read ran in a thread while the socket went on."""
        if entry is None:
            return None
        self.driver_id = entry.driver_id
        if state_read:
            self.online = entry.online
        return entry.user_id

    async def connect(self):
        if await self.authenticate() is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.group = driver_group(self.driver_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await super().disconnect(code)
        if self.driver_id is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        kind, data = content.get("type"), content.get("data") or {}
        handler = {"location": self.on_location, "resume": self.on_resume}.get(kind)
        if handler is None:
            await self.send_error("unknown_type", f"Unknown message type {kind!r}; expected location or resume.")
        elif not isinstance(data, dict):
            await self.send_error("invalid", f"{kind}: data must be a JSON object.")
        else:
            await handler(data)

    async def on_location(self, data):
        if not self._within_budget():
            wait_s = max(1, round(self.budget_ends - time.time()))
            await self.send_error(
                "throttled", f"Too many locations on this socket: not recorded. Try again in {wait_s} s."
            )
            return
        # The lean validator takes the plain form on the event loop; the serializer decides the rest and words
        # the errors.
        point = parse_point(data)
        if point is None:
            serializer = PointInput(data=data)
            if not serializer.is_valid():
                await self.send_error("invalid", "The location is not valid.", fields=serializer.errors)
                return
            point = points_from([serializer.validated_data])[0]
        await locations.arecord_positions(self.driver_id, [point], online=self.online)

    def _within_budget(self) -> bool:
        now = time.time()
        if now >= self.budget_ends:
            throttle = UserThrottle()
            self.budget_ends, self.budget_left = now + throttle.duration, throttle.num_requests
        self.budget_left -= 1
        return self.budget_left >= 0

    async def on_resume(self, data):
        after = data.get("after_seq")
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            await self.send_error("invalid", "resume needs data.after_seq, a whole number ≥ 0.")
            return
        self.resumed_after = after
        # Messages are handled one at a time, so pushes that arrive meanwhile wait and are de-duplicated by seq.
        # All that was missed, a batch at a time: the app cannot tell a first batch from the whole.
        while missed := await _missed(self.driver_id, after):
            for envelope in missed:
                await self._deliver(envelope)
            if len(missed) < REPLAY_BATCH:
                break
            after = missed[-1]["seq"]

    async def stream_message(self, event):
        await self._deliver(event["message"])

    def reply_seq(self) -> int:
        # The stream's numbers are its stored messages' (`resume` replays by them): a reply carries the number of
        # the last message delivered before it and takes none of theirs.
        return self.last_seq

    async def _deliver(self, envelope: dict):
        """Each stored message once, whichever way it comes: live, or replayed by `resume`. Pushes from two
        processes may cross on the way, and a push may arrive between the app's reconnect and its `resume`: an
        older message is then delivered late, never dropped (the app would not know to ask for it). One this
        socket sent already, or that the app said it has (its last `resume`), is not sent again."""
        seq = envelope["seq"]
        if seq <= self.resumed_after or seq in (self.delivered or ()):
            return
        if seq > self.last_seq:
            self.last_seq = seq
            if envelope["type"] == "driver.state":
                self.online = envelope["data"]["state"] != DriverState.OFFLINE
                self.states_heard += 1
        if self.delivered is None:
            self.delivered = deque(maxlen=DELIVERED_KEPT)
        self.delivered.append(seq)
        await self.send_json(envelope)
