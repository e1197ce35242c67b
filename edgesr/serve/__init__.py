"""edgesr as a local service for NAS software: an HTTP app (``app``) over a bounded work queue
(``jobs``) of loaded engines (``engines``), with its limits and bind rules (``config``,
``auth``), uploads (``uploads``), Prometheus metrics (``metrics``), a watch folder (``watch``)
and a folder run on a Ray cluster (``ray_batch``).

FastAPI, uvicorn, prometheus-client and python-multipart come with ``pip install
'edgesr[serve]'``; nothing here is imported by ``import edgesr``.
"""
