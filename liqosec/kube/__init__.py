"""Kubernetes runtime mechanisms, after client-go (one mechanism a module).

- ``clock``: the time seam (``RealClock``; the tests drive a step-driven fake).
- ``errors``: typed API failures (``Gone``, ``Conflict``, ...) built from API statuses.
- ``client``: raw-REST ``KubeClient`` (JSON dicts, streamed watches), ``load_api_client``.
- ``store``: indexed thread-safe cache, slim transforms.
- ``reflector``: LIST+WATCH into a store with relist/backoff/resync.
- ``ratelimit``, ``queue``: client-go work queues and their rate limiters.
- ``leaderelection``: Lease-based leader election.
- ``metrics``: prometheus implementations of the metric hooks (explicit registry).
"""
