"""Read models: the queries behind the dashboards, the status API, exports and the conversations inbox.

Nothing here writes. Each module is one reader (`*Reader`) with the records it returns; the heavy ones run on the
reports connection (gateway/services.py) so they never queue the message path's reads.
"""
