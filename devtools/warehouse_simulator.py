"""A stand-in for the warehouse's HTTP API, run as its own process: ``python -m devtools.warehouse_simulator``.

It keeps shipments in a small SQLite file and honours ``Idempotency-Key``: the same key returns the
same shipment (200) instead of creating a second one (201). Latency and failure rate are set with
flags or environment variables, and can be changed while it runs with ``PUT /config``, so a person
or a test can make the warehouse slow, flaky or down.

    POST /shipments      {"order_number", "lines": [...], ...} + Idempotency-Key  → 201/200 {"reference"}
    GET  /shipments      → {"shipments": [...], "count": n}
    GET  /shipments/shipped?after=<cursor>&limit=<n>
                         → {"shipments": [{"sequence", "reference", "order_number", "shipped_at"}],
                            "next": <cursor>}: a shipment counts as shipped ``ship_after_seconds``
                           after it was created (set in /config). The feed is in shipping order,
                           each entry with its sequence number; ``after`` (default: the start)
                           returns what shipped after that entry, at most ``limit`` (default: all),
                           and ``next`` is the cursor to ask with next time. An entry never appears
                           behind a cursor already handed out: the feed stops at the first
                           shipment not shipped yet.
    GET  /config, PUT /config {"latency_ms", "failure_rate", "outage", "reject", "ship_after_seconds"}
    GET  /stats                -> {"shipment_requests": every POST /shipments so far}

"outage" answers 503 with Retry-After (transient); "reject" answers 422 (permanent).
    GET  /healthz
"""

import argparse
import json
import os
import random
import sqlite3
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Warehouse:
    def __init__(
        self,
        database_path: str,
        latency_ms: float,
        failure_rate: float,
        ship_after_seconds: float = 60,
    ):
        self.lock = threading.Lock()
        self.connection = sqlite3.connect(database_path, check_same_thread=False)
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS shipment (reference TEXT PRIMARY KEY, idempotency_key TEXT "
            "UNIQUE NOT NULL, order_number TEXT NOT NULL, payload TEXT NOT NULL, created_at REAL NOT NULL)"
        )
        self.connection.commit()
        self.config = {
            "latency_ms": latency_ms,
            "failure_rate": failure_rate,
            "outage": False,
            "reject": False,
            "ship_after_seconds": ship_after_seconds,
        }
        self.shipment_requests = 0  # every POST /shipments, answered or refused

    def ship(self, idempotency_key: str, payload: dict) -> tuple[dict, bool]:
        with self.lock:
            row = self.connection.execute(
                "SELECT reference, order_number FROM shipment WHERE idempotency_key = ?",
                (idempotency_key,),
            ).fetchone()
            if row:
                return {"reference": row[0], "order_number": row[1]}, False
            reference = f"SHP-{uuid.uuid4().hex[:12].upper()}"
            self.connection.execute(
                "INSERT INTO shipment VALUES (?, ?, ?, ?, ?)",
                (
                    reference,
                    idempotency_key,
                    payload["order_number"],
                    json.dumps(payload),
                    time.time(),
                ),
            )
            self.connection.commit()
            return {"reference": reference, "order_number": payload["order_number"]}, True

    def shipments(self) -> list[dict]:
        with self.lock:
            rows = self.connection.execute(
                "SELECT reference, idempotency_key, order_number, created_at FROM shipment ORDER BY created_at"
            ).fetchall()
        return [
            {"reference": r[0], "idempotency_key": r[1], "order_number": r[2], "created_at": r[3]}
            for r in rows
        ]

    def shipped(self, *, after: int = 0, limit: int | None = None) -> list[dict]:
        # The sequence is the row's insert order: with one delay for every shipment, the order in
        # which they ship.
        delay = float(self.config["ship_after_seconds"])
        cutoff = time.time() - delay
        sql = "SELECT rowid, reference, order_number, created_at FROM shipment WHERE rowid > ? ORDER BY rowid"
        params: tuple = (after,)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        with self.lock:
            rows = self.connection.execute(sql, params).fetchall()
        shipped = []
        for sequence, reference, order_number, created_at in rows:
            if created_at > cutoff:
                break  # not shipped yet, and nothing behind it may be handed out before it
            shipped.append(
                {
                    "sequence": sequence,
                    "reference": reference,
                    "order_number": order_number,
                    "shipped_at": created_at + delay,
                }
            )
        return shipped


