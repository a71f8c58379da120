"""A simulated fleet and merchant that drive a running Relay through its public REST and websocket API only
(API.md), like the real driver app and a merchant integration would. Nothing here touches the database or
imports the server's internals beyond pure geometry, so it can run against any Relay deployment.

`geo` and `behaviour` are pure (route stepping, choices from a seeded random source); `client` wraps HTTP;
`driver`, `merchant` and `fleet` are the asyncio actors.
"""
