"""Reading request bodies with a size limit, so that no request can fill the memory."""

from __future__ import annotations

from fastapi import HTTPException, Request


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """Return the raw body; raise a 413 `HTTPException` as soon as it grows past `max_bytes`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(status_code=413, detail=f"the body is larger than {max_bytes:,} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(status_code=413, detail=f"the body is larger than {max_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
