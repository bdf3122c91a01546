"""Protobuf messages of Prometheus remote write 1.0 (`remote.proto`, generated `remote_pb2`).

Only `agent.remote_write` imports the generated code.
"""
