"""Cost you can see: what a mount does and what it costs, live (``dynlog stats``), scraped
(Prometheus, ``-o metrics=ADDR:PORT``) and projected (``dynlog status``: idle cost per mount).

snapshot.py  the counters of a running mount as one JSON-able dict
rates.py     per-second rates, latency quantiles and cost between two snapshots
cost.py      on-demand prices and the idle cost projected from the adaptive-poll timings
server.py    the mount daemon's stats socket (and where it lives) and the Prometheus endpoint
"""
