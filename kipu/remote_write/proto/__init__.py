"""Protobuf messages of Prometheus remote write 1.0 (`remote.proto`, generated `remote_pb2`).

Only `kipu.remote_write.codec` imports the generated code.
"""
