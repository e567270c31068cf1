-- wrk script: durable task creation (POST /v1/tasks).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"sim-image","input":{"prompt":"a lighthouse at dusk","size":"512x512"},"public":true}'
