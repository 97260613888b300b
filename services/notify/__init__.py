"""Notify worker: webhooks and e-mail, plus the periodic reconciler, retention and retries."""
