"""The web dashboard for people (/dashboard/): server-rendered pages over the same handlers the JSON API uses.

A person signs in with an email and a password (core/storage/people.py) and holds a session in an HttpOnly cookie
(core/storage/web_sessions.py); every page reads through the API's own handler objects with the person as the
caller, so what a page shows and what it may change are exactly what the API would answer that person.
"""
