"""gunicorn settings for zoorank, read from the environment.

Used by ``make serve``, the compose file's ``web`` service and ``zoorank-web.service``:
``gunicorn -c deploy/gunicorn.conf.py config.wsgi``. ``--bind`` on the command line wins over
``ZOORANK_WEB_BIND``.
"""

import os

# Threads serve a request while another waits on PostgreSQL; processes use the cores.
worker_class = "gthread"
workers = int(os.environ.get("ZOORANK_WEB_WORKERS") or min(2 * (os.cpu_count() or 1) + 1, 9))
threads = int(os.environ.get("ZOORANK_WEB_THREADS") or 4)
bind = os.environ.get("ZOORANK_WEB_BIND") or "127.0.0.1:8000"

# A gthread worker's heartbeat runs beside its requests, so a long upload is not killed;
# the timeout only catches a process that stopped answering.
timeout = 60
graceful_timeout = 30
keepalive = 5
# A fresh process now and then keeps memory from creeping up over weeks.
max_requests = 2000
max_requests_jitter = 200

# Behind a reverse proxy on another host, name it so X-Forwarded-* from it is believed.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"
accesslog = os.environ.get("ZOORANK_WEB_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("ZOORANK_WEB_LOG_LEVEL") or "info"
# gunicorn's control socket has one default path per user: two servers on a host (make serve
# beside bench/load.py) would take each other's. Name one to use gunicornc.
if os.environ.get("ZOORANK_WEB_CONTROL_SOCKET"):
    control_socket = os.environ["ZOORANK_WEB_CONTROL_SOCKET"]
else:
    control_socket_disable = True
