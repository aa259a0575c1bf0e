"""Sync orchestration: ``service.SyncService``, its models, the cross-process lock, progress.

The package itself imports nothing, so ``sync.models`` loads without the service and its
dependencies (the server needs the models before the rest).
"""
