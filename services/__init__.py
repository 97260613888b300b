"""The service adapters of Lookalike: a FastAPI gateway and one Celery task module per stage.

They are thin: the stage functions, stores and queue wiring live in the ``lookalike`` library.
"""
