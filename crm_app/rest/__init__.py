"""The REST API (FastAPI, mounted on the app's own server at /api/v1; see rest/app.py)."""
