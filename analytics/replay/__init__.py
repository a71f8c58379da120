"""The replay simulator (SPEC 6): a recorded day's deliveries and driver fleet played again against Relay's real
dispatch code on a moved clock, in a scratch database, under the zones' policy as it was or as changed, and the
KPIs of each run set side by side with the day's own. `recording` reads the day; `world` plays it."""
