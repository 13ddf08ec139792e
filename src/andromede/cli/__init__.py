"""People's tools. They reach the server over HTTP only (``serve`` starts it)."""
