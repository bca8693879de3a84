"""Who may administer what: the JWTs of operators, owners and viewers, and the rules of what each may touch.

Nothing here speaks HTTP: the API's JWT middleware (api/jwt_auth.py) verifies a token into a `Principal`, and
handlers ask the rules below, which raise the domain's NotFound and Forbidden.
"""
