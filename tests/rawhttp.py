"""A bare HTTP/1.1 client over a socket, for requests no real client will send: header
bytes that are not UTF-8, bodies that are not what their encoding says."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def raw_request(port: int | None, method: str, path: str,
                      headers: list[tuple[bytes, bytes]], body: bytes = b"",
                      timeout_s: float = 30.0) -> Answer:
    """Send one request exactly as given (plus Host, Content-Length, Connection: close)."""
    assert port is not None, "the daemon is not listening"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1",
                b"Connection: close", b"Content-Length: " + str(len(body)).encode()]
        head += [name + b": " + value for name, value in headers]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
    return parse_answer(data)


def parse_answer(data: bytes) -> Answer:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(status, headers, body)
