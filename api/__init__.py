"""The HTTP API: one sub-package per surface, each holding its models, handlers and operation tables together.

The shared machinery (operation tables, typed bodies, the error envelope, the OpenAPI document, authentication)
lives in the modules beside the surfaces. Nothing here reads settings or opens a connection: the frame
(`gateway/`) builds the handler objects with their dependencies and mounts the surfaces.
"""
