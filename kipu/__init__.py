"""kipu's shared core: what the agent and the collector both use.

`kipu.remote_write` (codec, answer policy, HTTP client), `kipu.spool` (the durable
queue), `kipu.lanes` (the sender lanes), `kipu.config` (the typed YAML loader),
`kipu.clock` (the clock rule) and `kipu.version`.
"""
