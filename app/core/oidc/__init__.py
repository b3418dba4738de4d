"""OpenID Connect, sans-I/O: discovery documents, ID token verification, claims, allow-lists.

The flow that fetches documents and talks to the provider lives in app/service/oidc*.py.
"""
