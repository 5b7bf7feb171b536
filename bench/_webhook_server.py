"""Child process of bench_webhooks: the floor server, a bare FastAPI app under uvicorn on
127.0.0.1 in its own process.

    python _webhook_server.py

One endpoint, ``POST /webhooks/{psp}/{account}``, that reads the body and answers 200 with a small
JSON body (plus ``GET /health``), under the uvicorn configuration ``payweave serve`` uses (one
worker, asyncio, access log off, log level warning). The port is printed as one JSON line; the
server runs until SIGTERM.
"""

import json
import socket
from typing import Any


def bare_app() -> Any:
    from fastapi import FastAPI, Request

    app = FastAPI()

    @app.post("/webhooks/{psp}/{account}")
    async def receive(request: Request, psp: str, account: str) -> dict[str, Any]:
        await request.body()
        return {"received": 1}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    import uvicorn

    app = bare_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY (see loopback.py)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    print(json.dumps({"url": f"http://127.0.0.1:{port}"}), flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
