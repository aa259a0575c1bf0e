"""Sync orchestration: ``service.SyncService`` (coordination), ``run`` (the run in flight and its
records), ``phases``, ``listing`` (a product's tests), ``status`` (the sync status report), the
models, the cross-process lock, progress.

The package itself imports nothing, so ``sync.models`` and ``sync.status`` load without the
service and its dependencies (the server needs them before the rest).
"""