def make_handler(warehouse: Warehouse):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # one line per request, to stdout like the others
            print(
                f"warehouse: {self.command} {self.path} {args[1] if len(args) > 1 else ''}",
                flush=True,
            )

        def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict | None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except json.JSONDecodeError:
                return None
            return body if isinstance(body, dict) else None

        def do_GET(self):
            if self.path == "/healthz":
                self._send(HTTPStatus.OK, {"ok": True})
            elif self.path == "/shipments":
                shipments = warehouse.shipments()
                self._send(HTTPStatus.OK, {"shipments": shipments, "count": len(shipments)})
            elif urlsplit(self.path).path == "/shipments/shipped":
                query = parse_qs(urlsplit(self.path).query)
                try:
                    after = int(query.get("after", ["0"])[0] or 0)
                    limit = int(query["limit"][0]) if "limit" in query else None
                except ValueError:
                    self._send(HTTPStatus.BAD_REQUEST, {"error": "after and limit are integers"})
                    return
                if after < 0 or (limit is not None and limit < 1):
                    self._send(HTTPStatus.BAD_REQUEST, {"error": "after >= 0, limit >= 1"})
                    return
                shipments = warehouse.shipped(after=after, limit=limit)
                next_after = shipments[-1]["sequence"] if shipments else after
                self._send(HTTPStatus.OK, {"shipments": shipments, "next": str(next_after)})
            elif self.path == "/config":
                self._send(HTTPStatus.OK, warehouse.config)
            elif self.path == "/stats":  # what tests count: every shipment request, answered or not
                self._send(HTTPStatus.OK, {"shipment_requests": warehouse.shipment_requests})
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def do_PUT(self):
            body = self._body()
            if self.path != "/config" or body is None:
                self._send(HTTPStatus.BAD_REQUEST, {"error": "PUT /config with a JSON object"})
                return
            for name in ("latency_ms", "failure_rate", "outage", "reject", "ship_after_seconds"):
                if name in body:
                    warehouse.config[name] = body[name]
            self._send(HTTPStatus.OK, warehouse.config)

        def do_POST(self):
            # Read the body before any answer: on a kept-alive connection an unread body would be
            # parsed as the next request.
            body = self._body()
            if self.path != "/shipments":
                self._send(HTTPStatus.NOT_FOUND, {"error": "not found"})
                return
            with warehouse.lock:
                warehouse.shipment_requests += 1
            config = warehouse.config
            if config["outage"]:
                self._send(
                    HTTPStatus.SERVICE_UNAVAILABLE, {"error": "outage"}, {"Retry-After": "5"}
                )
                return
            time.sleep(config["latency_ms"] / 1000)
            if random.random() < config["failure_rate"]:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "simulated failure"})
                return
            key = self.headers.get("Idempotency-Key")
            if config["reject"]:
                self._send(
                    HTTPStatus.UNPROCESSABLE_ENTITY, {"error": "address cannot be delivered to"}
                )
                return
            if not key:
                self._send(HTTPStatus.BAD_REQUEST, {"error": "Idempotency-Key header is required"})
                return
            if body is None or not body.get("order_number") or not body.get("lines"):
                self._send(
                    HTTPStatus.UNPROCESSABLE_ENTITY,
                    {"error": "order_number and lines are required"},
                )
                return
            shipment, created = warehouse.ship(key, body)
            self._send(HTTPStatus.CREATED if created else HTTPStatus.OK, shipment)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("WAREHOUSE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("WAREHOUSE_PORT", "8001")))
    parser.add_argument(
        "--database", default=os.environ.get("WAREHOUSE_DATABASE", "var/warehouse.sqlite3")
    )
    parser.add_argument(
        "--latency-ms", type=float, default=float(os.environ.get("WAREHOUSE_LATENCY_MS", "50"))
    )
    parser.add_argument(
        "--failure-rate", type=float, default=float(os.environ.get("WAREHOUSE_FAILURE_RATE", "0"))
    )
    parser.add_argument(
        "--ship-after-seconds",
        type=float,
        default=float(os.environ.get("WAREHOUSE_SHIP_AFTER_SECONDS", "60")),
    )
    args = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.database)), exist_ok=True)
    warehouse = Warehouse(
        args.database, args.latency_ms, args.failure_rate, args.ship_after_seconds
    )
    server = ThreadingHTTPServer((args.host, args.port), make_handler(warehouse))
    print(f"warehouse simulator on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
