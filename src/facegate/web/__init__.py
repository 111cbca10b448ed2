"""The HTTP layer: the FastAPI app (``facegate.web.app.create_app``), its routers, request and
response models, dependencies, limits and problem details; ``static/`` holds the capture page."""
