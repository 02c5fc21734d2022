#!/bin/sh
# One health check of smokefusion (smokefusion-health.service runs it every 30 s):
# restart the pipeline when /health does not answer or says "down" (a stage died for good, or
# the run ended). "degraded" (a camera reconnecting, a stage restarting) is left alone: the
# pipeline recovers from it by itself, and a restart would only lose the frames in flight.
#   examples/systemd/smokefusion-healthcheck.sh [URL]      (default http://127.0.0.1:8080/health)
url="${1:-http://127.0.0.1:8080/health}"
body=$(curl -s --max-time 5 "$url") || body=""
case "$body" in
  *'"status": "ok"'*|*'"status": "degraded"'*) exit 0 ;;
esac
echo "smokefusion health: ${body:-no answer from $url}; restarting smokefusion.service"
exec systemctl restart smokefusion.service
